"""benchmarks/rescore.py: re-scoring a committed comparison changes its tests, never its data."""

import importlib.util
import json
from pathlib import Path

import pytest

from gprec.experiments.compare import summary_from_runs, write_report

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rescore.py"


@pytest.fixture(scope="module")
def rescore():
    spec = importlib.util.spec_from_file_location("rescore", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rescore


def _comparison(directory: Path, baselines=None) -> None:
    aucs = {
        "mlp": [0.78, 0.79, 0.785],
        "gprec": [0.781, 0.792, 0.786],
        "gprec-x": [0.70, 0.71, 0.7],
    }
    runs = {
        model: {
            str(seed): {
                "test": {"auc": auc, "logloss": 1 - auc},
                "valid_auc": auc + 0.001,
                "epochs_run": 10,
                "seconds_per_epoch": 1.0,
                "samples_per_second": 1000.0,
            }
            for seed, auc in zip([1, 2, 3], values, strict=True)
        }
        for model, values in aucs.items()
    }
    summary = summary_from_runs(runs, [1, 2, 3], baselines)
    summary["wall_seconds"] = 42.0
    write_report(summary, directory, "My title")
    with open(directory / "comparison.md", "a") as fh:
        fh.write("\nA hand-written note.\n")


def test_rescore_adds_the_prespecified_test_and_keeps_title_and_notes(tmp_path, rescore):
    _comparison(tmp_path)
    before = json.loads((tmp_path / "comparison.json").read_text())
    assert "prespecified" not in before
    rescore(tmp_path, ["mlp"])
    after = json.loads((tmp_path / "comparison.json").read_text())
    assert after["prespecified"]["candidate"] == "gprec"
    assert after["models"] == before["models"] and after["runs"] == before["runs"]
    md = (tmp_path / "comparison.md").read_text()
    assert md.startswith("## My title\n") and md.rstrip().endswith("A hand-written note.")
    assert "Pre-specified test" in md and "Wall time of this comparison: 42 s" in md
    # without baselines, the recorded ones are kept rather than the test dropped
    rescore(tmp_path)
    assert json.loads((tmp_path / "comparison.json").read_text())["prespecified"]["baselines"] == [
        "mlp"
    ]


def test_rescore_refuses_to_change_data_and_leaves_files_alone(tmp_path, rescore):
    _comparison(tmp_path, ["mlp"])
    old = json.loads((tmp_path / "comparison.json").read_text())
    old["models"][0]["auc_mean"] = 0.5  # the tables no longer match their runs
    (tmp_path / "comparison.json").write_text(json.dumps(old))
    md = (tmp_path / "comparison.md").read_text()
    with pytest.raises(ValueError, match="per-model results"):
        rescore(tmp_path)
    assert (tmp_path / "comparison.md").read_text() == md
    assert json.loads((tmp_path / "comparison.json").read_text()) == old


def test_rescore_needs_a_titled_markdown(tmp_path, rescore):
    _comparison(tmp_path)
    (tmp_path / "comparison.md").write_text("no title\n")
    with pytest.raises(ValueError, match="'## title'"):
        rescore(tmp_path)
