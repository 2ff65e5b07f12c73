"""Train / valid / test splits. Both are seeded, so a seed fixes the split."""

from __future__ import annotations

import numpy as np
import polars as pl

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
