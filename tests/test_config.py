import pytest

from gprec.config import apply_overrides, load_config, parse_config
from gprec.errors import ConfigError


def test_defaults_resolve_model_options():
    cfg = parse_config({})
    assert cfg.model["name"] == "mlp"
    assert cfg.model["head_units"] == [64, 32, 16]
    assert cfg.train.lr == 0.002 and cfg.train.batch_size == 4096


def test_overrides_parse_yaml_values():
    raw = apply_overrides(
        {}, ["train.lr=0.01", "model.head_units=[8, 4]", "data.label_threshold=null"]
    )
    cfg = parse_config(raw)
    assert cfg.train.lr == 0.01
    assert cfg.model["head_units"] == [8, 4]
    assert cfg.data.label_threshold is None


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.lrr=0.1", "train.lrr: unknown key"),
        ("data.sourc=ml-1m", "data.sourc: unknown key"),
        ("model.dropuot=0.1", "model.dropuot: unknown key"),
        ("model.name=mpl", "unknown model 'mpl' (did you mean 'mlp'?)"),
        ("data.source=ml-10m", "data.source"),
        ("train.lr=-1", "train.lr"),
        ("data.split_ratios=[0.5, 0.1, 0.1]", "split_ratios"),
        ("nonsense.key=1", "nonsense: unknown key"),
    ],
)
def test_bad_keys_and_values_are_named(override, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        parse_config(apply_overrides({}, [override]))
    assert fragment in str(err.value)


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["train.lr"])


def test_missing_and_invalid_config_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_data_path_resolves_under_gprec_data(monkeypatch, tmp_path):
    cfg = parse_config({"data": {"source": "ml-100k", "path": "ml-100k"}})
    monkeypatch.setenv("GPREC_DATA", str(tmp_path))
    assert cfg.data.resolved_path() == tmp_path / "ml-100k"
    monkeypatch.delenv("GPREC_DATA")
    assert str(cfg.data.resolved_path()) == "ml-100k"


def test_builtin_default_equals_the_shipped_synthetic_config():
    from pathlib import Path

    shipped = Path(__file__).parents[1] / "configs" / "synthetic" / "mlp.yaml"
    assert load_config(None) == load_config(shipped)
