"""`gprec export` and `gprec predict --engine onnx` (issue 21): every registered model exports
to ONNX and onnxruntime gives torch's scores within 1e-5 on rows with repeated users, across
batch sizes; the static path export takes (`static_shapes`) computes what the normal one does;
tiny trained runs (binary GPRec with KMeans groups, regression, implicit) export through the
CLI and `predict --engine onnx` equals `predict` on their raw test rows; the file is written
atomically, never replaced without --overwrite, and every error is one line (exit 2)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from conftest import ML_FIELDS, train_tiny_ml100k, write_ml100k
from gprec.cli.main import main
from gprec.data.dataset import apply_duplicate_policy, duplicate_policy, load_raw, split_rows
from gprec.layers.dedup import DistinctRows, static_shapes
from gprec.models.base import Backbone
from gprec.models.gprec_strategies import STRATEGIES
from gprec.models.registry import available_models, build_model, resolve_model_options
from gprec.serving.export import (
    ONNX_FILE,
    OPSET,
    OnnxScorer,
    checkpoint_digest,
    export_model,
)
from gprec.serving.predict import Predictor
from gprec.training.load import load_run

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5
BATCHES = (1, 7, 300)
FIELDS = ML_FIELDS
OPTIONS = {"dmtl": {"group_field": "group"}, "gprec": {"backbone": {"name": "mlp"}}}


def toy_model(name: str, **opts) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = resolve_model_options({"name": name, "embedding_dim": 4, **OPTIONS.get(name, {}), **opts})
    model = build_model(cfg, FIELDS)
    # Nonzero, distinct parameters everywhere (some start at 0 or 1: STAR's, biases), so that
    # a wrong gather or a baked-in branch shows in the scores.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def rows(n: int, seed: int = 0) -> np.ndarray:
    """`n` rows of valid codes, most users repeated (few distinct users, two genders): the
    dedup and STAR's present-partitions paths run on the torch side."""
    rng = np.random.default_rng(seed)
    users = np.stack([rng.integers(1, f.cardinality, 4) for f in FIELDS[2:]], axis=1)
    users[:, 2] = rng.integers(1, 3, 4)  # gender 1 or 2: partition 0 absent
    X = np.empty((n, len(FIELDS)), dtype=np.int64)
    X[:, 0] = rng.integers(0, FIELDS[0].cardinality, n)
    X[:, 1] = rng.integers(0, FIELDS[1].cardinality, n)
    X[:, 2:] = users[rng.integers(0, len(users), n)]
    return X


def torch_scores(model, X: np.ndarray, transform=torch.sigmoid) -> np.ndarray:
    with torch.no_grad():
        return transform(model(torch.from_numpy(X)).logit).numpy()


def parity(model, transform=torch.sigmoid) -> list[float]:
    scorer = OnnxScorer(export_model(model, transform, len(FIELDS)))
    X = rows(max(BATCHES))
    diffs = []
    for b in BATCHES:
        got, want = scorer(X[:b]), torch_scores(model, X[:b], transform)
        assert got.shape == want.shape == (b,) and got.dtype == np.float32
        diffs.append(float(np.abs(got - want).max()))
    return diffs


# -- every model on toy fields ---------------------------------------------------------------


def test_every_registered_model_is_covered():
    """The parity tests below run over available_models(): one that failed to import would
    shrink them silently."""
    assert len(available_models()) == 17 and set(available_models(Backbone)) < set(
        available_models()
    )


@pytest.mark.parametrize("name", available_models())
def test_every_model_exports_and_onnxruntime_equals_torch(name, capsys, caplog):
    model = toy_model(name)
    with caplog.at_level(logging.INFO):
        diffs = parity(model)
    assert max(diffs) <= TOL, diffs
    assert not model.training  # the export leaves the model's mode as it was
    # no exporter chatter: printed (predict writes to stdout) or logged (e.g. DESTINE's Split
    # that onnxscript's optimiser does not fold)
    assert capsys.readouterr() == ("", "")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(("strategy", "backbone"), [
    (s, b) for s in STRATEGIES for b in ("mlp", "dcnv2", "autoint")
])  # fmt: skip
def test_gprec_strategies_export(strategy, backbone):
    model = toy_model("gprec", strategy=strategy, backbone={"name": backbone})
    assert max(parity(model)) <= TOL


VARIANTS = [  # options that take other code paths in the models with dedup or partitions
    ("apg", {"share_uv": False, "overparam_dim": None}),
    ("apg", {"output_layer": True}),
    ("dgpm", {"rank": 2, "combine": "factors"}),
    ("dgpm", {"rank": 2, "combine": "products"}),
    ("gprec", {"group_embedding": "single"}),
    ("gprec", {"individual": False, "group_reduce": "concat"}),
    ("star", {"partition_norm": False, "aux_fields": ["age"]}),
    ("mmoe", {"partition_field": "age"}),
]


@pytest.mark.parametrize(("name", "opts"), VARIANTS, ids=[f"{n}-{o}" for n, o in VARIANTS])
def test_option_variants_export(name, opts):
    assert max(parity(toy_model(name, **opts))) <= TOL


def test_the_transform_is_part_of_the_graph():
    """Regression's offset and implicit's identity are exported with the model."""
    model = toy_model("mlp")
    assert max(parity(model, lambda out: out + 3.61)) <= TOL
    assert max(parity(model, lambda out: out)) <= TOL


def test_a_model_in_training_mode_is_exported_in_eval_mode_and_left_training():
    model = toy_model("gprec").train()
    X = rows(50)
    got = OnnxScorer(export_model(model, torch.sigmoid, len(FIELDS)))(X)
    assert model.training
    assert np.abs(got - torch_scores(model.eval(), X)).max() <= TOL


# -- the static path -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gprec", "apg", "dgpm", "star"])
def test_static_shapes_computes_what_the_dedup_computes(name):
    model = toy_model(name)
    X = torch.from_numpy(rows(300))
    with torch.no_grad():
        normal = model(X).logit
        with static_shapes(model):
            static = model(X).logit
        again = model(X).logit
    assert torch.allclose(static, normal, rtol=0, atol=1e-6)
    assert torch.equal(again, normal)  # restored after the block


def test_static_shapes_switches_the_shortcuts_off_and_restores_them():
    model = toy_model("star", backbone={"name": "mlp"})
    flagged = [m for m in model.modules() if hasattr(m, "static_shapes")]
    assert flagged == [model]
    d = DistinctRows([3, 4])
    cols = torch.tensor([[1, 2], [1, 2], [2, 3]])
    assert d(cols) is not None
    with static_shapes(d):
        assert d(cols) is None
    assert d(cols) is not None and d.static_shapes is False
    gprec = toy_model("gprec")
    with pytest.raises(RuntimeError), static_shapes(gprec):
        assert gprec.distinct_users.static_shapes
        raise RuntimeError
    assert gprec.distinct_users.static_shapes is False


def test_static_shapes_keeps_training_gradients_equal():
    """The every-row path gives the same gradients (a training step could use it)."""
    model = toy_model("gprec").train()
    X = torch.from_numpy(rows(200))
    grads = []
    for static in (False, True):
        model.zero_grad()
        torch.manual_seed(1)  # the Gumbel noise
        if static:
            with static_shapes(model):
                model(X).logit.sum().backward()
        else:
            model(X).logit.sum().backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


# -- tiny trained runs through the CLI -------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_ml100k(root / "ml-100k", n_items=200, n_ratings=3000)
    return {
        # GPRec with KMeans groups: the dedup, and the `group` field assigned to new rows
        "binary": train_tiny_ml100k(
            root, "binary", "data.user_groups=3", "model.n_groups=3", config="gprec-input.yaml"
        ),
        "regression": train_tiny_ml100k(
            root, "regression", "train.task=regression", "data.target=value"
        ),
        "implicit": train_tiny_ml100k(
            root,
            "implicit",
            "train.task=implicit",
            "train.eval_negatives=10",
            "model.n_groups=3",
            config="gprec-dynamic.yaml",
        ),  # fmt: skip
    }


def raw_test_rows(run) -> pl.DataFrame:
    cfg = run.config.data
    raw, _ = apply_duplicate_policy(load_raw(cfg), duplicate_policy(cfg), None)
    return raw.table[split_rows(raw, cfg, run.config.split_seed())["test"]].select(raw.field_names)


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gprec: error: "), err
    return err[0]


@pytest.mark.parametrize("task", ["binary", "regression", "implicit"])
def test_export_then_predict_through_onnx_equals_torch(runs, tmp_path, task, capsys):
    run_dir = runs[task]
    out = tmp_path / "exported" / "scoring.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert said.out == "" and f"wrote {out}" in said.err and f"opset {OPSET}" in said.err
    assert said.err.count("\n") == 1  # one line: no exporter chatter
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp, no external data

    run = load_run(run_dir)
    raw = raw_test_rows(run)
    assert raw.height > 100
    src = tmp_path / "test.csv"
    raw.write_csv(src)
    by = {}
    for engine in ("torch", "onnx"):
        dest = tmp_path / f"{engine}.parquet"
        extra = ["--onnx", str(out)] if engine == "onnx" else []
        argv = ["predict", str(run_dir), "-i", str(src), "-o", str(dest), "--engine", engine]
        assert main([*argv, *extra, "--batch-rows", "77"]) == 0
        by[engine] = pl.read_parquet(dest)
    assert by["onnx"].drop("score").equals(by["torch"].drop("score"))
    diff = np.abs(by["onnx"]["score"].to_numpy() - by["torch"]["score"].to_numpy()).max()
    assert diff <= TOL, diff
    # Predictor (the library) and every batch size agree too
    onnx = Predictor.open(run_dir, engine="onnx", onnx=out)
    X = onnx.encode(raw).X
    for b in BATCHES:
        assert np.abs(onnx.scorer(X[:b]) - run.predict(X[:b])).max() <= TOL
    print(f"{task}: max |onnx - torch| {diff:.3g} on {raw.height} raw test rows")


def test_default_file_is_in_the_run_and_predict_finds_it(runs, tmp_path, capsys):
    run_dir = runs["binary"]
    src = tmp_path / "rows.csv"
    raw_test_rows(load_run(run_dir)).head(20).write_csv(src)
    error = one_line_error(capsys, ["predict", str(run_dir), "-i", str(src), "--engine", "onnx"])
    assert f"{run_dir / ONNX_FILE}: no exported model" in error
    assert f"gprec export {run_dir} --format onnx" in error
    try:
        assert main(["export", str(run_dir), "--format", "onnx"]) == 0
        assert (run_dir / ONNX_FILE).is_file()
        capsys.readouterr()
        by = {}
        for engine in ("onnx", "torch"):
            assert main(["predict", str(run_dir), "-i", str(src), "--engine", engine]) == 0
            by[engine] = pl.read_csv(capsys.readouterr().out.encode())["score"].to_numpy()
        assert len(by["onnx"]) == 20 and np.abs(by["onnx"] - by["torch"]).max() <= TOL
    finally:
        (run_dir / ONNX_FILE).unlink(missing_ok=True)


def test_an_existing_file_is_refused_unless_overwrite(runs, tmp_path, capsys):
    run_dir = runs["regression"]
    out = tmp_path / "m.onnx"
    out.write_bytes(b"not mine")
    argv = ["export", str(run_dir), "--format", "onnx", "--out", str(out)]
    error = one_line_error(capsys, argv)
    assert error == f"gprec: error: {out}: exists; pass --overwrite to replace it"
    assert out.read_bytes() == b"not mine"
    assert main([*argv, "--overwrite"]) == 0
    assert out.read_bytes() != b"not mine"
    first = out.read_bytes()
    assert main([*argv, "--overwrite"]) == 0
    assert out.read_bytes() == first  # the same run exports to the same bytes
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(runs, tmp_path, monkeypatch, capsys):
    """Written atomically (temp + rename): a disk that fills up halfway leaves neither a
    half-written file nor a temp, and an existing file as it was."""
    import os

    import gprec.io

    class FullDisk:  # gprec.io's `os`, whose files fill up halfway through a write
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def fdopen(fd, mode):
            fh = os.fdopen(fd, mode)
            write = fh.write

            def half(data):
                write(bytes(data)[: len(data) // 2])
                raise OSError(28, "No space left on device")

            fh.write = half
            return fh

    out = tmp_path / "m.onnx"
    argv = ["export", str(runs["regression"]), "-f", "onnx", "-o", str(out)]
    monkeypatch.setattr(gprec.io, "os", FullDisk())
    assert "No space left on device" in one_line_error(capsys, argv)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"earlier")
    assert "No space left on device" in one_line_error(capsys, [*argv, "--overwrite"])
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert out.read_bytes() == b"earlier"


def test_errors_are_one_line(runs, tmp_path, capsys):
    run_dir = str(runs["binary"])
    error = one_line_error(capsys, ["export", run_dir, "--format", "tflite"])
    assert error == "gprec: error: unknown --format 'tflite'; available: onnx"
    error = one_line_error(capsys, ["export", str(tmp_path / "nope"), "--format", "onnx"])
    assert "no such run directory" in error
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "model.pt", "vocab.json"):
        (unfinished / name).write_bytes((runs["binary"] / name).read_bytes())
    (unfinished / "status.json").write_text('{"status": "running", "pid": 1}')
    error = one_line_error(capsys, ["export", str(unfinished), "--format", "onnx"])
    assert "not a finished run" in error and not (unfinished / ONNX_FILE).exists()
    error = one_line_error(capsys, ["export", run_dir, "-f", "onnx", "-o", str(tmp_path)])
    assert "is a directory" in error

    src = tmp_path / "rows.csv"
    raw_test_rows(load_run(run_dir)).head(5).write_csv(src)
    predict = ["predict", run_dir, "-i", str(src)]
    error = one_line_error(capsys, [*predict, "--engine", "tensorrt"])
    assert error == "gprec: error: unknown engine 'tensorrt'; available: torch, onnx"
    error = one_line_error(capsys, [*predict, "--onnx", str(tmp_path / "m.onnx")])
    assert "--engine onnx" in error
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    error = one_line_error(capsys, [*predict, "--engine", "onnx", "--onnx", str(bad)])
    assert "cannot be loaded by onnxruntime" in error


def test_a_model_exported_for_another_run_is_refused(runs, tmp_path, capsys):
    other = tmp_path / "other.onnx"
    assert main(["export", str(runs["implicit"]), "-f", "onnx", "-o", str(other)]) == 0
    capsys.readouterr()

    def error_of(task, onnx):
        src = tmp_path / "rows.csv"
        raw_test_rows(load_run(runs[task])).head(5).write_csv(src)
        argv = ["predict", str(runs[task]), "-i", str(src), "--engine", "onnx", "--onnx"]
        return one_line_error(capsys, [*argv, str(onnx)])

    # the same fields (MovieLens'), other weights
    error = error_of("regression", other)
    assert f"exported from other weights than {runs['regression']}/model.pt" in error
    assert "--overwrite" in error
    # other fields (the binary run has the KMeans group)
    assert "exported for the fields" in error_of("binary", other)
    # a model that is not gprec's
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(export_model(toy_model("mlp"), torch.sigmoid, len(FIELDS)))
    assert "not a model written by gprec export" in error_of("binary", foreign)


def test_the_metadata_names_the_run(runs, tmp_path):
    run = load_run(runs["binary"])
    out = tmp_path / "m.onnx"
    assert main(["export", str(run.path), "-f", "onnx", "-o", str(out)]) == 0
    meta = OnnxScorer(out).metadata
    assert meta["gprec.model"] == "gprec" and meta["gprec.task"] == "binary"
    assert meta["gprec.output"] == "probability"
    assert meta["gprec.fields"] == str([f.name for f in run.fields]).replace("'", '"')
    assert meta["gprec.checkpoint_sha256"] == checkpoint_digest(run.path)
    import onnx

    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain == ""] == [OPSET]
    shape = model.graph.input[0].type.tensor_type.shape.dim
    assert shape[0].dim_param and shape[1].dim_value == len(run.fields)


def test_help_imports_no_exporter():
    code = (
        "import sys; from gprec.cli.main import main\n"
        "try: main(['export', '--help'])\nexcept SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'onnxscript') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
