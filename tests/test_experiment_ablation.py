"""`gprec experiment ablation`: GPRec-1..5 differ from the full model exactly as the paper's
Section IV-C says, on any GPRec config; the command writes its table and figure into one
experiment directory and resumes without retraining."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import gprec.experiments.grid as grid_module
from conftest import write_ml100k
from gprec.cli.main import main
from gprec.config import apply_overrides, merge_sections, parse_config, read_config, read_configs
from gprec.errors import ConfigError
from gprec.experiments.ablation import FULL, VARIANTS, ablation_points
from gprec.training.run_dir import config_differences

ROOT = Path(__file__).resolve().parents[1]
DYNAMIC = ROOT / "configs" / "ml-100k" / "gprec-dynamic.yaml"

# What each variant switches off (docs/gprec.md section 7; the paper's Section IV-C).
EXPECTED = {
    "GPRec-1": {"model.group_embedding: dual -> single"},
    "GPRec-2": {"model.individual: True -> False"},
    "GPRec-3": {"model.lambda_group: 1.0 -> 0.0"},
    "GPRec-4": {"model.lambda_contrastive: 0.001 -> 0.0"},
    "GPRec-5": {"model.lambda_orthogonal: 0.0001 -> 0.0"},
}


def validated(raw, source="test"):
    cfg = parse_config(raw, source)
    return {"model": cfg.model, "train": cfg.train.model_dump(), "data": cfg.data.model_dump()}


@pytest.mark.parametrize(
    "config, sets",
    [
        (DYNAMIC, []),
        (ROOT / "configs" / "ml-1m" / "gprec-input.yaml", []),
        (ROOT / "configs" / "ml-100k" / "gprec-ensemble.yaml", []),
        (DYNAMIC, ["model.backbone.name=deepfm"]),
    ],
)
def test_each_variant_differs_from_the_full_model_in_exactly_its_component(config, sets):
    base = apply_overrides(read_configs([config]), sets)
    points = ablation_points(base, str(config), sets)
    assert [p.label for p in points] == [FULL, *EXPECTED]
    full = validated(points[0].raw)
    assert full == validated(base)
    for point in points[1:]:
        diff = set(config_differences(full, validated(point.raw)))
        assert diff == EXPECTED[point.label], point.label


@pytest.mark.parametrize("variant", [v.label for v in VARIANTS])
def test_the_code_variants_equal_the_shipped_overlays(variant):
    """configs/ml-100k/ablations/*.yaml (overlays for gprec compare) say what the code says."""
    base = read_configs([DYNAMIC])
    overlay = read_config(ROOT / "configs" / "ml-100k" / "ablations" / f"{variant.lower()}.yaml")
    point = next(p for p in ablation_points(base, "x", []) if p.label == variant)
    assert validated(point.raw) == validated(merge_sections(base, overlay))


def test_a_variant_wins_over_the_command_lines_set():
    base = apply_overrides(read_configs([DYNAMIC]), ["model.lambda_group=0.5"])
    points = {p.label: p for p in ablation_points(base, "x", ["model.lambda_group=0.5"])}
    assert validated(points["GPRec-3"].raw)["model"]["lambda_group"] == 0.0
    assert validated(points[FULL].raw)["model"]["lambda_group"] == 0.5


def test_only_a_gprec_config_with_every_component_on_is_ablated():
    mlp = read_configs([ROOT / "configs" / "ml-100k" / "mlp.yaml"])
    with pytest.raises(ConfigError, match="model.name is mlp; the ablation takes a GPRec config"):
        ablation_points(mlp, "mlp.yaml", [])
    off = apply_overrides(read_configs([DYNAMIC]), ["model.lambda_orthogonal=0"])
    with pytest.raises(ConfigError, match="GPRec-5 .* equals the full model"):
        ablation_points(off, "x", [])


def ablation_args(tmp_path, out, seeds="2"):
    data = tmp_path / "ml-100k"
    if not data.exists():
        write_ml100k(data, n_ratings=1500)
    return [
        "experiment", "ablation", "-c", str(DYNAMIC),
        "--set", f"data.path={data}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", "data.duplicates=drop", "--set", "train.max_epochs=1",
        "--set", "train.progress=false", "--set", "model.n_groups=3",
        "--seeds", seeds, "--out", str(out),
    ]  # fmt: skip


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = grid_module.run_training

    def run_training(cfg, run_dir, log=None, overwrite=False):
        calls.append(run_dir)
        return real(cfg, run_dir, log, overwrite)

    monkeypatch.setattr(grid_module, "run_training", run_training)
    return calls


def test_ablation_writes_table_and_figure_and_resumes(tmp_path, capsys, counted):
    out = tmp_path / "abl"
    args = ablation_args(tmp_path, out)
    assert main(args) == 0
    captured = capsys.readouterr()
    labels = [FULL, *EXPECTED]
    assert len(counted) == 12 and "[run 12/12: GPRec-5 seed 2025]" in captured.err
    for label in labels:
        for seed in (2024, 2025):
            run = out / label / f"seed-{seed}"
            assert (run / "metrics.json").is_file()
            model = yaml.safe_load((run / "config.yaml").read_text())["model"]
            assert model["name"] == "gprec" and model["n_groups"] == 3
    assert "| GPRec-3 | the group loss L_G | 2 |" in captured.out  # the table is printed too
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "ablation.json").read_text())
    assert [r["label"] for r in summary["rows"]] == labels
    # Δ is the per-seed difference to the full model, as the runs' own metrics give it
    auc = {
        label: [json.loads((out / label / f"seed-{s}" / "metrics.json").read_text())["test"]["auc"]
                for s in (2024, 2025)]
        for label in labels
    }  # fmt: skip
    gprec2 = summary["rows"][2]
    assert gprec2["auc_diff_mean"] == pytest.approx(np.mean(np.subtract(auc["GPRec-2"], auc[FULL])))
    with open(out / "ablation.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == labels and rows[1][
        "settings"
    ] == "model.group_embedding=single"
    assert {"auc_paired_p", "auc_welch_p", "logloss_diff_mean"} <= set(rows[1])
    md = (out / "ablation.md").read_text()
    assert "| model | removes | seeds | AUC | Δ AUC | paired p | Holm p | Welch p | LogLoss" in md
    # Again: every run is reused, nothing retrained, the report rewritten.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    assert main(args) == 0
    assert len(counted) == 12 and capsys.readouterr().err.count("finished before") == 12
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == mtimes
    # A third seed trains only the six runs of that seed.
    assert main(ablation_args(tmp_path, out, seeds="2024,2025,2026")) == 0
    assert len(counted) == 18 and all(p.name == "seed-2026" for p in counted[12:])


def test_ablation_of_a_non_gprec_config_is_one_line(tmp_path, capsys):
    out = tmp_path / "abl"
    args = ablation_args(tmp_path, out)
    args[args.index(str(DYNAMIC))] = str(ROOT / "configs" / "ml-100k" / "mlp.yaml")
    at = args.index("model.n_groups=3")
    del args[at - 1 : at + 1]  # an MLP has no groups
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the ablation takes a GPRec config" in err[0]
    assert not out.exists()
