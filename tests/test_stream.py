"""data.format: parquet-stream: the same encoded data as the in-memory path, rows from disk."""

import json
import logging

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import gprec.data.stream as stream
from gprec.config import DataConfig, parse_config
from gprec.data import cache
from gprec.data.dataset import load_dataset, load_raw, split_rows
from gprec.data.split import hash_assign, hash_split
from gprec.errors import ConfigError, DataError
from gprec.serving.catalogue import build_catalogue, build_catalogue_blocks
from gprec.training.rows import TensorRows

SPLITS = ("train", "valid", "test")


def write_data(directory, n=3000, seed=0, row_group=700):
    """Ratings in Parquet (several row groups) with a users side table, and a schema. The
    label follows the user's and the item's id, so AUC is well above 0.5."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    users, items = rng.integers(1, 120, n), rng.integers(1, 80, n)
    liked = rng.random(n) < 1 / (1 + np.exp(-2.0 * ((users % 2) + (items % 3 == 0) - 1)))
    rating = np.where(liked, rng.integers(4, 6, n), rng.integers(1, 4, n))
    genre = np.array(["drama", "comedy", "horror", None], dtype=object)[items % 4]
    table = pa.table({"user": users, "item": items.astype(str), "genre": genre, "stars": rating})
    pq.write_table(table, directory / "log.parquet", row_group_size=row_group)
    user_ids = np.arange(1, 120)
    pq.write_table(
        pa.table({"user": user_ids, "age": (user_ids % 5) * 10, "gender": np.where(user_ids % 2, "F", "M")}),
        directory / "users.parquet",
    )  # fmt: skip
    text = (
        "interactions: log.parquet\nusers: {path: users.parquet, key: user}\ntarget: stars\n"
        "fields: {user: personal, age: user, gender: user, item: item, genre: item}\n"
    )
    (directory / "schema.yaml").write_text(text)
    return directory / "schema.yaml"


def data_cfg(tmp_path, schema, fmt="parquet-stream", **kw):
    base = {
        "source": "generic",
        "path": str(schema),
        "cache_dir": str(tmp_path / "cache"),
        "split": "hash",
        "label_threshold": 3,
        "format": fmt,
    }
    return DataConfig(**(base | kw))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 500 rows: a 3,000-row file is read in six, across row-group edges."""
    monkeypatch.setattr(stream, "READ_ROWS", 500)


# ---- the encoded data equals the in-memory path's ----------------------------------------


def test_streamed_encoding_equals_the_in_memory_path(tmp_path, small_blocks):
    schema = write_data(tmp_path / "data")
    memory = load_dataset(data_cfg(tmp_path, schema, fmt="memory"), seed=3)
    streamed = load_dataset(data_cfg(tmp_path, schema), seed=3)
    assert type(streamed).__name__ == "StreamedDataset" and not streamed.from_cache
    assert streamed.vocab.values == memory.vocab.values
    assert "" in streamed.vocab.values["genre"]  # a missing value is the category "", as in memory
    assert [(f.name, f.role, f.cardinality) for f in streamed.fields] == [
        (f.name, f.role, f.cardinality) for f in memory.fields
    ]
    for s in SPLITS:
        assert np.array_equal(np.asarray(streamed.X[s]), memory.X[s]), s
        assert np.array_equal(np.asarray(streamed.y[s]), memory.y[s]), s
    assert streamed.X["train"].dtype == np.int32 and isinstance(streamed.X["train"], np.memmap)
    assert streamed.X["test"].dtype == np.int64  # evaluated in memory, as the models take it
    ours, theirs = streamed.summary(), memory.summary()
    assert ours["fields"] == theirs["fields"]
    for s in SPLITS:
        assert ours["splits"][s]["rows"] == theirs["splits"][s]["rows"]
        assert ours["splits"][s]["positive_rate"] == pytest.approx(
            theirs["splits"][s]["positive_rate"]
        )
    assert streamed.negatives == {} and streamed.user_groups is None


def test_the_catalogue_built_from_blocks_equals_the_whole_splits(tmp_path, small_blocks):
    schema = write_data(tmp_path / "data")
    memory = load_dataset(data_cfg(tmp_path, schema, fmt="memory"), seed=0)
    streamed = load_dataset(data_cfg(tmp_path, schema), seed=0)
    whole = build_catalogue(memory.X["train"], memory.fields)
    blocks = build_catalogue_blocks(streamed.train_blocks(rows=333), streamed.fields)
    for name in ("item_features", "user_rows", "seen_indptr", "seen_items"):
        assert np.array_equal(getattr(whole, name), getattr(blocks, name)), name


# ---- the hash split ----------------------------------------------------------------------


def test_hash_split_is_seeded_reproducible_and_blind_to_blocks():
    rng = np.random.default_rng(0)
    table = pl.DataFrame(
        {"u": rng.integers(0, 500, 20_000).astype(str), "i": rng.integers(0, 90, 20_000)}
    )
    whole = hash_assign(table, ["u", "i"], (0.8, 0.1, 0.1), seed=5)
    pieces = np.concatenate(
        [hash_assign(table[a : a + 1234], ["u", "i"], (0.8, 0.1, 0.1), 5) for a in range(0, 20_000, 1234)]
    )  # fmt: skip
    assert np.array_equal(whole, pieces)
    assert np.array_equal(whole, hash_assign(table, ["u", "i"], (0.8, 0.1, 0.1), seed=5))
    assert not np.array_equal(whole, hash_assign(table, ["u", "i"], (0.8, 0.1, 0.1), seed=6))
    shares = np.bincount(whole, minlength=3) / len(whole)
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.01)
    # Rows equal in every field share a split; the split does not depend on row order.
    key = table["u"] + "/" + table["i"].cast(pl.String)
    for value in key.unique().to_list()[:200]:
        assert len(set(whole[(key == value).to_numpy()])) == 1
    order = rng.permutation(20_000)
    assert np.array_equal(hash_assign(table[order], ["u", "i"], (0.8, 0.1, 0.1), 5), whole[order])
    # The field order is part of the hash: swapping two columns' values moves rows.
    swapped = pl.DataFrame({"u": table["i"].cast(pl.String), "i": table["u"]})
    assert not np.array_equal(hash_assign(swapped, ["u", "i"], (0.8, 0.1, 0.1), 5), whole)


def test_hash_split_of_the_in_memory_path_is_complete_and_disjoint(tmp_path):
    schema = write_data(tmp_path / "data")
    cfg = data_cfg(tmp_path, schema, fmt="memory")
    raw = load_raw(cfg)
    rows = split_rows(raw, cfg, seed=1)
    assert np.array_equal(np.sort(np.concatenate(list(rows.values()))), np.arange(raw.table.height))
    assert all(np.array_equal(np.sort(v), v) for v in rows.values())  # file order kept
    again = hash_split(raw.table, raw.field_names, cfg.split_ratios, 1)
    assert all(np.array_equal(rows[s], again[s]) for s in SPLITS)


# ---- the row source ------------------------------------------------------------------------


def disk_rows(tmp_path, n, buffer_rows, chunk_rows=stream.CHUNK_ROWS, fields=3):
    """DiskRows over .npy files whose row r is (r, r, r) and label r: rows can be told apart."""
    X = np.repeat(np.arange(n, dtype=np.int32)[:, None], fields, axis=1)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.arange(n, dtype=np.float32))
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    ym = np.load(tmp_path / "y.npy", mmap_mode="r")
    return stream.DiskRows(Xm, ym, buffer_rows, chunk_rows=chunk_rows)


@pytest.mark.parametrize(
    "n, buffer_rows, chunk_rows, batch, min_last",
    [(10_000, 1000, 128, 256, 1), (10_000, 1000, 128, 256, 256), (999, 100, 7, 64, 2),
     (50, 1000, 4096, 64, 1), (5000, 300, 64, 1000, 1), (4096, 1024, 256, 512, 1)],
)  # fmt: skip
def test_each_epoch_yields_every_row_once(tmp_path, n, buffer_rows, chunk_rows, batch, min_last):
    rows = disk_rows(tmp_path, n, buffer_rows, chunk_rows)
    g = torch.Generator().manual_seed(0)
    batches = list(rows.batches(batch, g, min_last))
    assert (
        len(batches)
        == rows.n_batches(batch, min_last)
        == TensorRows(torch.zeros(n, 1), torch.zeros(n)).n_batches(batch, min_last)
    )
    assert all(len(yb) == batch for _, yb in batches[:-1])
    X = torch.cat([xb for xb, _ in batches])
    y = torch.cat([yb for _, yb in batches])
    assert X.dtype == torch.int64 and y.dtype == torch.float32
    assert torch.equal(X[:, 0].float(), y) and torch.equal(X[:, 0], X[:, 2])  # rows stay whole
    kept = n if n % batch == 0 or n % batch >= min_last else n - n % batch
    assert len(y) == kept and len(torch.unique(y)) == kept  # each row at most once


def test_shuffle_changes_every_epoch_and_repeats_for_a_seed(tmp_path):
    rows = disk_rows(tmp_path, 20_000, buffer_rows=2048, chunk_rows=256)

    def epochs(seed, k=2):
        g = torch.Generator().manual_seed(seed)
        return [torch.cat([yb for _, yb in rows.batches(512, g, 1)]) for _ in range(k)]

    first, second = epochs(7)
    assert not torch.equal(first, second)
    assert torch.equal(torch.sort(first).values, torch.sort(second).values)
    assert all(torch.equal(a, b) for a, b in zip(epochs(7), (first, second), strict=True))
    assert not torch.equal(epochs(8, 1)[0], first)
    # Well mixed for a bounded buffer: consecutive rows rarely stay neighbours, and the first
    # batch draws from all over the file, not from its beginning.
    assert (torch.diff(first).abs() == 1).float().mean() < 0.01
    assert first[:512].max() - first[:512].min() > 10_000


def test_without_a_generator_the_batches_are_those_of_tensor_rows(tmp_path):
    rows = disk_rows(tmp_path, 3000, buffer_rows=500, chunk_rows=64)
    X, y = np.load(tmp_path / "X.npy").astype(np.int64), np.load(tmp_path / "y.npy")
    memory = TensorRows(torch.from_numpy(X), torch.from_numpy(y))
    ours, theirs = list(rows.batches(256, None, 1)), list(memory.batches(256, None, 1))
    assert len(ours) == len(theirs)
    for (xa, ya), (xb, yb) in zip(ours, theirs, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_the_rows_held_stay_within_the_buffer(tmp_path, monkeypatch):
    """Rows read from disk but not yet yielded never exceed the buffer plus one batch."""
    n, buffer_rows, batch = 30_000, 2048, 300
    rows = disk_rows(tmp_path, n, buffer_rows, chunk_rows=256)
    read = {"rows": 0, "largest": 0}
    original = stream._RowFile.read

    def counting(self, fh, start, out):
        if out.dtype == np.int32:  # the X file; y is read alongside
            read["rows"] += len(out)
            read["largest"] = max(read["largest"], len(out))
        return original(self, fh, start, out)

    monkeypatch.setattr(stream._RowFile, "read", counting)
    yielded = 0
    for _, yb in rows.batches(batch, torch.Generator().manual_seed(0), 1):
        yielded += len(yb)
        assert read["rows"] - yielded <= buffer_rows + batch
    assert read["rows"] == yielded == n
    assert read["largest"] <= buffer_rows


# ---- gprec train ---------------------------------------------------------------------------


def train(tmp_path, schema, name, fmt, *sets):
    from gprec.cli.main import main

    out = tmp_path / name
    args = ["train", "--set", "data.source=generic", "--set", f"data.path={schema}",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.split=hash",
            "--set", f"data.format={fmt}", "--set", "data.shuffle_buffer=600",
            "--set", "train.max_epochs=3", "--set", "train.patience=10",
            "--set", "train.batch_size=128", "--set", "train.lr=0.01",
            "--set", "train.progress=false",
            *[a for s in sets for a in ("--set", s)], "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_training_in_file_order_gives_the_in_memory_run_exactly(tmp_path, small_blocks):
    """Without shuffling both paths train on the same batches: the same run, bit for bit."""
    schema = write_data(tmp_path / "data")
    a, memory = train(tmp_path, schema, "memory", "memory", "train.shuffle=false")
    b, streamed = train(tmp_path, schema, "stream", "parquet-stream", "train.shuffle=false")
    assert streamed["test"] == memory["test"] and streamed["valid"] == memory["valid"]
    assert streamed["data"]["rows"] == memory["data"]["rows"]
    assert (a / "vocab.json").read_text() == (b / "vocab.json").read_text()
    assert (a / "catalogue.npz").read_bytes() == (b / "catalogue.npz").read_bytes()
    ours, theirs = (torch.load(d / "model.pt")["state_dict"] for d in (b, a))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_shuffled_training_matches_the_in_memory_metrics(tmp_path, small_blocks):
    """Shuffled, the two paths see the rows in different orders: the metrics agree within
    0.03 AUC and 0.03 LogLoss, and both learn the planted signal. On this data the in-memory
    path's training seeds 2024-2029 (one split) span 0.785-0.800 test AUC and 0.537-0.557
    LogLoss, the streamed path's 0.779-0.792 and 0.537-0.556, so 0.03 allows for the spread
    of one seed; the exact equality without shuffling is the strict check (above)."""
    schema = write_data(tmp_path / "data", n=6000)
    _, memory = train(tmp_path, schema, "memory", "memory")
    _, streamed = train(tmp_path, schema, "stream", "parquet-stream")
    assert memory["test"]["auc"] > 0.7 and streamed["test"]["auc"] > 0.7
    assert streamed["test"]["auc"] == pytest.approx(memory["test"]["auc"], abs=0.03)
    assert streamed["test"]["logloss"] == pytest.approx(memory["test"]["logloss"], abs=0.03)
    assert streamed["data"]["rows"] == memory["data"]["rows"]


# ---- the cache -----------------------------------------------------------------------------


def test_a_second_load_reads_the_cache_entry_only(tmp_path, monkeypatch):
    schema = write_data(tmp_path / "data")
    first = load_dataset(data_cfg(tmp_path, schema), seed=1)

    def no_reading(*a, **k):
        raise AssertionError("the Parquet file was read again")

    monkeypatch.setattr(stream, "InteractionStream", no_reading)
    second = load_dataset(data_cfg(tmp_path, schema, shuffle_buffer=99), seed=1)
    assert second.from_cache and not first.from_cache
    assert second.buffer_rows == 99  # a training setting, not part of the cache key
    for s in SPLITS:
        assert np.array_equal(np.asarray(first.X[s]), np.asarray(second.X[s]))
    entries = [p for p in (tmp_path / "cache").iterdir()]
    assert len(entries) == 1 and entries[0].name.startswith("generic-")
    scanned = cache.scan(tmp_path / "cache")
    assert len(scanned.entries) == 1 and scanned.entries[0].problem is None
    assert scanned.entries[0].rows == sum(first.size(s) for s in SPLITS)


def test_a_damaged_entry_is_rebuilt(tmp_path, caplog):
    schema = write_data(tmp_path / "data")
    first = load_dataset(data_cfg(tmp_path, schema), seed=1)
    entry = next((tmp_path / "cache").iterdir())
    with open(entry / "X_train.npy", "r+b") as fh:
        fh.truncate(200)
    del first
    with caplog.at_level(logging.WARNING):
        again = load_dataset(data_cfg(tmp_path, schema), seed=1)
    assert not again.from_cache and "damaged" in caplog.text
    assert again.X["train"].shape[0] == again.size("train")


def test_an_error_or_interrupt_while_encoding_leaves_nothing_behind(tmp_path, monkeypatch):
    schema = write_data(tmp_path / "data")

    def interrupted(self, table, fields):
        raise KeyboardInterrupt

    monkeypatch.setattr(stream.Vocabulary, "encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(data_cfg(tmp_path, schema), seed=1)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_bad_target_names_its_row_in_the_file(tmp_path, small_blocks):
    directory = tmp_path / "data"
    schema = write_data(directory)
    table = pl.read_parquet(directory / "log.parquet").with_row_index("row")
    stars = pl.when(pl.col("row") == 2345).then(None).otherwise(pl.col("stars")).alias("stars")
    table.with_columns(stars).drop("row").write_parquet(
        directory / "log.parquet", row_group_size=700
    )
    message = r"log\.parquet: row 2346: column 'stars': None is not a number"
    with pytest.raises(DataError, match=message):  # as the in-memory path says it
        load_dataset(data_cfg(tmp_path, schema, fmt="memory"), seed=1)
    with pytest.raises(DataError, match=message):
        load_dataset(data_cfg(tmp_path, schema), seed=1)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


# ---- errors --------------------------------------------------------------------------------


def test_a_missing_or_unreadable_parquet_file_is_one_error(tmp_path):
    directory = tmp_path / "data"
    schema = write_data(directory)
    (directory / "log.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match=r"log\.parquet: cannot read as parquet"):
        load_dataset(data_cfg(tmp_path, schema), seed=1)
    (directory / "log.parquet").unlink()
    with pytest.raises(DataError, match=r"file not found \(interactions\.path"):
        load_dataset(data_cfg(tmp_path, schema), seed=1)


def test_csv_interactions_are_refused(tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "log.csv").write_text("user,item,stars\n1,2,5\n")
    (directory / "schema.yaml").write_text(
        "interactions: log.csv\ntarget: stars\nfields: {user: personal, item: item}\n"
    )
    with pytest.raises(DataError, match=r"log\.csv: data\.format parquet-stream reads Parquet"):
        load_dataset(data_cfg(tmp_path, directory / "schema.yaml"), seed=1)


@pytest.mark.parametrize(
    "replace, message",
    [
        ("genre: item", r"field 'genree' is not a column of log\.parquet, users\.parquet"),
        ("target: stars", r"target 'starz' is not a column of log\.parquet"),
        ("key: user", r"users\.key 'usr' is not a column"),
    ],
)
def test_a_missing_column_names_it_and_the_file(tmp_path, replace, message):
    schema = write_data(tmp_path / "data")
    wrong = {
        "genre: item": "genree: item",
        "target: stars": "target: starz",
        "key: user": "key: usr",
    }
    schema.write_text(schema.read_text().replace(replace, wrong[replace]))
    with pytest.raises(ConfigError, match=message):
        load_dataset(data_cfg(tmp_path, schema), seed=1)


@pytest.mark.parametrize(
    "data, train, message",
    [
        ({"source": "ml-100k"}, {}, "data.format: parquet-stream reads a generic dataset"),
        ({"split": "random"}, {}, "data.split: data.format parquet-stream needs hash"),
        ({"duplicates": "drop"}, {}, "data.duplicates: data.format parquet-stream needs warn"),
        ({"user_groups": 4}, {}, "data.user_groups: data.format parquet-stream cannot cluster"),
        ({"target": "value"}, {"task": "regression"}, "data.target: data.format parquet-stream"),
        ({}, {"task": "implicit"}, "train.task: is implicit, but data.format parquet-stream"),
    ],
)
def test_what_a_stream_cannot_do_is_a_config_error(data, train, message):
    raw = {
        "data": {"source": "generic", "path": "x.yaml", "split": "hash", "format": "parquet-stream"}
        | data,
        "train": train,
    }
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_an_empty_parquet_file_is_one_error(tmp_path):
    directory = tmp_path / "data"
    schema = write_data(directory)
    pq.write_table(pq.read_table(directory / "log.parquet").slice(0, 0), directory / "log.parquet")
    with pytest.raises(DataError, match=r"log\.parquet: no data rows"):
        load_dataset(data_cfg(tmp_path, schema), seed=1)


def test_an_appended_array_is_the_file_np_save_writes(tmp_path):
    a = np.arange(3000, dtype=np.int32).reshape(1000, 3)
    entry = tmp_path / "cache" / "generic-0123456789abcdef0123"
    with cache.EntryWriter(entry, "data.cache_dir") as writer:
        appender = writer.appender("X_train", np.int32, a.shape)
        for start in range(0, 1000, 300):
            appender.append(a[start : start + 300])
        appender.close()
        writer.array("X_valid", a)
        writer.commit({})
    assert (entry / "X_train.npy").read_bytes() == (entry / "X_valid.npy").read_bytes()
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["files"]["X_train.npy"] == meta["files"]["X_valid.npy"]
    _, arrays, _ = cache.read_entry(entry)  # checksums verified
    assert np.array_equal(arrays["X_train"], a)
