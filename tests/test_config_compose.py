"""Configs are composed, not copied: `base:` in a file, and `-c` repeated on the command line."""

from pathlib import Path

import pytest
import yaml

from gprec.cli.main import main
from gprec.config import dump_config, load_config, merge_sections, read_config
from gprec.models.registry import resolve_model_options

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_merge_replaces_the_model_only_when_it_names_another():
    base = {"model": {"name": "mlp", "dropout": 0.1}, "train": {"lr": 0.1, "seed": 1}}
    assert merge_sections(base, {"model": {"dropout": 0.2}})["model"] == {
        "name": "mlp",
        "dropout": 0.2,
    }
    assert merge_sections(base, {"model": {"name": "gprec"}})["model"] == {"name": "gprec"}
    assert merge_sections(base, {"train": {"lr": 0.5}})["train"] == {"lr": 0.5, "seed": 1}
    assert base["train"]["lr"] == 0.1  # inputs untouched


def test_base_is_relative_to_the_file_and_chains(tmp_path):
    write(tmp_path / "a" / "root.yaml", "train: {lr: 0.1, seed: 3}\nmodel: {name: mlp}\n")
    write(tmp_path / "a" / "mid.yaml", "base: root.yaml\ntrain: {lr: 0.2}\n")
    top = write(tmp_path / "b" / "top.yaml", "base: ../a/mid.yaml\nmodel: {dropout: 0.3}\n")
    raw = read_config(top)
    assert raw == {"train": {"lr": 0.2, "seed": 3}, "model": {"name": "mlp", "dropout": 0.3}}
    cfg = load_config(top)
    assert cfg.train.lr == 0.2 and cfg.model["dropout"] == 0.3


@pytest.mark.parametrize(
    "files, message",
    [
        ({"x.yaml": "base: x.yaml\n"}, "x.yaml: base x.yaml includes x.yaml again (a cycle)"),
        ({"x.yaml": "base: y.yaml\n", "y.yaml": "base: x.yaml\n"}, "(a cycle)"),
        ({"x.yaml": "base: nope.yaml\n"}, "x.yaml: base nope.yaml: config file not found"),
        ({"x.yaml": "base: {a: 1}\n"}, "base must be a config file path or a list of them"),
    ],
)
def test_base_errors_are_one_line(tmp_path, capsys, files, message):
    for name, text in files.items():
        write(tmp_path / name, text)
    assert main(["train", "-c", str(tmp_path / "x.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "run").exists()


def test_repeated_config_lays_later_files_over_earlier(tmp_path):
    model = write(tmp_path / "m.yaml", "model: {name: mlp, dropout: 0.25}\ntrain: {lr: 0.01}\n")
    cfg = load_config([ROOT / "configs" / "ml-100k" / "mlp.yaml", model], ["train.seed=9"])
    assert cfg.data.source == "ml-100k" and cfg.model["dropout"] == 0.25
    assert cfg.train.lr == 0.01 and cfg.train.seed == 9 and cfg.train.batch_size == 4096


def test_repeated_config_errors_name_every_file(tmp_path, capsys):
    a = write(tmp_path / "a.yaml", "train: {lr: 0.1}\n")
    b = write(tmp_path / "b.yaml", "train: {lrr: 0.1}\n")
    assert main(["train", "-c", str(a), "-c", str(b), "--out", str(tmp_path / "run")]) == 2
    assert f"{a} + {b}: train.lrr: unknown key" in capsys.readouterr().err


def test_shipped_gprec_configs_are_overlays_that_resolve_to_the_paper_settings():
    for ds in ("ml-100k", "ml-1m"):
        d = ROOT / "configs" / ds
        for strategy in ("input", "dynamic", "ensemble"):
            raw = yaml.safe_load((d / f"gprec-{strategy}.yaml").read_text())
            assert "base" in raw and "data" not in raw and "train" not in raw  # nothing copied
            cfg = load_config(d / f"gprec-{strategy}.yaml")
            assert cfg.model["strategy"] == strategy and cfg.model["n_groups"] == 60
            assert cfg.data.source == ds and cfg.train.batch_size == 4096
        mlp = load_config(d / "mlp.yaml")
        gprec = load_config(d / "gprec-input.yaml")
        assert dump_config(mlp).split("model:")[0] == dump_config(gprec).split("model:")[0]


def test_every_backbone_has_a_model_config_that_composes_with_each_dataset():
    from gprec.models.base import Backbone
    from gprec.models.registry import available_models, model_class

    for name in available_models(Backbone):
        overlay = ROOT / "configs" / "models" / f"{name}.yaml"
        assert overlay.is_file(), f"configs/models/{name}.yaml is missing"
        # the file states the model's defaults, as its comments say
        section = yaml.safe_load(overlay.read_text())["model"]
        assert resolve_model_options(section) == resolve_model_options({"name": name}), name
        for ds in ("ml-100k", "ml-1m"):
            d = ROOT / "configs" / ds
            assert load_config([d / "mlp.yaml", overlay]).model["name"] == name
            # switching by name on a dataset's config works with the model's defaults
            assert load_config(d / "mlp.yaml", [f"model.name={name}"]).model["name"] == name
            for strategy in model_class(name).gprec_strategies:
                cfg = load_config(d / f"gprec-{strategy}.yaml", [f"model.backbone.name={name}"])
                assert cfg.model["backbone"]["name"] == name
