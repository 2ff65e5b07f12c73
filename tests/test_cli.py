import json
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import write_ml100k
from gprec.cli.main import main


def tiny(tmp_path, epochs=2):
    return [
        "--set", "data.synthetic={n_users: 150, n_items: 60, n_interactions: 4000, n_groups: 4, seed: 1}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", f"train.max_epochs={epochs}",
        "--set", "train.batch_size=512",
    ]  # fmt: skip


def test_train_writes_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path), "--out", str(out)]) == 0
    assert "test auc" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("auc", "logloss"):
        assert 0 <= metrics["test"][key] and key in metrics["valid"]
    assert metrics["train"]["seconds_per_epoch"] > 0 and metrics["train"]["samples_per_second"] > 0
    assert 1 <= metrics["epochs_run"] <= 2
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["model"]["head_units"] == [64, 32, 16] and resolved["train"]["max_epochs"] == 2
    assert (
        (out / "model.pt").is_file()
        and (out / "vocab.json").is_file()
        and (out / "log.jsonl").is_file()
    )


def test_config_file_and_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name: mlp, dropout: 0.1}\ntrain: {lr: 0.005}\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "-c",
                str(cfg),
                *tiny(tmp_path),
                "--set",
                "model.head_units=[16, 8]",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["model"]["dropout"] == 0.1 and resolved["model"]["head_units"] == [16, 8]
    assert resolved["train"]["lr"] == 0.005


def test_compare_writes_table_and_resumes(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = [
        "compare",
        *tiny(tmp_path),
        "--models",
        "mlp,mlp[dropout=0.3]",
        "--seeds",
        "2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| mlp |" in table and "| mlp[dropout=0.3] |" in table and "Welch p" in table
    summary = json.loads((out / "comparison.json").read_text())
    valid = sum(r["valid_auc"] for r in summary["runs"]["mlp"].values()) / 2
    assert f"| mlp | {valid:.4f} |" in table  # the validation AUC models are chosen by
    assert {m["model"] for m in summary["models"]} == {"mlp", "mlp[dropout=0.3]"}
    assert all(m["n"] == 2 for m in summary["models"])
    assert (out / "comparison.csv").read_text().startswith("model,")
    assert (out / "mlp_dropout=0.3_" / "seed-2025" / "metrics.json").is_file() or any(
        out.glob("mlp*dropout*/seed-2025")
    )
    # second call: nothing retrained
    assert main(args) == 0
    assert capsys.readouterr().err.count("finished before") == 4
    # a baseline adds the pre-specified test (chosen on validation), still retraining nothing
    assert main([*args, "--baseline", "mlp"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("finished before") == 4 and "Pre-specified test" in captured.out
    assert "All 4 runs, reused ones included, took" in captured.out
    pre = json.loads((out / "comparison.json").read_text())["prespecified"]
    assert pre["baseline"] == "mlp" and pre["candidate"] == "mlp[dropout=0.3]"
    assert {t["metric"] for t in pre["tests"]} == {"auc", "logloss"}


def test_compare_refuses_a_changed_config_in_the_same_directory(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *tiny(tmp_path, epochs=1), "-m", "mlp", "-s", "1", "-o", str(out)]) == 0
    assert main(["compare", *tiny(tmp_path, epochs=2), "-m", "mlp", "-s", "1", "-o", str(out)]) == 2
    assert "different config" in capsys.readouterr().err


def test_synth_then_train_on_the_generic_schema(tmp_path, capsys):
    data = tmp_path / "synth"
    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(data),
                "--users",
                "150",
                "--items",
                "50",
                "--interactions",
                "3000",
            ]
        )
        == 0
    )
    assert (data / "schema.yaml").is_file()
    out = tmp_path / "run"
    args = [
        "train",
        *tiny(tmp_path),
        "--set",
        "data.source=generic",
        "--set",
        f"data.path={data / 'schema.yaml'}",
    ]
    assert main([*args, "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["data"]["rows"]["train"] == 2400


def test_inspect_prints_fields_and_splits(tmp_path, capsys):
    write_ml100k(tmp_path / "ml-100k")
    args = ["data", "inspect", "--set", "data.source=ml-100k", "--set", f"data.path={tmp_path / 'ml-100k'}",
            "--set", f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "user_id" in text and "personal" in text and "train" in text
    assert main([*args, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["rows"] == 480
    assert [f["name"] for f in info["fields"]][:3] == ["item_id", "genres", "year"]


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    assert "mlp" in capsys.readouterr().out.split()


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--set", "model.name=nope"], "unknown model 'nope'"),
        (["train", "--set", "train.epochs=3"], "train.epochs: unknown key"),
        (["train", "--set", "data.source=ml-100k", "--set", "data.path=/no/such/dir"], "not found"),
        (["train", "--config", "/no/such.yaml"], "config file not found"),
        (["compare", "-m", "mlp", "--seeds", "x"], "--seeds"),
        (["compare", "-m", "mlp,mlp"], "lists a model twice"),
        (["compare", "-m", "mlp[dropuot=0.1]", "-s", "1"], "model.dropuot: unknown key"),
        (["compare", "-m", "mlp,mlp[dropout=0.1]", "-b", "fm"], "--baseline 'fm' is not one of"),
        (["compare", "-m", "mlp", "-b", "mlp"], "names every model"),
        (["data", "synth", "--out", "{tmp}"], "not empty"),
        (["train", "--set", "train.device=gpu"], "train.device"),
        pytest.param(
            ["train", "--set", "train.device=cuda"],
            "torch sees no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here"),
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    (tmp_path / "x").write_text("occupied")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gprec: error:") and message in err[-1]
    assert not any(line.startswith("gprec: error") for line in err[:-1]) and "Traceback" not in err


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gprec.cli.main", "train", "--set", "model.name=nope"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "unknown model" in proc.stderr


def test_compare_set_overrides_a_model_files_own_sections(tmp_path):
    """--set reaches every model, even one whose YAML sets the same key."""
    overlay = tmp_path / "model.yaml"
    overlay.write_text("model: {name: mlp}\ntrain: {max_epochs: 5, lr: 0.01}\n")
    out = tmp_path / "cmp"
    args = ["compare", *tiny(tmp_path, epochs=1), "-m", f"{overlay}", "-s", "1", "-o", str(out)]
    assert main(args) == 0
    run_config = next(out.glob("model/seed-*/config.yaml")).read_text()
    assert "max_epochs: 1" in run_config and "lr: 0.01" in run_config


def test_run_config_is_resolved_and_reruns_the_same(tmp_path, monkeypatch):
    """config.yaml names the data by absolute path ($GPREC_DATA applied) and writes the split
    seed, so training from it elsewhere reproduces the run."""
    write_ml100k(tmp_path / "data" / "ml-100k")
    monkeypatch.setenv("GPREC_DATA", str(tmp_path / "data"))
    base = [
        "--set", "data={source: ml-100k, path: ml-100k}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", "train.max_epochs=2", "--set", "train.seed=7", "--set", "train.progress=false",
    ]  # fmt: skip
    assert main(["train", *base, "--out", str(tmp_path / "a")]) == 0
    resolved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert resolved["data"]["path"] == str((tmp_path / "data" / "ml-100k").resolve())
    assert resolved["data"]["split_seed"] == 7
    monkeypatch.delenv("GPREC_DATA")
    monkeypatch.chdir(tmp_path / "a")
    assert main(["train", "-c", "config.yaml", "--out", str(tmp_path / "b")]) == 0
    first, again = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert again["test"] == first["test"]
