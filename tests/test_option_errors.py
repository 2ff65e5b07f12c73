"""Bad model options, unusable splits and unwritable --out paths: one-line errors, exit 2."""

import pytest

from gprec.cli.main import main
from gprec.layers.mlp import ACTIVATIONS
from gprec.models.registry import build_model, resolve_model_options

TINY = [
    "--set", "data.synthetic={n_users: 100, n_items: 30, n_interactions: 1000, n_groups: 4}",
    "--set", "train.max_epochs=1",
    "--set", "train.progress=false",
]  # fmt: skip


def run_error(capsys, args: list[str]) -> str:
    """The one error line of a run that must exit 2 without a traceback."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gprec: error:")
    assert not any(line.startswith("gprec: error") for line in err[:-1]) and "Traceback" not in err
    return err[-1]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.activation=foo", "model.activation: Input should be 'relu', 'gelu', 'tanh' or 'silu'"),
        ("model.dropout=1.5", "model.dropout: Input should be less than 1"),
        ("model.dropout=1", "model.dropout: Input should be less than 1"),
        ("model.dropout=-0.1", "model.dropout: Input should be greater than or equal to 0"),
        ("model.embedding_dim=0", "model.embedding_dim: Input should be greater than or equal to 1"),
        ("model.head_units=[0]", "model.head_units.0: Input should be greater than or equal to 1"),
        ("model.head_units=[16, -2]", "model.head_units.1: Input should be greater than or equal to 1"),
        ("model.embedding_init_std=-1", "model.embedding_init_std: Input should be greater than or equal to 0"),
    ],
)  # fmt: skip
def test_bad_model_option_is_one_line(tmp_path, capsys, override, message):
    out = tmp_path / "run"
    line = run_error(capsys, ["train", *TINY, "--set", override, "--out", str(out)])
    assert line == f"gprec: error: --set {override}: {message}"
    assert not out.exists()


def test_bad_backbone_option_of_gprec_is_named(tmp_path, capsys):
    model = "model={name: gprec, backbone: {name: mlp, activation: sigmoid}}"
    args = ["train", "--set", model, "--out", str(tmp_path / "run")]
    assert "model.backbone.activation: Input should be 'relu'" in run_error(capsys, args)


@pytest.mark.parametrize(
    "key", ["classifier_units", "aux_units", "personal_units", "dynamic_units"]
)
def test_gprec_layer_widths_must_be_positive(tmp_path, capsys, key):
    args = ["train", "--set", f"model={{name: gprec, {key}: [8, 0]}}", "-o", str(tmp_path / "r")]
    assert f"model.{key}.1: Input should be greater than or equal to 1" in run_error(capsys, args)


def test_every_listed_activation_builds(fields):
    for name in ACTIVATIONS:
        model = build_model(resolve_model_options({"name": "mlp", "activation": name}), fields)
        assert isinstance(model.head.activation, ACTIVATIONS[name])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.label_threshold=10"], "the valid split has only label 0 (100 rows): AUC is undefined; check data.label_threshold / data.split_ratios"),
        (["data.label_threshold=-1"], "the valid split has only label 1 (100 rows)"),
        (["data.split_ratios=[1, 0, 0]"], "the valid split is empty: AUC is undefined; check data.split_ratios"),
        (["data.split_ratios=[0.9, 0.1, 0]"], "the test split is empty"),
    ],
)  # fmt: skip
def test_unusable_evaluation_split_fails_before_training(tmp_path, capsys, overrides, message):
    out, cache = tmp_path / "run", tmp_path / "cache"
    sets = [a for o in [*overrides, f"data.cache_dir={cache}"] for a in ("--set", o)]
    line = run_error(capsys, ["train", *TINY, *sets, "--out", str(out)])
    assert message in line
    assert not out.exists() and (not cache.exists() or not any(cache.iterdir()))


def test_leave_last_out_without_evaluation_rows_names_the_split_setting(tmp_path, capsys):
    data = tmp_path / "d"
    data.mkdir()
    (data / "log.csv").write_text("u,i,y,t\n1,a,1,1\n1,b,0,2\n2,a,0,3\n")
    (data / "schema.yaml").write_text(
        "interactions: log.csv\ntarget: y\ntimestamp: t\nfields: {u: personal, i: item}\n"
    )
    sets = [f"data.path={data / 'schema.yaml'}", "data.source=generic", "data.split=leave_last_out",
            "data.label_threshold=null", f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    args = ["train", *TINY, *[a for s in sets for a in ("--set", s)], "--out", str(tmp_path / "r")]
    line = run_error(capsys, args)
    assert line.endswith(
        "schema.yaml: the valid split is empty: AUC is undefined; check data.split"
    )


def _occupied(tmp_path):
    (tmp_path / "file").write_text("keep me")
    return tmp_path / "file"


@pytest.mark.parametrize("below", [False, True])
@pytest.mark.parametrize(
    "command",
    [
        ["train", *TINY],
        ["compare", *TINY, "-m", "mlp", "-s", "1"],
        ["data", "synth", "--users", "50", "--items", "20", "--interactions", "200"],
    ],
)
def test_out_that_is_or_is_under_a_file(tmp_path, capsys, command, below):
    file = _occupied(tmp_path)
    out = file / "sub" if below else file
    assert main([*command, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1  # refused before "training ..." or any other progress line
    line = err[0]
    if below:
        assert line == f"gprec: error: --out {out}: its parent {file} exists and is not a directory"
    else:
        assert line == f"gprec: error: --out {out}: exists and is not a directory"
    assert file.read_text() == "keep me"


def test_default_run_directory_under_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("not a directory")
    line = run_error(capsys, ["train", *TINY])
    assert line.startswith("gprec: error: run directory runs/mlp-")
    assert line.endswith(": its parent runs exists and is not a directory")
