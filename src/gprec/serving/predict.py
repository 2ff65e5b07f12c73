"""Scores of new raw rows from a finished run: the task's prediction of each row (the
probability of a click for `binary`, the rating for `regression`, the ranking score, a logit,
for `implicit`), the numbers the run's own evaluation computed for its test rows.

`Predictor` is the reusable part (a loaded run, its encoder and catalogue): `score(frame)` of a
polars DataFrame, `predict_frame(frame)` with the `score` column added. `predict_file` scores a
CSV or Parquet file batch by batch (`batch_rows` rows read, encoded and scored at a time, so a
file larger than memory works) and writes the input's columns plus `score`, to a file
atomically or to a stream. Values unseen in training are counted per field over the whole
input (`PredictSummary.warnings`: one line per field). Which columns the input needs:
`gprec.serving.encode`. The engine that scores the encoded rows (`Predictor.scorer`): the run's
torch model, or with `engine="onnx"` the model `gprec export` wrote, through onnxruntime
(`gprec.serving.export.OnnxScorer`; the same numbers within 1e-5).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa

from gprec.errors import ConfigError, DataError
from gprec.io import atomic_path
from gprec.serving.catalogue import CATALOGUE, Catalogue, catalogue_of
from gprec.serving.encode import EncodedRows, InputPlan, RowEncoder
from gprec.serving.tables import TableWriter, file_format, open_table

SCORE = "score"
DEFAULT_BATCH_ROWS = 100_000  # rows read, encoded and written at a time
SCORE_ROWS = 65536  # rows in one forward pass: LoadedRun.predict's default batch
ENGINES = ("torch", "onnx")


@dataclass
class Unseen:
    """Rows of a field whose value the run's vocabulary lacks, and the first such value."""

    rows: int = 0
    example: str | None = None


@dataclass
class PredictSummary:
    rows: int = 0
    batches: int = 0
    unseen: dict[str, Unseen] = field(default_factory=dict)
    joined: dict[str, str] = field(default_factory=dict)  # feature field -> key it came by
    output: Path | None = None

    def add(self, encoded: EncodedRows) -> None:
        self.rows += len(encoded.X)
        self.batches += 1
        for name, count in encoded.unseen.items():
            entry = self.unseen.setdefault(name, Unseen(0, encoded.examples[name]))
            entry.rows += count

    def warnings(self) -> list[str]:
        """One line per field with unseen values."""
        lines = []
        for name, entry in self.unseen.items():
            also = [f for f, key in self.joined.items() if key == name]
            tail = f"; so are their {', '.join(also)}, looked up by {name}" if also else ""
            lines.append(
                f"field {name!r}: {entry.rows:,d} of {self.rows:,d} rows have a value unseen in "
                f"training (first: {entry.example!r}), scored with the unseen index{tail}"
            )
        return lines


class Predictor:
    """A loaded run (`load_run`) ready to score raw rows; `scorer` (encoded rows -> the task's
    predictions): the run's own model by default."""

    def __init__(self, run, catalogue: Catalogue | None = None, scorer=None):
        self.run = run
        self.catalogue = catalogue
        self.encoder = RowEncoder(run, catalogue)
        self._scorer = scorer

    @property
    def scorer(self):
        """`scorer(X, batch_size)`: the task's predictions of encoded rows (float32)."""
        return self._scorer or self.run.predict

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        rebuild_catalogue: bool = False,
        engine: str = "torch",
        onnx: str | Path | None = None,
    ) -> Predictor:
        """The finished run in `run_dir`; its catalogue when it has one (a run trained before
        gprec kept it has none: its inputs must then give every field). `engine="onnx"`
        scores with the exported model `onnx` (default `RUN_DIR/model.onnx`)."""
        from gprec.training.load import load_run

        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; available: {', '.join(ENGINES)}")
        if onnx is not None and engine != "onnx":
            raise ConfigError("an ONNX model is scored only with the onnx engine (--engine onnx)")
        run = load_run(run_dir)
        scorer = None
        if engine == "onnx":
            from gprec.serving.export import ONNX_FILE, OnnxScorer

            scorer = OnnxScorer.open(onnx if onnx is not None else run.path / ONNX_FILE, run)
        has = (Path(run_dir) / CATALOGUE).is_file()
        catalogue = catalogue_of(run, rebuild_catalogue) if has or rebuild_catalogue else None
        return cls(run, catalogue, scorer)

    def plan(self, columns: list[str], source: str = "the input") -> InputPlan:
        if SCORE in columns:
            raise DataError(f"{source}: already has a column {SCORE!r}; rename or drop it")
        return self.encoder.plan(columns, source)

    def encode(self, frame: pl.DataFrame, plan: InputPlan | None = None) -> EncodedRows:
        return self.encoder.encode(frame, plan or self.plan(frame.columns))

    def score(
        self, frame: pl.DataFrame, plan: InputPlan | None = None
    ) -> tuple[np.ndarray, EncodedRows]:
        """The task's predictions of `frame`'s rows (float32) and the encoded rows."""
        encoded = self.encode(frame, plan)
        return self.scorer(encoded.X, batch_size=SCORE_ROWS), encoded

    def predict_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` with the `score` column added."""
        scores, _ = self.score(frame)
        return frame.with_columns(pl.Series(SCORE, scores))


def predict_file(
    predictor: Predictor,
    input: str | Path,
    output: str | Path | BinaryIO,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> PredictSummary:
    """Score every row of `input` (CSV or Parquet) and write its columns plus `score` to
    `output`: a path (CSV or Parquet by its suffix; written atomically: complete or not at all)
    or a binary stream (CSV). Nothing is written when the input lacks a column or has no rows."""
    input = Path(input)
    reader = open_table(input, batch_rows)
    plan = predictor.plan(reader.columns, str(input))
    if isinstance(output, (str, Path)):
        output = Path(output)
        fmt = file_format(output, "output")
        if output.resolve() == input.resolve():
            raise DataError("the output is the input file; write the scores elsewhere", path=output)
        with atomic_path(output) as tmp:
            summary = _write(predictor, reader, plan, str(tmp), fmt)
        summary.output = output
        return summary
    return _write(predictor, reader, plan, output, "csv")


def _write(predictor, reader, plan, sink, fmt) -> PredictSummary:
    summary = PredictSummary(joined=dict(plan.joined))
    writer = TableWriter(sink, fmt)

    def encoded_batches():
        for table in reader.batches():
            encoded = predictor.encode(pl.from_arrow(table.select(list(plan.from_input))), plan)
            summary.add(encoded)
            yield table, encoded.X

    try:
        for table, scores in score_in_chunks(encoded_batches(), predictor.scorer):
            writer.write(table.append_column(SCORE, pa.array(scores)))
    finally:
        writer.close()
    if summary.rows == 0:
        raise DataError("no data rows", path=reader.path)
    return summary


def score_in_chunks(pieces, score, chunk: int = SCORE_ROWS):
    """`(payload, scores)` for each `(payload, X)` of `pieces`, in order, with `score` (e.g.
    `LoadedRun.predict`) called on `chunk` rows at a time at fixed offsets of the whole stream
    (the last call takes the rest): the scores are then the same numbers however the stream is
    cut into pieces, and equal to `score` of all rows at once cut into `chunk`s, which is what
    `LoadedRun.predict` does (a float32 matrix product's rounding can depend on how many rows
    it multiplies, so scoring each piece alone would not be)."""
    waiting: deque = deque()  # (payload, rows) not yet written
    xs: list[np.ndarray] = []  # encoded rows not yet scored
    unscored = 0
    scored: list[np.ndarray] = []  # scores not yet handed out
    n_scored = 0

    def ready():
        nonlocal scored, n_scored
        while waiting and waiting[0][1] <= n_scored:
            payload, n = waiting.popleft()
            if len(scored) > 1:  # once per chunk scored: the rest are views of it
                scored = [np.concatenate(scored)]
            yield payload, scored[0][:n]
            scored, n_scored = [scored[0][n:]], n_scored - n

    for payload, X in pieces:
        waiting.append((payload, len(X)))
        xs.append(X)
        unscored += len(X)
        while unscored >= chunk:
            rows = np.concatenate(xs) if len(xs) != 1 else xs[0]
            scored.append(np.asarray(score(rows[:chunk]), dtype=np.float32))
            n_scored += chunk
            xs, unscored = [rows[chunk:]], unscored - chunk
            yield from ready()
    if unscored:
        scored.append(np.asarray(score(np.concatenate(xs)), dtype=np.float32))
        n_scored += unscored
    yield from ready()
