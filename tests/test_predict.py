"""`gprec predict` and gprec.serving's encoding: a run's own test rows, given raw, get the codes
training gave them and the run's own predictions bit for bit (so its test metrics); user and
item features left out come from the run's catalogue; streaming in batches equals one pass;
unseen values are one warning per field; every bad input is one error line (exit 2) and leaves
no output behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import train_tiny_ml100k, write_ml100k
from gprec.cli.main import main
from gprec.data.dataset import (
    apply_duplicate_policy,
    duplicate_policy,
    load_dataset,
    load_raw,
    split_rows,
)
from gprec.errors import DataError
from gprec.evaluation.metrics import ctr_metrics, regression_metrics
from gprec.serving.catalogue import CATALOGUE, load_catalogue
from gprec.serving.predict import Predictor, predict_file, score_in_chunks
from gprec.training.load import load_run

FEATURES = ["genres", "year", "age", "gender", "occupation", "zip"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    write_ml100k(root / "ml-100k", n_items=200, n_ratings=3000)
    return {
        # KMeans groups: the `group` field must be assigned to new rows as training did
        "binary": train_tiny_ml100k(root, "binary", "data.user_groups=3"),
        "regression": train_tiny_ml100k(
            root, "regression", "train.task=regression", "data.target=value"
        ),
        "implicit": train_tiny_ml100k(
            root, "implicit", "train.task=implicit", "train.eval_negatives=10"
        ),
    }


def raw_rows(run, split: str) -> pl.DataFrame:
    """The raw field columns of a run's split, as its data gives them before encoding."""
    cfg = run.config.data
    raw, _ = apply_duplicate_policy(load_raw(cfg), duplicate_policy(cfg), None)
    rows = split_rows(raw, cfg, run.config.split_seed())
    return raw.table[rows[split]].select(raw.field_names)


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gprec: error: "), err
    return err[0]


def read_scores(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema=False).with_columns(pl.col("score").cast(pl.Float32))


# -- the run's own rows ------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["binary", "regression", "implicit"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_raw_test_rows_reproduce_the_runs_own_predictions(runs, tmp_path, task, suffix):
    run = load_run(runs[task])
    data = load_dataset(run.config.data, run.config.split_seed())
    raw = raw_rows(run, "test")
    # the codes are training's own, the KMeans group included
    predictor = Predictor.open(runs[task])
    assert np.array_equal(predictor.encode(raw).X, data.X["test"])
    src = tmp_path / f"test{suffix}"
    raw.write_csv(src) if suffix == ".csv" else raw.write_parquet(src)
    out = tmp_path / f"scored{suffix}"
    assert main(["predict", str(runs[task]), "--input", str(src), "--output", str(out)]) == 0
    scored = read_scores(out)
    assert scored.columns == [*raw.columns, "score"]
    assert scored.drop("score").equals(raw)  # the input's columns come back unchanged
    own = run.predict(data.X["test"])
    assert np.array_equal(scored["score"].to_numpy(), own)  # bit for bit
    if task != "implicit":  # implicit metrics need the task fitted on the data (load_run says)
        metrics = ctr_metrics if task == "binary" else regression_metrics
        recorded = json.loads((runs[task] / "metrics.json").read_text())["test"]
        assert metrics(data.y["test"], scored["score"].to_numpy()) == pytest.approx(
            recorded, abs=1e-9
        )


def test_features_left_out_come_from_the_runs_catalogue(runs, tmp_path, capsys):
    run = load_run(runs["binary"])
    raw = raw_rows(run, "test")
    known = {
        key: set(run.vocab.values[key]) for key in ("user_id", "item_id")
    }  # ids of training rows
    rows = raw.filter(
        pl.col("user_id").is_in(list(known["user_id"]))
        & pl.col("item_id").is_in(list(known["item_id"]))
    )
    assert 0 < rows.height
    predictor = Predictor.open(runs["binary"])
    full = predictor.encode(rows).X
    assert np.array_equal(predictor.encode(rows.select("user_id", "item_id")).X, full)
    assert np.array_equal(predictor.encode(rows.drop("genres", "age")).X, full)
    # a given feature column wins over the catalogue: a new value is the caller's, unseen
    changed = predictor.encode(rows.with_columns(pl.lit("a new genre").alias("genres")))
    assert (changed.X[:, 1] == 0).all() and changed.unseen == {"genres": rows.height}
    ids = tmp_path / "ids.csv"
    rows.select("item_id", "user_id").write_csv(ids)
    out = tmp_path / "out.csv"
    assert main(["predict", str(runs["binary"]), "-i", str(ids), "-o", str(out)]) == 0
    assert capsys.readouterr().err.strip() == f"wrote {rows.height:,d} scored rows to {out}"
    assert np.array_equal(read_scores(out)["score"].to_numpy(), run.predict(full))


def test_streaming_in_batches_equals_one_pass(runs, tmp_path):
    run = load_run(runs["regression"])
    raw = raw_rows(run, "train")  # 2,400 rows
    src = tmp_path / "rows.parquet"
    raw.write_parquet(src, row_group_size=500)
    predictor = Predictor.open(runs["regression"])
    one = tmp_path / "one.csv"
    summary = predict_file(predictor, src, one)
    assert (summary.rows, summary.batches) == (raw.height, 1)
    for batch_rows, name in ((7, "seven.csv"), (333, "many.parquet")):
        out = tmp_path / name
        summary = predict_file(predictor, src, out, batch_rows=batch_rows)
        assert summary.batches == -(-raw.height // batch_rows) > 1
        assert read_scores(out).equals(read_scores(one))
    # stdout (CSV) holds the same
    raw.write_csv(tmp_path / "rows.csv")
    with open(tmp_path / "stream.csv", "wb") as fh:
        predict_file(predictor, tmp_path / "rows.csv", fh, batch_rows=100)
    assert read_scores(tmp_path / "stream.csv").equals(read_scores(one))
    X = predictor.encode(raw).X
    assert np.array_equal(read_scores(one)["score"].to_numpy(), run.predict(X))


def test_chunked_scoring_is_independent_of_how_the_rows_are_cut():
    """score_in_chunks calls the model on fixed offsets of the whole stream: pieces of any
    sizes give the same numbers as one call per chunk of all rows."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 3))
    calls = []

    def score(rows):
        calls.append(len(rows))
        return rows.sum(1) * len(rows)  # depends on the call's size, as rounding can

    cuts = np.sort(rng.choice(np.arange(1, 1000), 30, replace=False))
    pieces = [(k, p) for k, p in enumerate(np.split(X, cuts))]
    out = list(score_in_chunks(iter(pieces), score, chunk=64))
    assert [k for k, _ in out] == list(range(len(pieces)))
    assert [len(s) for _, s in out] == [len(p) for _, p in pieces]
    expected = np.concatenate([score(X[i : i + 64]) for i in range(0, 1000, 64)])
    assert np.array_equal(np.concatenate([s for _, s in out]), expected.astype(np.float32))
    assert calls[: 1000 // 64 + 1] == [64] * (1000 // 64) + [1000 % 64]


# -- unseen values -----------------------------------------------------------------------------


def test_unseen_values_are_one_warning_per_field(runs, tmp_path, capsys):
    run = load_run(runs["binary"])
    rows = raw_rows(run, "test").head(20)
    rows = rows.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("nobody")).otherwise("user_id").alias("user_id"),
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("Space Opera")).otherwise("genres").alias("genres"),
    )  # fmt: skip
    src = tmp_path / "rows.csv"
    rows.write_csv(src)
    out = tmp_path / "out.parquet"
    assert (
        main(["predict", str(runs["binary"]), "-i", str(src), "-o", str(out), "--batch-rows", "4"])
        == 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    warnings = [line for line in err if "warning" in line]
    assert len(warnings) == 2, err  # one line per field, over all 5 batches
    assert (
        "field 'user_id': 3 of 20 rows have a value unseen in training (first: 'nobody')"
        in warnings[0]
    )
    assert "field 'genres': 1 of 20 rows" in warnings[1] and "'Space Opera'" in warnings[1]
    encoded = Predictor.open(runs["binary"]).encode(rows)
    assert (encoded.X[:3, 3] == 0).all() and encoded.X[5, 1] == 0
    # the user's features, given here, are encoded from the input, not left unseen
    assert (encoded.X[:3, 4:8] > 0).all()
    ids = tmp_path / "ids.csv"
    rows.select("user_id", "item_id").write_csv(ids)
    assert (
        main(["predict", str(runs["binary"]), "-i", str(ids), "-o", str(out), "--overwrite"]) == 0
    )
    warnings = capsys.readouterr().err.strip().splitlines()[:-1]
    assert len(warnings) == 1 and "so are their age, gender, occupation, zip" in warnings[0]


# -- errors ------------------------------------------------------------------------------------


def test_a_missing_column_is_one_error_naming_it(runs, tmp_path, capsys):
    run = load_run(runs["binary"])
    rows = raw_rows(run, "test").head(5)
    src, out = tmp_path / "rows.csv", tmp_path / "out.csv"
    rows.drop("user_id").write_csv(src)
    err = one_line_error(capsys, ["predict", str(runs["binary"]), "-i", str(src), "-o", str(out)])
    assert "missing column 'user_id'" in err and str(src) in err
    rows.drop("user_id", "item_id").write_parquet(tmp_path / "rows.parquet")
    err = one_line_error(
        capsys, ["predict", str(runs["binary"]), "-i", str(tmp_path / "rows.parquet")]
    )
    assert "missing columns 'item_id', 'user_id'" in err
    assert not out.exists() and capsys.readouterr().out == ""


def test_empty_and_unreadable_inputs_are_one_error_each(runs, tmp_path, capsys):
    run_dir = str(runs["binary"])
    out = tmp_path / "out.csv"
    cases = {
        "header.csv": ("user_id,item_id\n", "no data rows"),
        "blank.csv": ("", "no columns: the file is empty"),
        "scored.csv": ("user_id,item_id,score\n1,2,0.5\n", "already has a column 'score'"),
        "twice.csv": (
            "user_id,item_id,user_id\n1,2,3\n",
            "column 'user_id' appears more than once",
        ),
        "garbage.parquet": ("not a parquet file", "cannot read as parquet"),
        "rows.json": ("{}", "unknown input type '.json'"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        err = one_line_error(
            capsys, ["predict", run_dir, "-i", str(tmp_path / name), "-o", str(out), "--overwrite"]
        )
        assert message in err and name in err, err
    pl.DataFrame({"user_id": [], "item_id": []}, schema=dict.fromkeys(("user_id", "item_id"), pl.String)).write_parquet(
        tmp_path / "empty.parquet"
    )  # fmt: skip
    err = one_line_error(
        capsys,
        ["predict", run_dir, "-i", str(tmp_path / "empty.parquet"), "-o", str(out), "--overwrite"],
    )
    assert "empty.parquet: no data rows" in err
    err = one_line_error(capsys, ["predict", run_dir, "-i", str(tmp_path / "nope.csv")])
    assert "nope.csv: file not found" in err
    (tmp_path / "dir.csv").mkdir()
    assert "dir.csv: not a file" in one_line_error(
        capsys, ["predict", run_dir, "-i", str(tmp_path / "dir.csv")]
    )
    src = tmp_path / "header.csv"
    for args, message in (
        (["--batch-rows", "0"], "--batch-rows must be at least 1, not 0"),
        (["-o", str(tmp_path / "out.txt.gz")], "unknown output type '.gz'"),
        (["-o", str(tmp_path)], "is a directory"),
        (["-o", str(src), "--overwrite"], "the output is the input file"),
    ):
        (tmp_path / "header.csv").write_text("user_id,item_id\n1,2\n")
        assert message in one_line_error(capsys, ["predict", run_dir, "-i", str(src), *args])
    assert "no such run directory" in one_line_error(
        capsys, ["predict", str(tmp_path / "norun"), "-i", str(src)]
    )
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_a_failure_mid_file_leaves_no_output_and_an_old_one_intact(runs, tmp_path, capsys):
    run = load_run(runs["binary"])
    rows = raw_rows(run, "test").head(30).select("user_id", "item_id")
    src = tmp_path / "rows.csv"
    src.write_text(rows.write_csv() + "1,2,3\n")  # a ragged last line, read in the last batch
    out = tmp_path / "out.parquet"
    err = one_line_error(
        capsys,
        ["predict", str(runs["binary"]), "-i", str(src), "-o", str(out), "--batch-rows", "8"],
    )
    assert "rows.csv: cannot read as csv" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]
    out.write_bytes(b"earlier scores")
    assert (
        main(["predict", str(runs["binary"]), "-i", str(src), "-o", str(out), "--batch-rows", "8"])
        == 2
    )
    assert out.read_bytes() == b"earlier scores"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "rows.csv"]


def test_a_run_without_catalogue_needs_every_field_or_a_rebuild(runs, tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(runs["binary"], old)
    kept = load_catalogue(load_run(old))
    (old / CATALOGUE).unlink()  # as a run trained before gprec kept it
    run = load_run(old)
    rows = raw_rows(run, "test").head(10)
    full, ids = tmp_path / "full.csv", tmp_path / "ids.csv"
    rows.write_csv(full)
    rows.select("user_id", "item_id").write_csv(ids)
    out = tmp_path / "out.csv"
    assert main(["predict", str(old), "-i", str(full), "-o", str(out)]) == 0
    capsys.readouterr()
    err = one_line_error(
        capsys, ["predict", str(old), "-i", str(ids), "-o", str(out), "--overwrite"]
    )
    assert "missing columns 'genres', 'year', 'age'" in err
    assert "no catalogue.npz" in err and "--rebuild-catalogue" in err
    assert not (old / CATALOGUE).exists()
    scores = read_scores(out)
    args = ["-o", str(out), "--overwrite", "--rebuild-catalogue"]
    assert main(["predict", str(old), "-i", str(ids), *args]) == 0
    rebuilt = load_catalogue(run)
    for name in ("item_features", "user_rows", "seen_indptr", "seen_items"):
        assert np.array_equal(getattr(rebuilt, name), getattr(kept, name))
    assert read_scores(out)["score"].equals(scores["score"])


def test_library_errors_are_data_errors(runs):
    predictor = Predictor.open(runs["regression"])
    with pytest.raises(DataError, match="missing column 'item_id'"):
        predictor.predict_frame(pl.DataFrame({"user_id": ["1"]}))
    frame = predictor.predict_frame(pl.DataFrame({"user_id": ["1", "2"], "item_id": ["3", "x"]}))
    assert frame.columns == ["user_id", "item_id", "score"] and frame["score"].dtype == pl.Float32


def test_an_existing_output_is_replaced_only_with_overwrite(runs, tmp_path, capsys):
    """Nothing is replaced silently: predict and recommend refuse an existing --output (the
    file untouched) unless --overwrite."""
    src = tmp_path / "rows.csv"
    raw_rows(load_run(runs["binary"]), "test").head(5).write_csv(src)
    for command in (["predict", "-i", str(src)], ["recommend", "--user", "1"]):
        out = tmp_path / f"{command[0]}.csv"
        out.write_text("mine")
        err = one_line_error(
            capsys, [command[0], str(runs["binary"]), *command[1:], "-o", str(out)]
        )
        assert "exists; pass --overwrite to replace it" in err and out.read_text() == "mine"
        assert (
            main([command[0], str(runs["binary"]), *command[1:], "-o", str(out), "--overwrite"])
            == 0
        )
        assert out.read_text() != "mine"
        capsys.readouterr()
