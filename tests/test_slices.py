"""Sliced evaluation (gprec.evaluation.slices, `gprec evaluate`, `gprec compare --slices`):
buckets against hand computations, per-slice metrics against scikit-learn on the slice's rows,
the overall numbers against metrics.json for every task, both commands end to end on tiny runs
trained here, and every bad option as one line."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from conftest import write_ml100k
from gprec.cli import evaluate as evaluate_cli
from gprec.cli.main import main
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.evaluation import slices as sl
from gprec.evaluation.significance import one_sided_tests
from gprec.inspection.runs import run_data
from gprec.training.load import load_run

ROOT = Path(__file__).resolve().parents[1]
SYNTH = ROOT / "configs" / "synthetic" / "mlp.yaml"
ML100K = ROOT / "configs" / "ml-100k" / "mlp.yaml"
TINY = [
    "--set", "data.synthetic={n_users: 120, n_items: 50, n_interactions: 3000, n_groups: 3, seed: 1}",
    "--set", "train.max_epochs=2", "--set", "train.progress=false", "--set", "train.batch_size=256",
]  # fmt: skip


def _train(root: Path, name: str, *args: str) -> Path:
    out = root / name
    assert (
        main(["train", *args, "--set", f"data.cache_dir={root / 'cache'}", "--out", str(out)]) == 0
    )
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("slices")
    data = write_ml100k(root / "ml-100k", n_items=200, n_ratings=3000)
    ml = ["-c", str(ML100K), "--set", f"data.path={data}", "--set", "train.progress=false",
          "--set", "train.max_epochs=2", "--set", "train.batch_size=256"]  # fmt: skip
    return {
        "binary": _train(root, "binary", "-c", str(SYNTH), *TINY),
        "regression": _train(
            root, "regression", *ml, "--set", "train.task=regression", "--set", "data.target=value"
        ),
        "implicit": _train(
            root,
            "implicit",
            *ml,
            "--set",
            "train.task=implicit",
            "--set",
            "train.eval_negatives=10",
        ),
    }


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gprec: error: "), err
    return err[0]


# -- buckets by hand ---------------------------------------------------------------------------


def test_buckets_are_inclusive_upper_edges():
    edges = (20, 50, 150)
    counts = np.array([0, 1, 20, 21, 50, 51, 150, 151, 10_000])
    assert sl.assign_buckets(counts, edges).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert sl.bucket_labels(edges) == ["0-20", "21-50", "51-150", "151+"]
    assert sl.bucket_ranges(edges) == [(0, 20), (21, 50), (51, 150), (151, None)]
    # an edge 0 gives the unseen rows their own bucket; a bucket of one count is that count
    assert sl.bucket_labels((0, 1, 5)) == ["0", "1", "2-5", "6+"]
    assert sl.assign_buckets(np.array([0, 1, 2, 6]), (0, 1, 5)).tolist() == [0, 1, 2, 3]


def test_bucket_table_by_hand_unseen_rows_in_the_lowest_bucket():
    # training: value 1 three times, value 2 once, value 3 six times; value 4 is known (a
    # catalogue item) but never trained on; index 0 is the value unseen in training
    train = np.array([1, 1, 1, 2, 3, 3, 3, 3, 3, 3, 0])  # a stray 0 must not count
    counts = sl.training_counts(train, cardinality=5)
    assert counts.tolist() == [0, 3, 1, 6, 0]
    values = np.array([1, 2, 3, 0, 0, 4, 3, 1])
    y = np.array([1, 0, 1, 0, 1, 1, 0, 0], dtype=float)
    pred = np.array([0.9, 0.2, 0.7, 0.1, 0.6, 0.8, 0.3, 0.4])

    def measure(mask):
        return {"n": int(mask.sum()), "ysum": float(y[mask].sum()), "p": float(pred[mask].sum())}

    table = sl.bucket_table(values, counts, (1, 3), measure, "user")
    # counts per row: [3, 1, 6, 0, 0, 0, 6, 3] -> buckets (<=1, 2-3, 4+): [1, 0, 2, 0, 0, 0, 2, 1]
    assert [b["bucket"] for b in table] == ["0-1", "2-3", "4+"]
    assert [b["rows"] for b in table] == [4, 2, 2]
    assert [b["unseen_rows"] for b in table] == [3, 0, 0]  # two unseen users and value 4
    assert [b["users"] for b in table] == [2, 1, 1]  # values {2, 4}, {1}, {3}; index 0 is none
    assert [b["ysum"] for b in table] == [2.0, 1.0, 1.0]
    assert table[0]["p"] == pytest.approx(0.2 + 0.1 + 0.6 + 0.8)
    assert sum(b["rows"] for b in table) == len(values)


def test_the_user_and_item_fields_are_found_by_name_then_role():
    f = EncodedField
    fields = [f("movie", Role.ITEM, 5), f("item_id", Role.ITEM, 9), f("age", Role.USER, 3),
              f("uid", Role.PERSONAL, 7), f("user_id", Role.PERSONAL, 8)]  # fmt: skip
    assert sl.slice_column(fields, "user") == 4 and sl.slice_column(fields, "item") == 1
    fields = [f("movie", Role.ITEM, 5), f("uid", Role.PERSONAL, 7), f("x", Role.CONTEXT, 2)]
    assert sl.slice_column(fields, "user") == 1 and sl.slice_column(fields, "item") == 0
    with pytest.raises(ConfigError, match="user_activity needs the user's id"):
        sl.slice_column([f("movie", Role.ITEM, 5), f("age", Role.USER, 3)], "user")
    with pytest.raises(ConfigError, match="item_popularity needs the item's id"):
        sl.slice_column([f("uid", Role.PERSONAL, 5)], "item")
    with pytest.raises(ConfigError, match="'user_id' is an item field"):
        sl.slice_column([f("user_id", Role.ITEM, 5)], "user")


def test_settings_parse_and_refuse():
    assert sl.parse_edges("20, 50,150", "--user-buckets") == (20, 50, 150)
    assert sl.slice_settings("item_popularity", None, "5,10") == {"item_popularity": (5, 10)}
    assert sl.slice_settings(None, None, None) == {}
    assert sl.slice_settings("user_activity,item_popularity", None, None) == sl.DEFAULT_EDGES
    for text, message in [
        ("20,10", "edges must increase (20 then 10)"),
        ("20,20", "edges must increase (20 then 20)"),
        ("2.5,10", "'2.5' is not a whole number"),
        ("-1,10", "'-1' is not a whole number"),
        ("a", "'a' is not a whole number"),
        ("", "is empty"),
        ("20,,50", "'' is not a whole number"),
    ]:
        with pytest.raises(
            ConfigError, match=f"^--user-buckets.*{__import__('re').escape(message)}"
        ):
            sl.parse_edges(text, "--user-buckets")
    with pytest.raises(ConfigError, match="--slices: 'users' is not a slice"):
        sl.parse_slices("users")
    with pytest.raises(ConfigError, match="--slices lists user_activity more than once"):
        sl.parse_slices("user_activity,user_activity")
    with pytest.raises(ConfigError, match="--item-buckets sets the buckets of the item_pop"):
        sl.slice_settings("user_activity", None, "5,10")


def test_the_clis_defaults_are_the_librarys():
    assert evaluate_cli.DEFAULT_USER_BUCKETS == ",".join(
        map(str, sl.DEFAULT_EDGES["user_activity"])
    )
    assert evaluate_cli.DEFAULT_ITEM_BUCKETS == ",".join(
        map(str, sl.DEFAULT_EDGES["item_popularity"])
    )
    assert evaluate_cli.SLICE_NAMES.split(",") == list(sl.SLICES)


# -- a run, sliced --------------------------------------------------------------------------


def test_per_slice_metrics_are_sklearns_on_the_slices_rows(runs):
    run = load_run(runs["binary"])
    data = run_data(run)
    edges = {"user_activity": (25, 30), "item_popularity": (40, 60, 80)}
    result = sl.slice_run(run, edges, data)
    X, y = data.X["test"], data.y["test"]
    pred = run.predict(X)
    checked = 0
    for name, col in (("user_activity", 3), ("item_popularity", 0)):  # user_id, item_id
        s = result["slices"][name]
        assert run.fields[col].name == s["field"]
        # counts by hand: a Python tally of the training rows' ids
        tally = Counter(int(v) for v in data.X["train"][:, col])
        lo = 0
        for b, hi in zip(s["buckets"], [*edges[name], math.inf], strict=True):
            rows = [i for i, v in enumerate(X[:, col]) if lo <= tally.get(int(v), 0) <= hi]
            assert b["rows"] == len(rows)
            assert b[s["entity"] + "s"] == len({int(X[i, col]) for i in rows})
            if len(set(y[rows])) == 2:
                assert b["auc"] == pytest.approx(roc_auc_score(y[rows], pred[rows]), abs=1e-12)
                p = np.clip(pred[rows].astype(np.float64), 1e-7, 1 - 1e-7)
                assert b["logloss"] == pytest.approx(log_loss(y[rows], p, labels=[0, 1]), abs=1e-12)
                checked += 1
            lo = hi + 1
        assert sum(b["rows"] for b in s["buckets"]) == len(y) == result["rows"]
    assert checked >= 5  # of the 7 buckets, the non-empty ones with both labels


@pytest.mark.parametrize("task", ["binary", "regression", "implicit"])
def test_overall_metrics_are_the_runs_metrics_json(runs, task):
    run = load_run(runs[task])
    result = sl.slice_run(run)
    recorded = json.loads((runs[task] / "metrics.json").read_text())["test"]
    assert result["overall"] == pytest.approx(recorded, abs=1e-9) and sl.matches_recorded(result)
    assert result["metrics"] == list(recorded)
    for s in result["slices"].values():
        assert sum(b["rows"] for b in s["buckets"]) == result["rows"]
        assert set(recorded) <= set(s["buckets"][0])
    if task == "implicit":  # the rows are the held-out positives
        data = run_data(run)
        assert result["rows"] == int((data.y["test"] == 1).sum())


def test_implicit_slices_average_the_runs_own_ranks(runs):
    """A bucket's HR/NDCG are the run's ranking metrics over that bucket's positives."""
    from gprec.training.tasks import ranking_summary
    from gprec.training.trainer import as_tensors

    run = load_run(runs["implicit"])
    data = run_data(run)
    result = sl.slice_run(run, {"user_activity": (10,)}, data)
    tr, va, te = (as_tensors(data.X[s], data.y[s]) for s in ("train", "valid", "test"))
    ranks = run.task.fit(*tr, run.fields, (va[0], te[0])).ranks(lambda r: run.predict(r), *te)
    pos = data.X["test"][data.y["test"] == 1]
    col = sl.slice_column(run.fields, "user")
    counts = np.bincount(data.X["train"][:, col], minlength=run.fields[col].cardinality)
    light = counts[pos[:, col]] <= 10
    buckets = result["slices"]["user_activity"]["buckets"]
    assert buckets[0]["rows"] == int(light.sum()) and buckets[1]["rows"] == int((~light).sum())
    assert buckets[1]["ndcg@10"] == pytest.approx(ranking_summary(ranks[~light])["ndcg@10"])


# -- gprec evaluate ------------------------------------------------------------------------------


def test_evaluate_writes_its_tables_beside_the_run(runs, capsys, tmp_path):
    run_dir = runs["binary"]
    before = sorted(p.name for p in run_dir.iterdir())
    assert main(["evaluate", str(run_dir), "--user-buckets", "25,30"]) == 0
    out = capsys.readouterr().out
    where = run_dir.with_name(f"{run_dir.name}-slices")
    for f in ("slices.md", "slices.csv", "slices.json"):
        assert (where / f).is_file() and f"wrote {where / f}" in out
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written into the run
    recorded = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert f"AUC {recorded['auc']:.4f}, LogLoss {recorded['logloss']:.4f}" in out
    assert "equal to the run's metrics.json" in out
    assert "| 0-25 |" in out and "| 31+ |" in out and "| 0-20 |" in out  # default item edges
    js = json.loads((where / "slices.json").read_text())
    assert js["slices"]["user_activity"]["edges"] == [25, 30]
    assert list(js["slices"]) == ["user_activity", "item_popularity"]
    assert (where / "slices.md").read_text() in out
    csv = (where / "slices.csv").read_text().splitlines()
    assert csv[0] == "slice,field,bucket,low,high,rows,users,items,unseen_rows,auc,logloss"
    assert csv[1].startswith("all,,all,,,") and csv[2].startswith(
        "user_activity,user_id,0-25,0,25,"
    )
    assert len(csv) == 1 + 1 + 3 + 4
    # one slice, another folder
    assert (
        main(["evaluate", str(run_dir), "--slices", "item_popularity", "-o", str(tmp_path / "o")])
        == 0
    )
    js = json.loads((tmp_path / "o" / "slices.json").read_text())
    assert list(js["slices"]) == ["item_popularity"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--slices", "user_activty"], "--slices: 'user_activty' is not a slice; choose from"),
        (["--user-buckets", "50,20"], "--user-buckets '50,20': edges must increase (50 then 20)"),
        (["--item-buckets", "10,2.5"], "--item-buckets '10,2.5': '2.5' is not a whole number"),
        (["--slices", "user_activity", "--item-buckets", "5"], "--item-buckets sets the buckets"),
        (["--out", "{run}"], "is inside the run directory"),
        (["--out", "{run}/sub"], "is inside the run directory"),
    ],
)
def test_evaluate_errors_are_one_line(runs, capsys, extra, message):
    run_dir = runs["binary"]
    extra = [e.replace("{run}", str(run_dir)) for e in extra]
    line = one_line_error(capsys, ["evaluate", str(run_dir), *extra])
    assert message in line
    assert not (run_dir / "sub").exists()


def test_evaluate_refuses_what_is_not_a_finished_run(tmp_path, capsys):
    line = one_line_error(capsys, ["evaluate", str(tmp_path / "nope")])
    assert "no such run directory" in line


# -- gprec compare --slices ------------------------------------------------------------------


def test_compare_slices_tests_each_model_against_the_reference_per_bucket(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "-c", str(SYNTH), *TINY, "--set", f"data.cache_dir={tmp_path / 'cache'}",
            "--set", "train.max_epochs=1", "-m", "mlp,mlp[dropout=0.3]", "-s", "3", "-o", str(out),
            "--slices", "user_activity,item_popularity", "--user-buckets", "25,30"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    for f in ("slices.md", "slices.csv", "slices.json"):
        assert (out / f).is_file()
    assert (out / "slices.md").read_text() in printed
    summary = json.loads((out / "slices.json").read_text())
    assert summary["reference"] == "mlp" and summary["seeds"] == [2024, 2025, 2026]
    comparison = json.loads((out / "comparison.json").read_text())
    for name, edges in (("user_activity", [25, 30]), ("item_popularity", [20, 100, 500])):
        s = summary["slices"][name]
        assert s["edges"] == edges
        assert [b["bucket"] for b in s["buckets"]] == ["all", *sl.bucket_labels(edges)]
        # `all` is the comparison's own numbers
        overall = {r["label"]: r["auc_mean"] for r in s["buckets"][0]["models"]}
        assert overall == pytest.approx({m["model"]: m["auc_mean"] for m in comparison["models"]})
        for k, b in enumerate(s["buckets"][1:]):
            ref, other = b["models"]
            assert ref["label"] == "mlp" and other["label"] == "mlp[dropout=0.3]"
            per_seed = {
                label: {
                    int(seed): r["slices"][name]["buckets"][k]
                    for seed, r in summary["runs"][label].items()
                }
                for label in ("mlp", "mlp[dropout=0.3]")
            }
            for m, better in (("auc", True), ("logloss", False)):
                a = {s_: v[m] for s_, v in per_seed["mlp[dropout=0.3]"].items()}
                r = {s_: v[m] for s_, v in per_seed["mlp"].items()}
                t = one_sided_tests(m, "mlp[dropout=0.3]", "mlp", a, r, better)
                for got, want in (
                    (other[f"{m}_paired_p"], t.paired_p),
                    (other[f"{m}_welch_p"], t.welch_p),
                ):
                    assert got == pytest.approx(want, nan_ok=True)
                assert ref[f"{m}_mean"] == pytest.approx(np.mean(list(r.values())), nan_ok=True)
            rows = [v["rows"] for v in per_seed["mlp"].values()]
            assert b["rows_mean"] == pytest.approx(np.mean(rows))
        # per seed, the buckets share out the test rows
        for by_seed in summary["runs"].values():
            for r in by_seed.values():
                assert sum(b["rows"] for b in r["slices"][name]["buckets"]) == r["rows"]
    csv = (out / "slices.csv").read_text().splitlines()
    assert csv[0].startswith("slice,bucket,low,high,rows_mean,reference,label")
    assert len(csv) == 1 + 2 * (1 + 3) + 2 * (1 + 4)
    # again with a baseline: nothing retrained, the baseline is the reference; --slices off
    # leaves the slices files where they are (the directory stays a comparison's)
    assert main([*args, "-b", "mlp[dropout=0.3]"]) == 0
    assert json.loads((out / "slices.json").read_text())["reference"] == "mlp[dropout=0.3]"
    assert capsys.readouterr().err.count("finished before") == 6
    assert main(args[: args.index("--slices")]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--slices", "items"], "--slices: 'items' is not a slice; choose from"),
        (["--slices", "user_activity", "--user-buckets", "5,5"], "edges must increase (5 then 5)"),
        (["--slices", "user_activity", "--user-buckets", "x"], "--user-buckets 'x': 'x' is not"),
        (["--user-buckets", "5,10"], "--user-buckets sets the buckets of the user_activity"),
    ],
)
def test_compare_slices_errors_are_one_line_before_any_run(tmp_path, capsys, extra, message):
    out = tmp_path / "cmp"
    argv = ["compare", *TINY, "-m", "mlp", "-s", "1", "-o", str(out), *extra]
    assert message in one_line_error(capsys, argv)
    assert not out.exists()


def test_compare_slices_refuses_data_without_the_field_before_any_run(tmp_path, capsys):
    data = tmp_path / "d"
    data.mkdir()
    (data / "interactions.csv").write_text(
        "movie,label\n" + "".join(f"{i},{1 + 4 * (i % 2)}\n" for i in range(200))
    )
    (data / "schema.yaml").write_text(
        "interactions: interactions.csv\ntarget: label\nfields:\n  movie: item\n"
    )
    out = tmp_path / "cmp"
    argv = ["compare", "--set", "data.source=generic", "--set", f"data.path={data / 'schema.yaml'}",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "-m", "mlp", "-s", "1", "-o", str(out),
            "--slices", "user_activity"]  # fmt: skip
    line = one_line_error(capsys, argv)
    assert "user_activity needs the user's id" in line, line
    assert not (out / "mlp").exists()
