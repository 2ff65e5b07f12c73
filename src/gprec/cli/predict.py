"""`gprec predict RUN_DIR --input FILE`: a finished run's scores of new raw rows
(`gprec.serving.predict`)."""

from __future__ import annotations

from gprec.cli.common import add_overwrite, add_rebuild_catalogue

# The library's default (gprec.serving.predict.DEFAULT_BATCH_ROWS), spelled out so that --help
# imports nothing heavy.
DEFAULT_BATCH_ROWS = 100_000


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="score raw rows (CSV or Parquet) with a finished run",
        description="Encode the rows of a CSV or Parquet file with a finished run's "
        "vocabularies and write them back with a `score` column: the run's prediction (a "
        "probability for binary, a rating for regression, a ranking score for implicit). The "
        "columns are the run's fields: the user and item ids (e.g. user_id, item_id) and any "
        "context fields are required; user and item feature fields may be left out, and are "
        "then looked up by the ids in the run's catalogue. Values unseen in training get the "
        "unseen index and are counted, one warning per field. The file is read, scored and "
        "written in batches, so it may be larger than memory.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("--input", "-i", required=True, help="rows to score: .csv, .tsv or .parquet")
    p.add_argument(
        "--output",
        "-o",
        help="where to write the rows with their score (.csv or .parquet; written whole or not "
        "at all); default: CSV on standard output",
    )
    p.add_argument(
        "--batch-rows",
        type=int,
        default=DEFAULT_BATCH_ROWS,
        metavar="N",
        help=f"rows read, encoded and written at a time (default {DEFAULT_BATCH_ROWS:,d})",
    )
    p.add_argument(
        "--engine",
        default="torch",
        metavar="ENGINE",
        help="what scores the encoded rows: torch (the run's model, default) or onnx (the "
        "model gprec export wrote, through onnxruntime; the same scores within 1e-5)",
    )
    p.add_argument(
        "--onnx",
        metavar="FILE",
        help="the exported model for --engine onnx (default: RUN_DIR/model.onnx)",
    )
    add_overwrite(p)
    add_rebuild_catalogue(p)
    p.set_defaults(handler=handle)


def handle(args) -> int:
    import sys

    from gprec.cli.common import at_least_one, echo, output_file
    from gprec.serving.predict import Predictor, predict_file
    from gprec.serving.tables import file_format

    at_least_one(args.batch_rows, "--batch-rows")
    file_format(args.input, "input")
    if args.output is not None:
        output_file(args.output, ".csv or .parquet", overwrite=args.overwrite)
        file_format(args.output, "output")
    predictor = Predictor.open(
        args.run_dir, args.rebuild_catalogue, engine=args.engine, onnx=args.onnx
    )
    if args.output is None:
        sys.stdout.flush()
        summary = predict_file(predictor, args.input, sys.stdout.buffer, args.batch_rows)
        sys.stdout.buffer.flush()
    else:
        summary = predict_file(predictor, args.input, args.output, args.batch_rows)
    for line in summary.warnings():
        echo(f"gprec: warning: {args.input}: {line}")
    if summary.output is not None:
        echo(f"wrote {summary.rows:,d} scored rows to {summary.output}")
    return 0
