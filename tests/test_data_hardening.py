"""Data messages that name the file, row and setting; duplicate interaction rows."""

import logging

import numpy as np
import pytest

from conftest import write_ml100k
from gprec.cli.main import main
from gprec.config import DataConfig
from gprec.data.dataset import apply_duplicate_policy, load_dataset
from gprec.data.encode import data_rows, find_duplicates
from gprec.data.generic import load_generic
from gprec.errors import DataError

RUN = ["--set", "train.max_epochs=1", "--set", "train.batch_size=512", "--set", "train.progress=false"]  # fmt: skip
SCHEMA = "interactions: interactions.csv\ntarget: rating\ntimestamp: ts\nfields: {uid: personal, iid: item}\n"  # fmt: skip


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert (
        "Traceback" not in err and [x for x in lines if x.startswith("gprec: error")] == lines[-1:]
    ), lines
    return lines[-1]


def write_interactions(directory, rows: list[tuple]) -> tuple:
    """A generic dataset (user, item, rating, timestamp): the schema and the CSV paths."""
    directory.mkdir(parents=True, exist_ok=True)
    csv = directory / "interactions.csv"
    csv.write_text("uid,iid,rating,ts\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    (directory / "schema.yaml").write_text(SCHEMA)
    return directory / "schema.yaml", csv


def distinct_rows(n=400, seed=0) -> list[tuple]:
    """n interactions, each a different user-item pair, ratings 1-5, increasing timestamps."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(60 * 40, size=n, replace=False)
    return [
        (int(p // 40), f"i{p % 40}", int(rng.integers(1, 6)), 1000 + k) for k, p in enumerate(pairs)
    ]


def run_args(tmp_path, schema) -> list[str]:
    return [
        "train", *RUN,
        "--set", "data.source=generic", "--set", f"data.path={schema}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--out", str(tmp_path / "run"),
    ]  # fmt: skip


def nothing_written(tmp_path) -> bool:
    cache = tmp_path / "cache"
    return not (tmp_path / "run").exists() and (not cache.exists() or not any(cache.iterdir()))


# ---- item 10: messages ------------------------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [("3", "3"), ("2.5", "2.5"), ("-1", "-1")])
def test_a_target_that_is_not_0_1_names_the_file_row_and_plain_value(
    tmp_path, capsys, value, shown
):
    rows = [(1, "a", 1, 10), (2, "b", 0, 20), (3, "a", value, 30), (4, "b", 1, 40)]
    schema, csv = write_interactions(tmp_path / "d", rows)

    assert main([*run_args(tmp_path, schema), "--set", "data.label_threshold=null"]) == 2

    assert one_error_line(capsys) == (
        f"gprec: error: {csv}: target {shown} on data row 3 is not 0/1; "
        "set data.label_threshold to turn ratings into labels"
    )
    assert nothing_written(tmp_path)


def test_the_data_row_counts_rows_a_loader_dropped(tmp_path):
    data = write_ml100k(tmp_path / "ml-100k")
    # Line 1 rates a movie u.item lacks (dropped with a warning); line 3 is the first rating
    # that is not 0/1, and stays "data row 3" although it is the loaded table's second row.
    (data / "u.data").write_text("1\t999\t1\t1\n1\t1\t1\t2\n2\t2\t4\t3\n3\t3\t0\t4\n")
    cfg = DataConfig(
        source="ml-100k", path=str(data), cache_dir=str(tmp_path / "c"), label_threshold=None
    )
    with pytest.raises(DataError) as e:
        load_dataset(cfg, seed=0)
    assert str(e.value) == (
        f"{data / 'u.data'}: target 4 on data row 3 is not 0/1; "
        "set data.label_threshold to turn ratings into labels"
    )


ML_ARGS = ["train", *RUN, "--set", "data.source=ml-100k"]


def test_a_missing_data_dir_says_how_a_relative_path_was_resolved(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPREC_DATA", raising=False)
    out = tmp_path / "run"

    assert main([*ML_ARGS, "--set", "data.path=ml-100k", "--out", str(out)]) == 2

    assert one_error_line(capsys) == (
        f"gprec: error: ml-100k/u.data: file not found; data.path 'ml-100k' is relative to the "
        f"working directory {tmp_path} ($GPREC_DATA is unset); set data.path to the directory "
        "that holds u.data, or $GPREC_DATA to the folder holding ml-100k"
    )
    assert not out.exists() and not (tmp_path / ".gprec_cache").exists()


def test_a_missing_data_dir_under_gprec_data_names_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPREC_DATA", str(tmp_path / "datasets"))

    assert main([*ML_ARGS, "--set", "data.path=ml-100k", "--out", str(tmp_path / "run")]) == 2

    assert one_error_line(capsys) == (
        f"gprec: error: {tmp_path}/datasets/ml-100k/u.data: file not found; data.path "
        f"'ml-100k' was looked up under $GPREC_DATA={tmp_path}/datasets; set data.path to the "
        "directory that holds u.data, or $GPREC_DATA to the folder holding ml-100k"
    )
    assert not (tmp_path / "run").exists()


def test_a_missing_file_in_an_absolute_data_dir(tmp_path, capsys, monkeypatch):
    data = write_ml100k(tmp_path / "ml")
    (data / "u.item").unlink()
    monkeypatch.setenv("GPREC_DATA", "/elsewhere")  # does not apply to an absolute path

    assert main([*ML_ARGS, "--set", f"data.path={data}", "--out", str(tmp_path / "run")]) == 2

    assert one_error_line(capsys) == (
        f"gprec: error: {data}/u.item: file not found; data.path is '{data}'; "
        "set it to the directory that holds u.item"
    )
    assert not (tmp_path / "run").exists()


def test_a_missing_ml1m_ratings_file_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("GPREC_DATA", raising=False)
    (tmp_path / "ml").mkdir()
    cfg = DataConfig(source="ml-1m", path=str(tmp_path / "ml"), ratings_file="r.dat")
    with pytest.raises(DataError, match=r"/ml/r\.dat: file not found; data.path is "):
        load_dataset(cfg, seed=0, use_cache=False)


def test_a_missing_schema_or_data_file_of_a_generic_dataset(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GPREC_DATA", raising=False)
    schema, csv = write_interactions(tmp_path / "d", distinct_rows())
    missing = tmp_path / "d" / "nope.yaml"
    assert main(run_args(tmp_path, missing)) == 2
    assert one_error_line(capsys) == (
        f"gprec: error: {missing}: file not found; data.path is '{missing}'; "
        "set it to the schema YAML file"
    )
    csv.unlink()
    assert main(run_args(tmp_path, schema)) == 2
    assert one_error_line(capsys) == (
        f"gprec: error: {csv}: file not found (interactions.path in {schema}; a relative path "
        "is taken from the schema file's directory)"
    )
    assert nothing_written(tmp_path)


# ---- item 11: duplicate interaction rows ------------------------------------------------

# Row 401 repeats row 3 (a later rating), row 402 repeats row 5 with an earlier timestamp,
# row 403 repeats row 3 again.


def rows_with_duplicates() -> list[tuple]:
    rows = distinct_rows()
    u3, i3 = rows[2][:2]
    u5, i5 = rows[4][:2]
    return [*rows, (u3, i3, 1, 5000), (u5, i5, 1, 1), (u3, i3, 5, 4000)]


def test_duplicates_are_found_with_their_first_rows(tmp_path):
    schema, _ = write_interactions(tmp_path / "d", rows_with_duplicates())
    raw = load_generic(schema)
    count, first, repeated = find_duplicates(raw)
    assert (count, data_rows(raw)[first], data_rows(raw)[repeated]) == (3, 401, 3)
    schema, _ = write_interactions(tmp_path / "clean", distinct_rows())
    assert find_duplicates(load_generic(schema)) is None


def test_duplicates_warn_by_default_and_are_kept(tmp_path, caplog):
    schema, csv = write_interactions(tmp_path / "d", rows_with_duplicates())
    cfg = DataConfig(source="generic", path=str(schema), cache_dir=str(tmp_path / "c"))
    expected = (
        f"{csv}: 3 duplicate interaction rows (equal in every field; data row 401 repeats data "
        "row 3) are kept, so the same interaction can be in both train and test; set "
        "data.duplicates=drop to keep the last of each, or data.duplicates=error to refuse"
    )
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(cfg, seed=0)
    assert [r.getMessage() for r in caplog.records] == [expected]
    assert sum(ds.size(s) for s in ("train", "valid", "test")) == 403
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = load_dataset(cfg, seed=0)  # the cached entry says so too
    assert again.from_cache and [r.getMessage() for r in caplog.records] == [expected]


def test_the_default_synthetic_data_has_no_duplicates(tmp_path, caplog):
    cfg = DataConfig(cache_dir=str(tmp_path / "c"), synthetic={"n_interactions": 20_000})
    with caplog.at_level(logging.WARNING):
        load_dataset(cfg, seed=0)
    assert not caplog.records


def test_duplicates_drop_keeps_the_latest_of_each(tmp_path):
    schema, _ = write_interactions(tmp_path / "d", rows_with_duplicates())
    raw = load_generic(schema)
    kept, info = apply_duplicate_policy(raw, "drop", None)
    assert info["count"] == 3 and kept.table.height == 400 and find_duplicates(kept) is None
    rows = distinct_rows()
    by_pair = {(r["uid"], r["iid"]): r for r in kept.table.iter_rows(named=True)}
    assert by_pair[str(rows[2][0]), rows[2][1]]["target"] == 1  # ts 5000, the latest
    assert by_pair[str(rows[4][0]), rows[4][1]]["target"] == rows[4][2]  # the later original
    # the kept rows stay in file order and keep their file row numbers
    assert list(data_rows(kept)) == sorted(data_rows(kept))
    assert 401 in data_rows(kept) and 3 not in data_rows(kept) and 403 not in data_rows(kept)
    assert 5 in data_rows(kept) and 402 not in data_rows(kept)


def test_duplicates_drop_without_timestamp_keeps_the_last_row(tmp_path):
    schema, _ = write_interactions(tmp_path / "d", rows_with_duplicates())
    schema.write_text(SCHEMA.replace("timestamp: ts\n", ""))
    kept, _ = apply_duplicate_policy(load_generic(schema), "drop", None)
    assert 402 in data_rows(kept) and 5 not in data_rows(kept) and 403 in data_rows(kept)


def test_data_duplicates_drop_through_the_cli_and_cache(tmp_path, capsys, caplog):
    schema, csv = write_interactions(tmp_path / "d", rows_with_duplicates())
    args = run_args(tmp_path, schema)
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--set", "data.duplicates=drop"]) == 0
    assert not [r for r in caplog.records if "duplicate" in r.getMessage()]
    assert "test auc" in capsys.readouterr().out
    cfg = DataConfig(
        source="generic", path=str(schema), cache_dir=str(tmp_path / "cache"), split_seed=2024
    )
    dropped = load_dataset(cfg.model_copy(update={"duplicates": "drop"}), seed=2024)
    kept = load_dataset(cfg, seed=2024)  # another policy, another cache entry
    assert dropped.from_cache and not kept.from_cache
    assert [sum(d.size(s) for s in ("train", "valid", "test")) for d in (dropped, kept)] == [
        400,
        403,
    ]


def test_data_duplicates_error_names_the_count_and_rows(tmp_path, capsys):
    schema, csv = write_interactions(tmp_path / "d", rows_with_duplicates())

    assert main([*run_args(tmp_path, schema), "--set", "data.duplicates=error"]) == 2

    assert one_error_line(capsys) == (
        f"gprec: error: {csv}: 3 duplicate interaction rows (equal in every field): data row 401 "
        "repeats data row 3; set data.duplicates=drop to keep the last of each, or "
        "data.duplicates=warn to keep them all"
    )
    assert nothing_written(tmp_path)
