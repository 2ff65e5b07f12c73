"""Issue 16, the config side: seeds, unreadable or odd config files, messages that name the
right source (file, line, `--set`, flag), silent acceptance made an error, `config show`.

CLI cases assert the exit code, the single error line, and that nothing was written.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gprec.cli.data import SYNTH_FLAGS
from gprec.cli.main import main
from gprec.config import (
    SEED_MAX,
    DataConfig,
    RunConfig,
    apply_overrides,
    load_config,
    parse_config,
    read_yaml,
)
from gprec.data.synth import SynthConfig, SynthConfigError
from gprec.errors import ConfigError
from gprec.models.base import Backbone
from gprec.models.registry import available_models, model_class

BACKBONES = ", ".join(available_models(Backbone))  # the error messages list them all

ROOT = Path(__file__).parents[1]
GPREC_INPUT = ROOT / "configs" / "ml-100k" / "gprec-input.yaml"
SMALL_SYNTH = ["--users", "50", "--items", "20", "--interactions", "200"]


def error_line(capsys, args: list[str]) -> str:
    """The whole stderr of a command that must fail with a user error: exactly one line."""
    assert main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("gprec: error: ")
    return err[0].removeprefix("gprec: error: ")


def train_error(capsys, tmp_path, args: list[str]) -> str:
    """A `gprec train` that must fail before writing anything: no --out, no cache entry."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    line = error_line(
        capsys, ["train", *args, "--set", f"data.cache_dir={cache}", "--out", str(out)]
    )
    assert not out.exists() and not cache.exists()
    return line


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- 6: seeds -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["train.seed", "data.split_seed", "data.synthetic.seed"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("-1", "Input should be greater than or equal to 0"),
        ("99999999999999999999", f"Input should be less than or equal to {SEED_MAX}"),
        (str(2**32), f"Input should be less than or equal to {SEED_MAX}"),
    ],
)
def test_seed_out_of_range_is_one_line_naming_the_key(tmp_path, capsys, key, value, problem):
    line = train_error(capsys, tmp_path, ["--set", f"{key}={value}"])
    assert line == f"--set {key}={value}: {key}: {problem}"


def test_seed_out_of_range_in_a_file_blames_the_file(tmp_path, capsys):
    cfg = write(tmp_path / "c.yaml", "train:\n  seed: -5\n")
    line = train_error(capsys, tmp_path, ["-c", str(cfg)])
    assert line == f"{cfg}: train.seed: Input should be greater than or equal to 0"


def test_seed_range_ends_are_accepted():
    for seed in (0, SEED_MAX):
        cfg = load_config(None, [f"train.seed={seed}", f"data.split_seed={seed}",
                                 f"data.synthetic.seed={seed}"])  # fmt: skip
        assert cfg.train.seed == cfg.split_seed() == cfg.data.synthetic.seed == seed


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_synth_seed_out_of_range(tmp_path, capsys, seed):
    out = tmp_path / "d"
    line = error_line(capsys, ["data", "synth", *SMALL_SYNTH, "--seed", seed, "--out", str(out)])
    assert line == f"--seed {seed}: must be between 0 and {SEED_MAX}"
    assert not out.exists()


# -- 7: files that are not a config -----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 1: not UTF-8 text (byte 0x89), so not a YAML config"),
        (b"train:\n  lr: 0.1\n\xff\xfe", "line 3: not UTF-8 text (byte 0xff), so not a YAML config"),
        (b"train:\n  lr: 1\x00\x01\n", "line 2: not a YAML config (control character #x0000)"),
    ],
)  # fmt: skip
def test_binary_config_is_one_line_naming_the_file(tmp_path, capsys, content, problem):
    cfg = write(tmp_path / "g.yaml", content)
    assert train_error(capsys, tmp_path, ["-c", str(cfg)]) == f"{cfg}, {problem}"


def test_random_bytes_config(tmp_path, capsys):
    cfg = write(tmp_path / "g.yaml", os.urandom(2000))
    line = train_error(capsys, tmp_path, ["-c", str(cfg)])
    assert line.startswith(f"{cfg}, line ") and "not" in line and "YAML config" in line


def test_config_that_is_a_directory_or_a_device(tmp_path, capsys):
    assert train_error(capsys, tmp_path, ["-c", str(tmp_path)]) == (
        f"{tmp_path}: is a directory, not a config file"
    )
    assert train_error(capsys, tmp_path, ["-c", "/dev/zero"]) == (
        "/dev/zero: not a regular file, so not a config file"
    )


def test_unreadable_config(tmp_path, capsys, monkeypatch):
    cfg = write(tmp_path / "c.yaml", "train: {lr: 0.1}\n")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    line = train_error(capsys, tmp_path, ["-c", str(cfg)])
    assert line == f"{cfg}: cannot read the config file (Permission denied)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_unreadable_config_by_mode(tmp_path, capsys):
    cfg = write(tmp_path / "c.yaml", "train: {lr: 0.1}\n")
    cfg.chmod(0)
    line = train_error(capsys, tmp_path, ["-c", str(cfg)])
    assert line == f"{cfg}: cannot read the config file (Permission denied)"


def test_config_with_a_utf8_bom_is_read(tmp_path):
    cfg = write(tmp_path / "c.yaml", "\ufefftrain:\n  lr: 0.01\n".encode())
    assert load_config(cfg).train.lr == 0.01


# -- 10: messages that name the right place ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("train: [unclosed\n", "line 2: invalid YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at line 1)"),
        ("train:\n  lr: 1\n bad: 2\n", "line 3: invalid YAML: expected <block end>, but found '<block mapping start>' (while parsing a block mapping at line 1)"),
        ("data:\n  source: synthetic\n  path: a: b\n", "line 3: invalid YAML: mapping values are not allowed here"),
    ],
)  # fmt: skip
def test_yaml_syntax_error_names_the_line(tmp_path, capsys, text, problem):
    cfg = write(tmp_path / "bad.yaml", text)
    assert train_error(capsys, tmp_path, ["-c", str(cfg)]) == f"{cfg}, {problem}"


def test_set_error_is_blamed_on_the_set_not_the_file(tmp_path, capsys):
    cfg = write(tmp_path / "c.yaml", "train:\n  lr: 0.01\n")
    line = train_error(capsys, tmp_path, ["-c", str(cfg), "--set", "train.lrr=0.1"])
    assert line == "--set train.lrr=0.1: train.lrr: unknown key"
    # the file's own mistakes stay the file's, each next to its origin
    bad = write(tmp_path / "bad.yaml", "train:\n  lr: -1\n")
    line = train_error(capsys, tmp_path, ["-c", str(bad), "--set", "model.dropout=2"])
    assert line == (
        f"{bad}: train.lr: Input should be greater than 0; "
        "--set model.dropout=2: model.dropout: Input should be less than 1"
    )


def test_the_last_set_of_a_key_is_blamed(tmp_path, capsys):
    line = train_error(capsys, tmp_path, ["--set", "train.lr=1", "--set", "train.lr=-1"])
    assert line == "--set train.lr=-1: train.lr: Input should be greater than 0"


def test_set_of_a_whole_section_names_the_key_inside_it(tmp_path, capsys):
    item = "data.synthetic={n_users: 0}"
    line = train_error(capsys, tmp_path, ["--set", item])
    assert line == f"--set {item}: data.synthetic.n_users: Input should be greater than 0"


def test_parse_config_takes_the_applied_overrides():
    overrides = ["train.patience=0"]
    raw = apply_overrides({"train": {"lr": 0.1}}, overrides)
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "my.yaml", overrides)
    assert str(err.value) == (
        "--set train.patience=0: train.patience: Input should be greater than or equal to 1"
    )
    with pytest.raises(ConfigError, match=r"^my.yaml: train.patience"):
        parse_config(raw, "my.yaml")  # without them, the source is all it can name


@pytest.mark.parametrize("override", ["model.backbone.name=gprec", "model.backbone=gprec"])
def test_gprec_cannot_wrap_itself(tmp_path, capsys, override):
    line = train_error(capsys, tmp_path, ["-c", str(GPREC_INPUT), "--set", override])
    key = override.partition("=")[0]
    assert line == (
        f"--set {override}: {key}: 'gprec' wraps a backbone and is not one itself; "
        f"model.backbone.name must name a backbone: {BACKBONES}"
    )


def test_gprec_wrapping_itself_in_a_file_and_other_backbone_mistakes(tmp_path, capsys):
    cfg = write(tmp_path / "g.yaml", "model:\n  name: gprec\n  backbone: {name: gprec}\n")
    line = train_error(capsys, tmp_path, ["-c", str(cfg)])
    assert line.startswith(f"{cfg}: model.backbone.name: 'gprec' wraps a backbone and is not one itself")
    line = train_error(capsys, tmp_path, ["-c", str(cfg), "--set", "model.backbone.name=mpl"])
    assert line == (
        "--set model.backbone.name=mpl: model.backbone.name: unknown model 'mpl' "
        f"(did you mean 'mlp'?); backbones: {BACKBONES}"
    )
    line = train_error(capsys, tmp_path, ["-c", str(cfg), "--set", "model.backbone=mlp"])
    assert line == (
        "--set model.backbone=mlp: model.backbone: a section, not a name: "
        "write model.backbone.name=mlp"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "0"], "--users 0: must be at least 1"),
        (["--items", "-3"], "--items -3: must be at least 1"),
        (["--groups", "1"], "--groups 1: must be at least 2, the mean number of groups a user is in"),
        (["--interactions", "0"], "--interactions 0: must be at least 1"),
        (["--users", "10", "--items", "10", "--interactions", "60"],
         "--interactions 60: must be at most half of --users x --items = 50 "
         "(interactions are distinct user-item pairs)"),
    ],
)  # fmt: skip
def test_synth_errors_name_the_flag(tmp_path, capsys, args, message):
    out = tmp_path / "d"
    assert error_line(capsys, ["data", "synth", *SMALL_SYNTH, *args, "--out", str(out)]) == message
    assert not out.exists()


def test_synthetic_data_errors_name_the_config_key(tmp_path, capsys):
    line = train_error(capsys, tmp_path, ["--set", "data.synthetic.n_groups=1"])
    assert line == (
        "--set data.synthetic.n_groups=1: data.synthetic.n_groups: must be at least 2, "
        "the mean number of groups a user is in"
    )
    cfg = write(tmp_path / "s.yaml", "data:\n  synthetic: {n_users: 10, n_items: 10}\n")
    line = train_error(capsys, tmp_path, ["-c", str(cfg)])
    assert line == (
        f"{cfg}: data.synthetic.n_interactions: must be at most half of data.synthetic.n_users "
        "x data.synthetic.n_items = 50 (interactions are distinct user-item pairs)"
    )


def test_synth_config_error_carries_the_field():
    with pytest.raises(SynthConfigError) as err:
        SynthConfig(n_users=10, n_items=10, n_interactions=60)
    assert err.value.field == "n_interactions"
    assert err.value.message(lambda f: f"<{f}>") == (
        "must be at most half of <n_users> x <n_items> = 50 (interactions are distinct "
        "user-item pairs)"
    )
    # a moved API-only knob is blamed, not n_groups
    with pytest.raises(SynthConfigError) as err:
        SynthConfig(n_groups=2, groups_per_user=3)
    assert err.value.field == "groups_per_user"


def test_synth_refuses_a_non_empty_out_naming_the_flag(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "synth", *SMALL_SYNTH, "--out", str(out)]) == 0
    capsys.readouterr()
    before = (out / "interactions.csv").read_bytes()
    line = error_line(capsys, ["data", "synth", *SMALL_SYNTH, "--seed", "3", "--out", str(out)])
    assert line == (
        f"--out {out}: directory is not empty: it holds a synthetic dataset; "
        "pass --overwrite to replace it"
    )
    assert (out / "interactions.csv").read_bytes() == before
    args = ["data", "synth", *SMALL_SYNTH, "--seed", "3", "--out", str(out), "--overwrite"]
    assert main(args) == 0
    assert (out / "interactions.csv").read_bytes() != before


def test_synth_overwrite_never_replaces_other_files(tmp_path, capsys):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    args = ["data", "synth", *SMALL_SYNTH, "--out", str(out), "--overwrite"]
    line = error_line(capsys, args)
    assert line == (
        f"--out {out}: directory is not empty (thesis.tex); choose a new or empty directory "
        "(--overwrite replaces only a dataset written by gprec data synth)"
    )
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_synth_write_failure_is_one_line(tmp_path, capsys, monkeypatch):
    import gprec.data.synth

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gprec.data.synth, "write_dataset", full)
    out = tmp_path / "d"
    line = error_line(capsys, ["data", "synth", *SMALL_SYNTH, "--out", str(out)])
    assert line == f"--out {out}: cannot write the dataset (No space left on device)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_synth_out_in_a_read_only_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    line = error_line(capsys, ["data", "synth", *SMALL_SYNTH, "--out", str(ro / "d")])
    assert line.startswith(f"--out {ro / 'd'}: cannot write here")
    assert list(ro.iterdir()) == []


def test_synth_hint_is_an_absolute_path_and_a_runnable_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPREC_DATA", str(tmp_path / "elsewhere"))  # would break a relative path
    assert main(["data", "synth", *SMALL_SYNTH, "--out", "rel/data"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    schema = (tmp_path / "rel" / "data" / "schema.yaml").resolve()
    assert str(schema.parent) in out[0]
    command = shlex.split(out[-1])
    assert command[:2] == ["gprec", "train"]
    assert f"data.path={schema}" in command
    overrides = [command[i + 1] for i, a in enumerate(command) if a == "--set"]
    cfg = load_config(None, overrides)
    assert cfg.data.source == "generic" and cfg.data.resolved_path() == schema


# -- 11: accepted silently before ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_config_file_is_an_error(tmp_path, capsys, text):
    cfg = write(tmp_path / "empty.yaml", text)
    assert train_error(capsys, tmp_path, ["-c", str(cfg)]) == (
        f"{cfg}: the config file is empty; to run the built-in default (synthetic data, MLP), "
        "leave out --config"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("train:\n  lr: 0.1\n  batch_size: 8\n  lr: 0.2\n", "train.lr is given twice (lines 2 and 4)"),
        ("train:\n  lr: 0.1\ndata: {}\ntrain:\n  seed: 1\n", "train is given twice (lines 1 and 4)"),
        ("model:\n  name: gprec\n  backbone: {name: mlp, dropout: 0.1, dropout: 0.2}\n",
         "model.backbone.dropout is given twice (lines 3 and 3)"),
    ],
)  # fmt: skip
def test_duplicate_keys_are_an_error(tmp_path, capsys, text, problem):
    cfg = write(tmp_path / "dup.yaml", text)
    assert (
        train_error(capsys, tmp_path, ["-c", str(cfg)]) == f"{cfg}: {problem}; give each key once"
    )


def test_duplicate_key_inside_a_set_value(tmp_path, capsys):
    item = "data.synthetic={n_users: 10, n_users: 20}"
    assert train_error(capsys, tmp_path, ["--set", item]) == (
        f"--set {item}: n_users is given twice (lines 1 and 1)"
    )


def test_anchors_and_merge_keys_still_work(tmp_path):
    cfg = write(
        tmp_path / "m.yaml",
        "model:\n  name: mlp\n  head_units: &w [8, 4]\ntrain: &t {lr: 0.1, seed: 1}\n"
        "data:\n  synthetic:\n    <<: {n_users: 60, n_items: 40, n_interactions: 500}\n    n_users: 70\n",
    )
    cfg = load_config(cfg)
    assert cfg.model["head_units"] == [8, 4] and cfg.data.synthetic.n_users == 70
    assert read_yaml(tmp_path / "m.yaml")["train"] == {"lr": 0.1, "seed": 1}


def test_empty_section_in_a_file_takes_a_set(tmp_path):
    cfg = write(tmp_path / "c.yaml", "data:\n  source: synthetic\ntrain:\n")
    assert load_config(cfg, ["train.lr=0.5"]).train.lr == 0.5


# -- 15: help, descriptions, config show --------------------------------------------------------


def test_synth_help_describes_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "synth", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag, default, _ in SYNTH_FLAGS.values():
        assert flag in text and f"(default: {default})" in text
    assert "--overwrite replace a synthetic dataset" in text
    assert "schema.yaml" in text  # the description says what is written


def test_synth_flag_defaults_are_the_generators():
    for field, (_, default, _) in SYNTH_FLAGS.items():
        assert getattr(SynthConfig(), field) == default


def _all_option_classes():
    yield from (RunConfig, DataConfig, DataConfig.model_fields["synthetic"].annotation)
    yield RunConfig.model_fields["train"].annotation
    for name in available_models():
        yield model_class(name).Options


def test_every_config_key_and_model_option_has_a_description():
    missing = [
        f"{cls.__name__}.{name}"
        for cls in _all_option_classes()
        for name, info in cls.model_fields.items()
        if not (info.description or "").strip()
    ]
    assert missing == []


def test_data_duplicates_policy_key():
    assert parse_config({}).data.duplicates == "warn"
    for policy in ("warn", "drop", "error"):
        assert parse_config({"data": {"duplicates": policy}}).data.duplicates == policy
    with pytest.raises(
        ConfigError, match="data.duplicates: Input should be 'warn', 'drop' or 'error'"
    ):
        parse_config({"data": {"duplicates": "keep"}})


def test_config_show_lists_every_key(capsys):
    assert main(["config", "show"]) == 0
    text = capsys.readouterr().out
    keys = {line.split()[0] for line in text.splitlines() if line.startswith("  ")}
    for key in ("train.lr", "data.cache_dir", "data.duplicates", "data.synthetic.seed",
                "model.name", "model.head_units", "train.seed"):  # fmt: skip
        assert key in keys
    assert "int in [0, 4294967295]" in text and "Adam learning rate" in text
    assert "model.n_groups" not in keys
    expected = {f"train.{k}" for k in RunConfig.model_fields["train"].annotation.model_fields}
    assert expected <= keys


def test_config_show_gprec_lists_its_options_and_the_backbone_section(capsys):
    assert main(["config", "show", "--model", "gprec"]) == 0
    text = capsys.readouterr().out
    keys = {line.split()[0] for line in text.splitlines() if line.startswith("  ")}
    assert {"model.n_groups", "model.strategy", "model.backbone.name",
            "model.backbone.head_units"} <= keys  # fmt: skip
    # shared embedding options are listed once, at the GPRec level
    assert "model.embedding_dim" in keys and "model.backbone.embedding_dim" not in keys


@pytest.mark.parametrize("model", ["mlp", "gprec"])
def test_config_show_yaml_is_a_config_with_every_default(capsys, model):
    assert main(["config", "show", "--model", model, "--format", "yaml"]) == 0
    text = capsys.readouterr().out
    assert "# Adam learning rate" in text
    assert parse_config(yaml.safe_load(text)) == parse_config({"model": {"name": model}})


def test_config_show_unknown_model(capsys):
    assert error_line(capsys, ["config", "show", "--model", "mpl"]) == (
        f"--model mpl: unknown model 'mpl' (did you mean 'mlp'?); available: "
        f"{', '.join(available_models())}"
    )


def test_data_and_config_commands_import_nothing_heavy():
    code = (
        "import sys, gprec.cli.data, gprec.cli.config_cmd\n"
        "print(sorted(m for m in ('torch', 'numpy', 'polars', 'scipy', 'sklearn') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
