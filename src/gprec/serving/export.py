"""A finished run's scoring path as an ONNX model (`gprec export`), and scoring with it through
onnxruntime (`gprec predict --engine onnx`).

What is exported: encoded rows `rows` (int64, `(batch, n_fields)`, the columns `LoadedRun.fields`
in order, the codes `gprec.serving.encode` gives) to the task's prediction `score` (float32,
`(batch,)`): the model's main output followed by the task's transform (the sigmoid for
`binary`, `+ offset` for `regression`, nothing for `implicit`), the numbers `LoadedRun.predict`
gives. The batch axis is dynamic; encoding raw rows stays in Python (vocabularies, catalogue
look-ups, KMeans groups).

The exporter is torch's `torch.export`-based one (`torch.onnx.export(dynamo=True)`, torch's
default since 2.9, which needs onnxscript), opset 18 pinned: the opset its operator library is
written for (no version conversion), run by onnxruntime since 1.14. The TorchScript-tracing
exporter (`dynamo=False`) still runs on torch 2.13, but it records only the branch the example
batch took through data-dependent code (e.g. whether the batch had repeated users) and says
nothing, where `torch.export` refuses such code; so data-dependent shortcuts are switched off
while exporting (`gprec.layers.dedup.static_shapes`: GPRec's, APG's and DGPM's per-user dedup,
STAR's present-partitions products), each replaced by its every-row computation: the same
numbers, and training keeps the shortcuts.

The file is one self-contained ONNX model (weights inside, no external data file), written
atomically; its metadata names the fields in order, the task, the model and the SHA-256 of the
run's `model.pt`, which `OnnxScorer.open` checks against the run it scores for. Before the file
is written, onnxruntime scores check rows (random valid codes, some rows repeated so that the
torch side runs its dedup) and they must equal the run's own predictions within `TOLERANCE`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch  # this module is imported by the commands' handlers only, never for --help

from gprec.errors import ConfigError
from gprec.layers.dedup import static_shapes

FORMATS = ("onnx",)
ONNX_FILE = "model.onnx"  # in the run directory: the default of export --out and predict --onnx
OPSET = 18
INPUT, OUTPUT = "rows", "score"
TOLERANCE = 1e-5  # largest |onnxruntime - torch| allowed on the check rows
CHECK_ROWS = 256  # random rows scored by both before the file is written (plus 64 repeated)
SCORE_ROWS = 65536  # rows per onnxruntime call, as LoadedRun.predict's batches
EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
MIN_TORCH = (2, 6)  # the first torch whose torch.onnx.export defaults to a torch.export exporter
OUTPUTS = {"binary": "probability", "regression": "rating", "implicit": "ranking score (logit)"}
META = "gprec."  # prefix of the metadata keys


def require(packages: tuple[str, ...], what: str) -> None:
    """One error line naming the missing packages and the extra that installs them."""
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ConfigError(
            f"{what} needs {', '.join(missing)}: pip install -e '.[export]' (or '.[dev]')"
        )


class ScoringPath(torch.nn.Module):
    """`rows -> transform(model(rows).logit)`: what the exported graph computes."""

    def __init__(self, model: torch.nn.Module, transform: Callable):
        super().__init__()
        self.model = model
        self.transform = transform

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.transform(self.model(rows).logit)


@contextmanager
def _quiet() -> Iterator[None]:
    """torch.export and the ONNX translation warn about things that do not concern the user
    (torchvision ops not registered, deprecations inside torch, constants onnxscript's
    optimiser leaves unfolded), and some onnxscript versions
    print what their optimiser rewrote to standard output (where predict writes its scores);
    the result is checked instead."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_model(model, transform: Callable, n_fields: int, metadata: dict | None = None) -> bytes:
    """The scoring path of `model` (in evaluation mode for the export; its mode is restored)
    as a serialised ONNX model, with `metadata` (str -> str) added."""
    require(EXPORT_PACKAGES, "ONNX export")
    if tuple(int(p) for p in torch.__version__.split(".")[:2]) < MIN_TORCH:
        raise ConfigError(
            f"ONNX export needs torch {'.'.join(map(str, MIN_TORCH))} or later (its "
            f"torch.export-based exporter); this is torch {torch.__version__}"
        )
    was_training = model.training
    scoring = ScoringPath(model, transform).eval()
    # torch.export specialises axes of size 0 and 1: a dynamic axis needs an example of 2+.
    example = torch.zeros((3, n_fields), dtype=torch.long)
    try:
        with static_shapes(model), _quiet():
            program = torch.onnx.export(
                scoring,
                (example,),
                input_names=[INPUT],
                output_names=[OUTPUT],
                opset_version=OPSET,
                dynamo=True,
                dynamic_shapes={INPUT: {0: torch.export.Dim("batch")}},
                verbose=False,
            )
    finally:
        model.train(was_training)
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        return proto.SerializeToString()
    except ValueError as e:  # protobuf's 2 GiB limit on one message
        raise ConfigError(f"the model is too large for one ONNX file ({e})") from None


class OnnxScorer:
    """Encoded rows -> the task's predictions (float32) through one onnxruntime session."""

    def __init__(self, model: str | Path | bytes, threads: int | None = None):
        require(("onnxruntime",), "scoring with --engine onnx")
        import onnxruntime as ort

        options = ort.SessionOptions()
        # As torch's threads (OMP_NUM_THREADS or the cores): the same budget as --engine torch.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        shape = self.session.get_inputs()[0].shape
        self.n_fields = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None

    @classmethod
    def open(cls, path: str | Path, run) -> OnnxScorer:
        """The model `gprec export` wrote for `run` (a `LoadedRun`) at `path`; one error line
        when there is none, it cannot be loaded, or it was exported from other weights."""
        path = Path(path)
        if not path.is_file():
            default = path == run.path / ONNX_FILE
            how = f"gprec export {run.path} --format onnx" + ("" if default else f" --out {path}")
            raise ConfigError(f"{path}: no exported model; run `{how}` first")
        require(("onnxruntime",), "scoring with --engine onnx")
        try:
            scorer = cls(path)
        except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise ConfigError(f"{path}: cannot be loaded by onnxruntime ({first})") from None
        meta = scorer.metadata
        if META + "checkpoint_sha256" not in meta:
            raise ConfigError(f"{path}: not a model written by gprec export (no gprec metadata)")
        fields = json.loads(meta.get(META + "fields", "[]"))
        if fields != [f.name for f in run.fields] or scorer.n_fields != len(run.fields):
            raise ConfigError(
                f"{path}: exported for the fields {fields}, not {run.path}'s; export it again"
            )
        if meta[META + "checkpoint_sha256"] != checkpoint_digest(run.path):
            raise ConfigError(
                f"{path}: exported from other weights than {run.path}/model.pt; export it again "
                f"(gprec export {run.path} --format onnx --overwrite)"
            )
        return scorer

    def __call__(self, X: np.ndarray, batch_size: int = SCORE_ROWS) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.int64)
        if len(X) == 0:
            return np.zeros(0, dtype=np.float32)
        out = [
            self.session.run([OUTPUT], {INPUT: X[i : i + batch_size]})[0]
            for i in range(0, len(X), batch_size)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)


def checkpoint_digest(run_dir: Path) -> str:
    h = hashlib.sha256()
    with open(Path(run_dir) / "model.pt", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_metadata(run) -> dict[str, str]:
    from gprec import __version__

    return {
        META + "version": __version__,
        META + "model": str(run.config.model["name"]),
        META + "task": run.task.name,
        META + "output": OUTPUTS.get(run.task.name, run.task.name),
        META + "fields": json.dumps([f.name for f in run.fields]),
        META + "checkpoint_sha256": checkpoint_digest(run.path),
    }


def check_rows(fields, n: int = CHECK_ROWS, seed: int = 0) -> np.ndarray:
    """`n` rows of random valid codes (the unseen index 0 included) and 64 of them again."""
    rng = np.random.default_rng(seed)
    X = np.stack([rng.integers(0, f.cardinality, n) for f in fields], axis=1).astype(np.int64)
    return np.concatenate([X, X[: min(64, n)]])


@dataclass
class ExportSummary:
    path: Path
    bytes: int
    check_rows: int
    max_abs_diff: float
    output: str


def refuse_existing(out: Path, overwrite: bool) -> None:
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; give a file to write")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise ConfigError(f"{out}: exists; pass --overwrite to replace it")


def export_run(run, out: str | Path | None = None, overwrite: bool = False) -> ExportSummary:
    """Export `run` (a `LoadedRun`) to `out` (default `RUN_DIR/model.onnx`), checked against
    the run's own predictions first; an existing file is replaced only with `overwrite`."""
    from gprec.io import write_bytes_atomic

    out = Path(out) if out is not None else run.path / ONNX_FILE
    refuse_existing(out, overwrite)
    data = export_model(run.model, run.task.transform, len(run.fields), run_metadata(run))
    X = check_rows(run.fields)
    diff = float(np.abs(OnnxScorer(data, threads=1)(X) - run.predict(X)).max())
    if not diff <= TOLERANCE:  # NaN fails too
        raise ConfigError(
            f"the exported model's scores differ from the run's by {diff:.3g} (more than "
            f"{TOLERANCE:g}) on {len(X)} check rows; nothing written"
        )
    refuse_existing(out, overwrite)  # again: the export took a while
    write_bytes_atomic(out, data)
    return ExportSummary(out, len(data), len(X), diff, OUTPUTS.get(run.task.name, run.task.name))
