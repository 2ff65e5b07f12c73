"""`data.format: parquet-stream`: a generic dataset larger than memory, trained from disk.

Preparing the dataset reads the Parquet interactions twice, block by block
(`generic.InteractionStream`), and never holds more than a block of rows:

1. each row's split is drawn from a hash of its field values (`split.hash_assign`, the
   in-memory path's `data.split: hash`), and the training rows' distinct values are collected
   per field: the vocabularies, as `Vocabulary.fit` makes them on the training split;
2. each block is encoded with them (`Vocabulary.encode`) and its rows appended to one `.npy`
   file per split and array in a cache temp dir (int32 codes when every field fits), which is
   renamed into the dataset cache when whole (`cache.EntryWriter`); an error or Ctrl-C leaves
   nothing behind.

The entry is keyed like any other (source files, data config, split seed), so a second run
reads it. Training then streams the training split from its file (`DiskRows`): each epoch
visits runs of `CHUNK_ROWS` rows in a random order, fills a buffer of `data.shuffle_buffer`
rows from them, shuffles the buffer and cuts it into batches. Reads are whole runs read into
a reused array, not a memory map of the file: pages of a mapping count in the process's RSS
until the kernel takes them back, and an epoch touches every one. The validation and test
splits are held in memory (int64, as the in-memory path holds them) for evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import torch

from gprec.config import DataConfig
from gprec.data import cache
from gprec.data.encode import SOURCE_ROW, Vocabulary, binary_labels, encoded_fields
from gprec.data.generic import InteractionStream
from gprec.data.schema import EncodedField, RawTable, Role
from gprec.data.split import SPLITS, hash_assign
from gprec.errors import DataError

log = logging.getLogger(__name__)

# Rows per block read from the Parquet file while preparing: a block's text columns, codes and
# hashes are what preparation holds (tens of MB), whatever the file's size.
READ_ROWS = 1 << 18
# Rows of one contiguous read while training: a buffer is filled with runs of this many rows
# from random places in the file.
CHUNK_ROWS = 4096
# Rows per block handed to whoever walks the whole training split (the run's catalogue).
WALK_ROWS = 1 << 18


class StreamedDataset:
    """An encoded dataset whose training split stays on disk (`EncodedDataset`'s interface).

    `X["train"]`, `y["train"]` are read-only memory maps of the cache entry's files, for code
    that indexes them; training reads them through `train_rows` and a whole pass through
    `train_blocks`, which hold a bounded number of rows. `X`, `y` of valid and test are in
    memory.
    """

    def __init__(
        self,
        fields: list[EncodedField],
        X: dict[str, np.ndarray],
        y: dict[str, np.ndarray],
        vocab: Vocabulary,
        positives: dict[str, int],
        buffer_rows: int,
        name: str = "generic",
        from_cache: bool = False,
    ):
        self.fields, self.X, self.y, self.vocab = fields, X, y, vocab
        self.positives, self.buffer_rows = positives, buffer_rows
        self.name, self.from_cache = name, from_cache
        self.duplicates = None
        self.user_groups = None
        self.negatives: dict[str, np.ndarray] = {}

    def size(self, split: str) -> int:
        return len(self.y[split])

    def summary(self) -> dict:
        """As `EncodedDataset.summary`, from the counts kept in the entry: nothing is read."""
        rows = {s: self.size(s) for s in SPLITS}
        return _summary(self.name, self.fields, rows, self.positives)

    def train_rows(self, device: torch.device | str = "cpu") -> DiskRows:
        """The training split as the trainer's row source (`training.rows.RowSource`)."""
        return DiskRows(self.X["train"], self.y["train"], self.buffer_rows, torch.device(device))

    def train_blocks(self, rows: int = WALK_ROWS) -> Iterator[np.ndarray]:
        """The training rows in file order as int64 blocks of up to `rows` rows."""
        source = _RowFile(self.X["train"])
        with open(source.path, "rb", buffering=0) as fh:
            for start in range(0, source.rows, rows):
                stop = min(start + rows, source.rows)
                block = np.empty((stop - start, *source.row_shape), dtype=source.dtype)
                source.read(fh, start, block)
                yield block.astype(np.int64)


class _RowFile:
    """A `.npy` file of rows, read by row ranges straight from the file (see the module's
    docstring for why not through its memory map)."""

    def __init__(self, mapped: np.memmap):
        self.path, self.offset = Path(mapped.filename), mapped.offset
        self.dtype, self.rows, self.row_shape = mapped.dtype, mapped.shape[0], mapped.shape[1:]
        self.row_bytes = mapped.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))

    def read(self, fh, start: int, out: np.ndarray) -> None:
        """Rows start .. start + len(out) into `out` (C-contiguous, this file's dtype)."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        fh.seek(self.offset + start * self.row_bytes)
        done = 0
        while done < len(view):
            n = fh.readinto(view[done:])
            if not n:
                raise DataError(
                    f"ends before row {start + len(out):,d} (the cache entry was changed)",
                    path=self.path,
                )
            done += n


class DiskRows:
    """The training rows on disk as a row source: batches through a bounded shuffle buffer.

    With a generator, an epoch takes the file's runs of `CHUNK_ROWS` rows in a random order
    (a permutation drawn from the generator), fills the buffer with `buffer_rows` rows of them,
    permutes the buffer, and yields full batches from it; the rows left over (fewer than a
    batch) join the next buffer. Every row comes once per epoch; the same generator state gives
    the same batches. Without a generator the rows come in file order, in the batches the
    in-memory `TensorRows` gives. At most `buffer_rows + batch_size` rows are held, in the
    file's dtype, a few times over (the rows read, the leftover joined to them, their
    permutation); a batch becomes int64 as it leaves. An epoch of 262,144-row buffers of 8
    int32 fields raised the peak RSS by about 70 MB, the same for 1 and 3 million rows.
    """

    def __init__(
        self,
        X: np.memmap,
        y: np.memmap,
        buffer_rows: int,
        device: torch.device | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ):
        self.X, self.y = _RowFile(X), _RowFile(y)
        self.buffer_rows, self.device = buffer_rows, device or torch.device("cpu")
        self.chunk_rows = max(1, min(chunk_rows, buffer_rows))

    def __len__(self) -> int:
        return self.X.rows

    def n_batches(self, batch_size: int, min_last: int) -> int:
        return len(self) // batch_size + (len(self) % batch_size >= min_last)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, min_last: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, chunk = len(self), self.chunk_rows
        n_chunks = -(-n // chunk)
        if generator is not None:
            order = torch.randperm(n_chunks, generator=generator).numpy()
        else:
            order = np.arange(n_chunks)
        # A buffer holds at least one batch, so that every fill yields one.
        per_fill = max(1, -(-max(self.buffer_rows, batch_size) // chunk))
        X_buf = np.empty((per_fill * chunk, *self.X.row_shape), dtype=self.X.dtype)
        y_buf = np.empty(per_fill * chunk, dtype=self.y.dtype)
        carry_X = carry_y = None
        with open(self.X.path, "rb", buffering=0) as fx, open(self.y.path, "rb", buffering=0) as fy:
            for first in range(0, n_chunks, per_fill):
                rows = 0
                for c in _runs(order[first : first + per_fill]):
                    start, stop = c[0] * chunk, min(n, (c[1] + 1) * chunk)
                    self.X.read(fx, start, X_buf[rows : rows + stop - start])
                    self.y.read(fy, start, y_buf[rows : rows + stop - start])
                    rows += stop - start
                # The file's dtype (int32) until a batch leaves: half the buffer's memory.
                X, y = torch.from_numpy(X_buf[:rows]), torch.from_numpy(y_buf[:rows])
                if carry_X is not None:
                    X, y = torch.cat([carry_X, X]), torch.cat([carry_y, y])
                if generator is not None:
                    perm = torch.randperm(len(y), generator=generator)
                    X, y = X[perm], y[perm]
                full = len(y) - len(y) % batch_size
                carry_X, carry_y = X[full:].clone(), y[full:].clone()
                for start in range(0, full, batch_size):
                    yield self._batch(X[start : start + batch_size], y[start : start + batch_size])
                del X, y
        if carry_y is not None and len(carry_y) and len(carry_y) >= min_last:
            yield self._batch(carry_X, carry_y)

    def _batch(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of its own (the buffers are reused): int64 codes, float32 labels."""
        return (
            X.to(self.device, torch.int64, copy=True),
            y.to(self.device, torch.float32, copy=True),
        )


def _runs(chunks: np.ndarray) -> Iterator[tuple[int, int]]:
    """`chunks` as (first, last) runs of consecutive indices, in their order: one read each."""
    if len(chunks) == 0:
        return
    breaks = np.flatnonzero(np.diff(chunks) != 1) + 1
    for part in np.split(chunks, breaks):
        yield int(part[0]), int(part[-1])


# ---- preparing the cache entry ---------------------------------------------------------


def prepare(cfg: DataConfig, seed: int, entry: Path, label: str, replace: bool) -> None:
    """Read the Parquet interactions twice and write the encoded splits to `entry`."""
    stream = InteractionStream(cfg.resolved_path())
    schema = stream.schema
    names = [f.name for f in schema.fields]
    started = time.perf_counter()
    # Pass 1: the split of every row, the training values of every field, counts and labels.
    seen: dict[str, set[str]] = {name: set() for name in names}
    rows, positives = np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    for offset, block in stream.blocks(READ_ROWS):
        y = _labels(block, cfg, stream.path, offset)
        assign = hash_assign(block, names, cfg.split_ratios, seed)
        rows += np.bincount(assign, minlength=3)
        positives += np.bincount(assign, weights=y, minlength=3).astype(np.int64)
        train = block.filter(pl.Series(assign == 0))
        for name in names:
            seen[name].update(train[name].unique().to_list())
    counts = dict(zip(SPLITS, rows.tolist(), strict=True))
    pos = dict(zip(SPLITS, positives.tolist(), strict=True))
    _check_splits(cfg, counts, pos, schema.path)
    vocab = Vocabulary(
        {n: pl.Series(n, sorted(seen[n]), dtype=pl.String).sort().to_list() for n in names}
    )
    del seen
    fields = encoded_fields(schema.fields, vocab)
    dtype = np.int32 if max(f.cardinality for f in fields) < 2**31 else np.int64
    log.info(
        "%s: %s rows, %s training; vocabularies fitted in %.1f s",
        stream.path,
        f"{stream.rows:,d}",
        f"{counts['train']:,d}",
        time.perf_counter() - started,
    )
    # Pass 2: encode each block and append its rows to the files of their splits.
    with cache.EntryWriter(entry, label, replace) as writer:
        X_files = {s: writer.appender(f"X_{s}", dtype, (counts[s], len(fields))) for s in SPLITS}
        y_files = {s: writer.appender(f"y_{s}", np.float32, (counts[s],)) for s in SPLITS}
        for offset, block in stream.blocks(READ_ROWS):
            y = _labels(block, cfg, stream.path, offset)
            assign = hash_assign(block, names, cfg.split_ratios, seed)
            X = vocab.encode(block, schema.fields)
            for i, s in enumerate(SPLITS):
                mine = assign == i
                if X_files[s].rows + int(mine.sum()) > counts[s]:
                    raise _changed(stream.path)
                X_files[s].append(X[mine])
                y_files[s].append(y[mine])
        for appender in (*X_files.values(), *y_files.values()):
            if appender.rows != appender.shape[0]:
                raise _changed(stream.path)
            appender.close()
        writer.document("vocab.json", vocab.to_json())
        origin = {"path": str(cfg.resolved_path()), "seed": seed}
        writer.commit(
            _summary(cfg.source, fields, counts, pos)
            | {
                "duplicates": None,
                "origin": origin,
                "stream": {"positives": pos, "source_rows": stream.rows},
            }
        )
    log.info("%s: encoded in %.1f s", stream.path, time.perf_counter() - started)


def _summary(name: str, fields: list[EncodedField], rows: dict, positives: dict) -> dict:
    return {
        "name": name,
        "fields": [
            {"name": f.name, "role": str(f.role), "cardinality": f.cardinality} for f in fields
        ],
        "splits": {
            s: {
                "rows": rows[s],
                "positive_rate": positives[s] / rows[s] if rows[s] else 0.0,
            }
            for s in SPLITS
        },
    }


def _labels(block: pl.DataFrame, cfg: DataConfig, path: Path, offset: int) -> np.ndarray:
    """The block's 0/1 labels (`binary_labels`), a bad one named by its row in the file."""
    rows = block.select(pl.int_range(offset + 1, offset + block.height + 1).alias(SOURCE_ROW))
    raw = RawTable(block.with_columns(rows[SOURCE_ROW]), [])
    return binary_labels(raw, cfg.label_threshold, path)


def _check_splits(cfg: DataConfig, rows: dict, positives: dict, path: Path) -> None:
    """The in-memory path's checks (`dataset.require_both_labels`), on counts."""
    from gprec.data.dataset import require_both_labels

    if rows["train"] == 0:
        raise DataError("the training split is empty", path=path)
    for s in ("valid", "test"):
        require_both_labels(s, rows[s], positives[s], cfg, path)


def _changed(path: Path) -> DataError:
    return DataError(
        "changed while it was read (its rows differ between the two passes); run again", path=path
    )


# ---- loading ---------------------------------------------------------------------------


def load_entry(entry: Path, cfg: DataConfig) -> StreamedDataset:
    """A prepared entry; raises cache.Damaged when any part of it does not check out."""
    meta, arrays, documents = cache.read_entry(entry, mmap=True)
    try:
        fields = [
            EncodedField(f["name"], Role(f["role"]), f["cardinality"]) for f in meta["fields"]
        ]
        positives = {s: int(meta["stream"]["positives"][s]) for s in SPLITS}
        X = {s: arrays[f"X_{s}"] for s in SPLITS}
        y = {s: arrays[f"y_{s}"] for s in SPLITS}
        vocab = Vocabulary(documents["vocab.json"])
        name = meta["name"]
    except (KeyError, TypeError, ValueError) as e:
        raise cache.Damaged(f"meta.json is malformed ({type(e).__name__}: {e})") from None
    for s in SPLITS:
        if X[s].shape != (len(y[s]), len(fields)) or X[s].ndim != 2:
            raise cache.Damaged(f"X_{s}.npy does not match y_{s}.npy and the fields")
    for s in ("valid", "test"):  # evaluated in memory, as int64 (what the models take)
        X[s], y[s] = np.array(X[s], dtype=np.int64), np.array(y[s], dtype=np.float32)
    return StreamedDataset(
        fields, X, y, vocab, positives, cfg.shuffle_buffer, name=name, from_cache=True
    )


def load_streamed(cfg: DataConfig, seed: int, entry: Path, label: str) -> StreamedDataset:
    """The streamed dataset of `cfg` at `entry`, prepared first unless it is already there."""

    def build(replace: bool) -> StreamedDataset:
        prepare(cfg, seed, entry, label, replace=replace)
        ds = load_entry(entry, cfg)
        ds.from_cache = False
        return ds

    return cache.read_or_build(entry, label, lambda e: load_entry(e, cfg), build)
