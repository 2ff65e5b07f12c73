"""Train / valid / test splits. All are seeded, so a seed fixes the split."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from gprec.errors import DataError

SPLITS = ("train", "valid", "test")


def random_split(n: int, ratios: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Row indices of a seeded random split (the GPRec paper's 80/10/10)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(n * ratios[0]))
    n_valid = int(round(n * ratios[1]))
    return {
        "train": np.sort(perm[:n_train]),
        "valid": np.sort(perm[n_train : n_train + n_valid]),
        "test": np.sort(perm[n_train + n_valid :]),
    }


def leave_last_out_split(
    users: pl.Series, timestamps: pl.Series, seed: int
) -> dict[str, np.ndarray]:
    """Per user: the latest interaction is test, the one before valid, the rest train.

    Users with fewer than three interactions keep all of them in train. Ties in
    time are broken by a seeded random key, so the split stays reproducible.
    """
    if timestamps.null_count() > 0:
        raise DataError("leave_last_out split needs a timestamp on every interaction")
    tiebreak = np.random.default_rng(seed).random(len(users))
    frame = pl.DataFrame({"u": users, "t": timestamps, "r": tiebreak}).with_row_index("row")
    ranked = frame.sort(["u", "t", "r"]).with_columns(
        pl.len().over("u").alias("count"),
        pl.col("row").cum_count().over("u").alias("pos"),
    )
    from_end = ranked["count"] - ranked["pos"]  # 0 for the latest
    enough = ranked["count"] >= 3
    rows = ranked["row"].to_numpy().astype(np.int64)
    is_test = (enough & (from_end == 0)).to_numpy()
    is_valid = (enough & (from_end == 1)).to_numpy()
    return {
        "train": np.sort(rows[~is_test & ~is_valid]),
        "valid": np.sort(rows[is_valid]),
        "test": np.sort(rows[is_test]),
    }


# splitmix64's finaliser (Steele et al.): a bijection of uint64 that mixes every input bit.
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)  # a missing value's hash (no string hashes to it)


def _mix(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(30))) * _MIX1
    h = (h ^ (h >> np.uint64(27))) * _MIX2
    return h ^ (h >> np.uint64(31))


def _value_hashes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 per value: BLAKE2b of its UTF-8 text, computed once per distinct value
    (dictionary-encoded first), so the Python work follows the cardinality, not the rows."""
    encoded = pc.dictionary_encode(column)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    out = []
    for chunk in chunks:
        table = np.array(
            [
                int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little")
                for v in chunk.dictionary.to_pylist()
            ],
            dtype=np.uint64,
        )
        codes = chunk.indices.to_numpy(zero_copy_only=False)
        if chunk.indices.null_count:
            valid = chunk.indices.is_valid().to_numpy(zero_copy_only=False)
            hashed = np.full(len(chunk), _NULL_HASH, dtype=np.uint64)
            hashed[valid] = table[codes[valid].astype(np.int64)]
        else:
            hashed = table[codes.astype(np.int64)] if len(table) else np.zeros(0, np.uint64)
        out.append(hashed)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


def row_hashes(table: pl.DataFrame, names: list[str], seed: int) -> np.ndarray:
    """One uint64 per row from its values of `names` (as text) and `seed`.

    It depends on nothing but those values and the seed: not on the row's position, the rows
    around it, the block it is read in, or a library's version (BLAKE2b per value, splitmix64
    to combine), so a file read in blocks and the same file read whole hash alike.
    """
    h = np.full(table.height, np.uint64(seed), dtype=np.uint64)
    h = _mix(h ^ np.uint64(len(names)))
    for name in names:
        values = table[name].cast(pl.String).to_arrow()
        h = _mix(h ^ _value_hashes(values))
    return h


def hash_assign(
    table: pl.DataFrame, names: list[str], ratios: tuple[float, float, float], seed: int
) -> np.ndarray:
    """Each row's split as 0 (train), 1 (valid) or 2 (test), from `row_hashes`: a row lands in
    train with probability ratios[0], and so on. Rows equal in `names` share a split."""
    u = (row_hashes(table, names, seed) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return (u >= ratios[0]).astype(np.int8) + (u >= ratios[0] + ratios[1])


def hash_split(
    table: pl.DataFrame, names: list[str], ratios: tuple[float, float, float], seed: int
) -> dict[str, np.ndarray]:
    """Row indices of the hash split (`hash_assign`): the same rows whatever else the data
    holds or however it is read, so a streamed pass reproduces it block by block."""
    assign = hash_assign(table, names, ratios, seed)
    return {s: np.flatnonzero(assign == i) for i, s in enumerate(SPLITS)}
