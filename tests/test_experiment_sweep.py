"""`gprec experiment sweep`: any config key over YAML values, the bare backbone on the same seeds
as the reference line, one clear error for a bad key or value before anything trains."""

import json
from pathlib import Path

import pytest
import yaml

import gprec.experiments.grid as grid_module
from conftest import write_ml100k
from gprec.cli.main import main
from gprec.config import apply_overrides, load_config, read_configs
from gprec.errors import ConfigError
from gprec.experiments.sweep import param_keys, parse_values, sweep_plan

ROOT = Path(__file__).resolve().parents[1]
DYNAMIC = ROOT / "configs" / "ml-100k" / "gprec-dynamic.yaml"
TINY = "{n_users: 150, n_items: 60, n_interactions: 4000, n_groups: 4, seed: 1}"


def sweep_args(tmp_path, out, param="model.n_groups", values="2,3", seeds="2"):
    data = tmp_path / "ml-100k"
    if not data.exists():
        write_ml100k(data, n_ratings=1500)
    return [
        "experiment", "sweep", "-c", str(DYNAMIC),
        "--set", f"data.path={data}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", "data.duplicates=drop", "--set", "train.max_epochs=1",
        "--set", "train.progress=false", "--set", "model.n_groups=3",
        "--param", param, "--values", values, "--seeds", seeds, "--out", str(out),
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


def test_sweep_writes_table_and_plot_with_the_bare_backbone_and_resumes(tmp_path, capsys, counted):
    out = tmp_path / "sweep"
    args = sweep_args(tmp_path, out)
    assert main(args) == 0
    captured = capsys.readouterr()
    assert len(counted) == 6 and "[run 6/6: mlp (backbone) seed 2025]" in captured.err
    assert "| 2 | 2 |" in captured.out and "| mlp (backbone) | 2 |" in captured.out
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["values"] == [2, 3] and summary["reference"] == "mlp (backbone)"
    assert [r["label"] for r in summary["rows"]] == [
        "mlp (backbone)", "model.n_groups=2", "model.n_groups=3",
    ]  # fmt: skip
    assert [r["value"] for r in summary["rows"]] == [None, 2, 3]
    # Each point is the config with the value; the reference is the config's backbone trained
    # bare (GPRec removed), with the same data, training settings and seeds.
    sets = [value for flag, value in zip(args, args[1:], strict=False) if flag == "--set"]
    gprec = load_config([DYNAMIC], sets)
    for seed in (2024, 2025):
        point = yaml.safe_load(
            (out / "model.n_groups=2" / f"seed-{seed}" / "config.yaml").read_text()
        )
        bare = yaml.safe_load((out / "mlp_backbone" / f"seed-{seed}" / "config.yaml").read_text())
        assert point["model"]["name"] == "gprec" and point["model"]["n_groups"] == 2
        assert bare["model"] == gprec.model["backbone"] and bare["model"]["name"] == "mlp"
        assert bare["data"] == point["data"] and bare["train"] == point["train"]
        assert bare["train"]["seed"] == seed
    md = (out / "sweep.md").read_text()
    assert "| model.n_groups | seeds | AUC | Δ AUC | paired p | Holm p | Welch p |" in md
    assert (out / "sweep.csv").read_text().startswith("label,value,n,auc_mean,auc_std")
    # Again, with one more value: only that value's runs train; the others (and the
    # backbone) are reused untouched.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    assert main(sweep_args(tmp_path, out, values="2,3,4")) == 0
    assert [p.parent.name for p in counted[6:]] == ["model.n_groups=4"] * 2
    assert capsys.readouterr().err.count("finished before") == 6
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())


@pytest.mark.parametrize(
    "param, values, message",
    [
        ("model.n_group", "3", "--param model.n_group: no such config key in model gprec; "
         "did you mean model.n_groups?"),
        ("modle.tau", "0.5", "--param modle.tau: no such config key in the config"),
        ("train.seed", "1", "--param train.seed: seeds are what --seeds gives"),
        ("model.tau.x", "1", "--param model.tau.x: model.tau is a value, not a section"),
        ("model.tau", "0.5,-1", "--param model.tau=-1: model.tau: Input should be greater than 0"),
        ("model.n_groups", "3,abc", "--param model.n_groups=abc: model.n_groups: Input should be"),
        ("model.n_groups", "3,3.0", "--values gives model.n_groups the same value twice (3 and 3.0)"),
        ("model.strategy", "input,nope", "--param model.strategy=nope: model.strategy: Input"),
        ("model.tau", ",", "--values ',': give values separated by commas"),
    ],
)  # fmt: skip
def test_a_bad_key_or_value_is_one_line_before_anything_trains(
    tmp_path, capsys, counted, param, values, message
):
    out = tmp_path / "sweep"
    assert main([*sweep_args(tmp_path, out, param=param), f"--values={values}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gprec: error: ") and message in err[0]
    assert counted == [] and not out.exists()


def test_values_are_yaml():
    parsed = [v for _, v in parse_values("3,0.5,true,[64,32],abc,null")]
    assert parsed == [3, 0.5, True, [64, 32], "abc", None]
    assert [type(v) for v in parsed[:3]] == [int, float, bool]
    with pytest.raises(ConfigError, match="cannot read"):
        parse_values("[1,")


def test_keys_of_a_wrapped_backbone():
    cfg = load_config([DYNAMIC])
    assert param_keys(cfg, "model.tau") == ["model.tau"]
    assert param_keys(cfg, "model.backbone.dropout") == ["model.backbone.dropout"]
    # a backbone option named at the top is the backbone's; a shared one is set at both levels
    assert param_keys(cfg, "model.head_units") == ["model.backbone.head_units"]
    assert param_keys(cfg, "model.embedding_dim") == [
        "model.embedding_dim",
        "model.backbone.embedding_dim",
    ]
    plan = sweep_plan(read_configs([DYNAMIC]), "x", [], "model.embedding_dim", "8,12.0")
    assert list(plan.values.values()) == [8, 12] and plan.reference == "mlp (backbone)"
    bare = plan.points[-1].raw["model"]
    assert bare == cfg.model["backbone"]  # the reference keeps the config's own embedding_dim


def test_sweep_of_a_model_without_a_backbone_has_no_reference(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = [
        "experiment", "sweep", "--set", f"data.synthetic={TINY}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.max_epochs=1",
        "--set", "train.progress=false", "--set", "train.batch_size=512",
        "--param", "model.dropout", "--values", "0.0,0.3", "--seeds", "1", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["reference"] is None and [r["value"] for r in summary["rows"]] == [0.0, 0.3]
    assert "no reference line" in (out / "sweep.md").read_text()
    assert (out / "sweep.png").is_file() and sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "model.dropout=0.0", "model.dropout=0.3",
    ]  # fmt: skip


def test_set_and_param_compose(tmp_path):
    """--set applies first, the swept value last: the sweep wins on its own key."""
    base = apply_overrides(read_configs([DYNAMIC]), ["model.tau=0.3"])
    plan = sweep_plan(base, "x", ["model.tau=0.3"], "model.tau", "0.1,1")
    assert list(plan.values.values()) == [0.1, 1.0]
    assert plan.points[0].raw["model"]["tau"] == 0.1


def test_without_matplotlib_nothing_trains(tmp_path, capsys, counted, monkeypatch):
    """The figure is drawn last: a missing matplotlib is said before the first run."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    out = tmp_path / "sweep"
    assert main(sweep_args(tmp_path, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'gprec[plots]'" in err[0]
    assert counted == [] and not out.exists()
