"""`gprec export RUN_DIR --format onnx`: a finished run's scoring path as an ONNX model
(`gprec.serving.export`)."""

from __future__ import annotations

# gprec.serving.export's, spelled out so that --help imports nothing heavy.
FORMATS = ("onnx",)
ONNX_FILE = "model.onnx"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a finished run's scoring path (ONNX) for other runtimes",
        description="Export the scoring path of a finished run: encoded rows (int64, batch x "
        "the run's fields in order) to the task's prediction (a probability for binary, a "
        "rating for regression, a ranking score for implicit), with a dynamic batch axis. "
        "onnxruntime's scores of check rows must equal the run's within 1e-5 before the file "
        "is written (atomically). Score raw rows with it: gprec predict RUN_DIR --engine onnx. "
        "Needs onnx, onnxscript and onnxruntime (pip install -e '.[export]').",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument(
        "--format", "-f", required=True, metavar="FORMAT", help=f"one of: {', '.join(FORMATS)}"
    )
    p.add_argument(
        "--out", "-o", metavar="FILE", help=f"the file to write (default: RUN_DIR/{ONNX_FILE})"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (else refused)"
    )
    p.set_defaults(handler=handle)


def handle(args) -> int:
    from pathlib import Path

    from gprec.cli.common import echo
    from gprec.errors import ConfigError

    if args.format not in FORMATS:
        raise ConfigError(f"unknown --format {args.format!r}; available: {', '.join(FORMATS)}")
    if args.out is not None and not args.out.strip():
        raise ConfigError("--out is empty: give a file")
    out = Path(args.out) if args.out is not None else Path(args.run_dir) / ONNX_FILE

    from gprec.serving.export import (
        EXPORT_PACKAGES,
        OPSET,
        export_run,
        refuse_existing,
        require,
    )
    from gprec.training.load import load_run

    require(EXPORT_PACKAGES, "gprec export --format onnx")
    run = load_run(args.run_dir)
    refuse_existing(out, args.overwrite)
    s = export_run(run, out, overwrite=args.overwrite)
    fields = ", ".join(f.name for f in run.fields)
    echo(
        f"wrote {s.path} ({s.bytes / 1024:,.0f} KiB, ONNX opset {OPSET}): rows int64 "
        f"[batch, {len(run.fields)}] ({fields}) -> score float32 [batch] ({s.output}); "
        f"onnxruntime equals torch within {s.max_abs_diff:.2g} on {s.check_rows} check rows"
    )
    return 0
