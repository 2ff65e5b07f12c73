"""The grid runner compare, ablation and sweep share (experiments/grid.py): every run checked
before the first, finished runs reused, an interrupted one trained again; and the paired tests
against a reference point, against hand computations."""

import math

import numpy as np
import pytest
from scipy import stats

import gprec.experiments.grid as grid_module
from gprec.config import BUILTIN_DEFAULT, apply_overrides
from gprec.errors import ConfigError
from gprec.experiments.grid import (
    GridPoint,
    against_reference,
    check_experiment_dir,
    prepare_grid,
    run_grid,
    run_records,
    with_settings,
    write_tables,
)

TINY = "{n_users: 150, n_items: 60, n_interactions: 4000, n_groups: 4, seed: 1}"
REPORT = ("report.md",)


def tiny_raw(tmp_path, epochs=1):
    return apply_overrides(
        BUILTIN_DEFAULT,
        [
            f"data.synthetic={TINY}",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"train.max_epochs={epochs}",
            "train.progress=false",
        ],
    )


def points(tmp_path, epochs=1):
    raw = tiny_raw(tmp_path, epochs)
    return [
        GridPoint("mlp", raw, "model mlp"),
        GridPoint("mlp[dropout=0.2]", with_settings(raw, {"model.dropout": 0.2}), "model x"),
    ]


@pytest.fixture
def counted(monkeypatch):
    """Counts the runs the grid trains (each call of run_training)."""
    calls = []
    real = grid_module.run_training

    def run_training(cfg, run_dir, log=None, overwrite=False):
        calls.append(run_dir)
        return real(cfg, run_dir, log, overwrite)

    monkeypatch.setattr(grid_module, "run_training", run_training)
    return calls


def test_grid_runs_every_point_and_seed_then_reuses_them(tmp_path, counted):
    out = tmp_path / "exp"
    log = []
    grid = prepare_grid(points(tmp_path), [1, 2], out, REPORT, "test")
    assert not out.exists()  # checking writes nothing
    results = run_grid(grid, log.append)
    assert len(counted) == 4 and set(results) == {"mlp", "mlp[dropout=0.2]"}
    assert (out / "mlp_dropout=0.2" / "seed-2" / "metrics.json").is_file()
    assert "[run 1/4: mlp seed 1] training" in log
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    # Again: nothing is trained, the metrics are read back unchanged.
    again = run_grid(prepare_grid(points(tmp_path), [1, 2], out, REPORT, "test"), log.append)
    assert len(counted) == 4 and again == results
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == mtimes
    assert sum("finished before" in line for line in log) == 4
    # An interrupted run (no metrics) is trained again, and only that one.
    (out / "mlp" / "seed-2" / "metrics.json").unlink()
    run_grid(prepare_grid(points(tmp_path), [1, 2], out, REPORT, "test"), log.append)
    assert counted[4:] == [out / "mlp" / "seed-2"]
    # Records keep what the reports need.
    records = run_records(results, "binary")
    assert set(records["mlp"]) == {"1", "2"}
    assert set(records["mlp"]["1"]) >= {"test", "valid_auc", "epochs_run", "seconds_per_epoch"}


def test_a_changed_config_is_refused_before_any_run(tmp_path, counted):
    out = tmp_path / "exp"
    run_grid(prepare_grid(points(tmp_path)[:1], [1], out, REPORT, "test"), print)
    with pytest.raises(ConfigError, match="different config"):
        prepare_grid(points(tmp_path, epochs=2), [1], out, REPORT, "test")
    assert len(counted) == 1


def test_points_are_checked_before_any_run(tmp_path, counted):
    bad = with_settings(tiny_raw(tmp_path), {"model.dropout": 2.0})
    good = points(tmp_path)[:1]
    with pytest.raises(ConfigError, match="--values x=2: model.dropout"):
        prepare_grid([*good, GridPoint("x", bad, "--values x=2")], [1], tmp_path / "e", REPORT, "t")
    with pytest.raises(ConfigError, match="lists a model twice"):
        prepare_grid([*good, *good], [1], tmp_path / "e", REPORT, "t")
    assert counted == [] and not (tmp_path / "e").exists()


def test_experiment_dir_holds_only_runs_and_its_report(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "report.md").write_text("old report")
    check_experiment_dir(out, REPORT, "sweep")  # its own report is fine
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a gprec sweep's \\(notes.txt\\)"):
        check_experiment_dir(out, REPORT, "sweep")


def test_with_settings_sets_typed_values_and_leaves_the_input_alone():
    raw = {"model": {"name": "gprec", "backbone": {"name": "mlp"}}}
    out = with_settings(raw, {"model.tau": 0.1, "model.backbone.dropout": 0.5, "train.lr": 1})
    assert out["model"]["tau"] == 0.1 and out["model"]["backbone"]["dropout"] == 0.5
    assert out["train"] == {"lr": 1} and raw == {
        "model": {"name": "gprec", "backbone": {"name": "mlp"}}
    }
    with pytest.raises(ConfigError, match="'name' is not a section"):
        with_settings(raw, {"model.name.x": 1})


def runs_of(table):
    """`{label: [auc per seed]}` as per-run records (logloss = 1 - auc)."""
    return {
        label: {str(s): {"test": {"auc": v, "logloss": 1 - v}} for s, v in enumerate(values)}
        for label, values in table.items()
    }


def test_against_reference_matches_hand_computations():
    full, a, b = [0.80, 0.82, 0.81, 0.83], [0.79, 0.80, 0.80, 0.82], [0.81, 0.82, 0.80, 0.84]
    rows = against_reference(
        runs_of({"full": full, "a": a, "b": b}), "full", {"auc": True, "logloss": False}
    )
    assert [r["label"] for r in rows] == ["full", "a", "b"]
    assert rows[0]["auc_mean"] == pytest.approx(np.mean(full))
    assert rows[0]["auc_std"] == pytest.approx(np.std(full, ddof=1))
    assert "auc_diff_mean" not in rows[0]
    diff = np.array(a) - np.array(full)
    row = rows[1]
    assert row["auc_diff_mean"] == pytest.approx(diff.mean())
    assert row["auc_diff_std"] == pytest.approx(diff.std(ddof=1))
    # one-sided: the reference (full) is better; for LogLoss better is lower
    paired = stats.ttest_rel(full, a, alternative="greater").pvalue
    welch = stats.ttest_ind(full, a, equal_var=False, alternative="greater").pvalue
    assert row["auc_paired_p"] == pytest.approx(paired)
    assert row["auc_welch_p"] == pytest.approx(welch)
    loss = stats.ttest_rel(1 - np.array(full), 1 - np.array(a), alternative="less").pvalue
    assert row["logloss_paired_p"] == pytest.approx(loss)
    assert row["logloss_diff_mean"] == pytest.approx(-diff.mean())
    # Holm over the two variants
    p_a, p_b = row["auc_paired_p"], rows[2]["auc_paired_p"]
    low, high = sorted([p_a, p_b])
    holm = {low: min(1, 2 * low), high: max(min(1, 2 * low), min(1, high))}
    assert row["auc_holm_paired_p"] == pytest.approx(holm[p_a])
    assert rows[2]["auc_holm_paired_p"] == pytest.approx(holm[p_b])


def test_against_reference_can_ask_whether_the_point_is_better():
    ref, point = [0.80, 0.81, 0.79], [0.82, 0.82, 0.80]
    (_, row) = against_reference(
        runs_of({"backbone": ref, "g=3": point}), "backbone", {"auc": True}, reference_better=False
    )
    assert row["auc_paired_p"] == pytest.approx(
        stats.ttest_rel(point, ref, alternative="greater").pvalue
    )
    assert row["auc_diff_mean"] == pytest.approx(np.mean(np.subtract(point, ref)))
    # without a reference: means and stds only
    rows = against_reference(runs_of({"x": ref, "y": point}), None, {"auc": True})
    assert [r["label"] for r in rows] == ["x", "y"] and "auc_paired_p" not in rows[1]


def test_one_seed_gives_no_p_values_not_an_error():
    rows = against_reference(runs_of({"full": [0.8], "a": [0.7]}), "full", {"auc": True})
    assert math.isnan(rows[1]["auc_paired_p"]) and rows[1]["auc_std"] == 0.0


def test_write_tables_writes_markdown_csv_and_json(tmp_path):
    rows = [{"label": "a", "auc_mean": 0.5}, {"label": "b", "auc_mean": 0.6, "auc_paired_p": 0.1}]
    write_tables(tmp_path, "t", "# table\n", rows, {"rows": rows})
    assert (tmp_path / "t.md").read_text() == "# table\n"
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines == ["label,auc_mean,auc_paired_p", "a,0.5,", "b,0.6,0.1"]
    assert '"label": "b"' in (tmp_path / "t.json").read_text()


def test_compare_keeps_its_helper_names():
    """compare's helpers moved to grid.py; the names benchmarks/ import still resolve."""
    from gprec.experiments import compare

    for name in ("parse_seeds", "safe_dirname", "split_top_level", "parse_model_spec"):
        assert callable(getattr(compare, name))
    assert compare.safe_dirname("mlp[dropout=0.2]") == "mlp_dropout=0.2"
