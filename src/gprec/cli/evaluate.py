"""`gprec evaluate RUN_DIR`: a finished run's test metrics, overall and per slice (user activity,
item popularity), written beside the run (`gprec.evaluation.slices`). The slice options are
shared with `gprec compare --slices`."""

from __future__ import annotations

# The library's defaults (gprec.evaluation.slices.DEFAULT_EDGES; a test keeps them equal),
# spelled out here so that `--help` imports nothing heavy.
DEFAULT_USER_BUCKETS = "20,50,150"
DEFAULT_ITEM_BUCKETS = "20,100,500"
SLICE_NAMES = "user_activity,item_popularity"


def add_slice_args(p, slices_help: str) -> None:
    p.add_argument("--slices", metavar="NAMES", help=slices_help)
    p.add_argument(
        "--user-buckets", metavar="EDGES",
        help="upper edges (inclusive) of the user_activity buckets, counted in training "
        f"interactions of the row's user (default: {DEFAULT_USER_BUCKETS}: 0-20, 21-50, "
        "51-150, 151+; unseen users count 0)",
    )  # fmt: skip
    p.add_argument(
        "--item-buckets", metavar="EDGES",
        help="upper edges (inclusive) of the item_popularity buckets, counted in training "
        f"interactions of the row's item (default: {DEFAULT_ITEM_BUCKETS}: 0-20, 21-100, "
        "101-500, 501+; unseen items count 0)",
    )  # fmt: skip


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="a finished run's test metrics, overall and per bucket of user activity and item "
        "popularity",
        description="Reload a finished run (gprec.training.load.load_run) and its data through "
        "its own config (the same split; the cache when it is there), and print its test "
        "metrics overall (equal to its metrics.json) and per bucket of each slice: "
        "user_activity (the training interactions of the row's user) and item_popularity (of "
        "the row's item). Rows whose user or item is unseen in training count 0: the lowest "
        "bucket. Writes slices.md|csv|json beside the run (RUN_DIR-slices), never into it.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    add_slice_args(p, f"comma-separated slices (default: {SLICE_NAMES})")
    p.add_argument("--out", "-o", help="output directory (default: RUN_DIR-slices beside the run)")
    p.set_defaults(handler=handle)


def default_out(run_dir):
    """`RUN_DIR-slices` beside the run: a run directory holds only what training wrote, so
    that `gprec train --overwrite` may replace it whole."""
    from pathlib import Path

    run_dir = Path(run_dir).resolve()
    return run_dir.with_name(f"{run_dir.name}-slices")


def check_out(out, run_dir) -> None:
    """Refuse writing into the run directory or anywhere under it."""
    from pathlib import Path

    from gprec.errors import ConfigError

    out, run = Path(out).resolve(), Path(run_dir).resolve()
    if out == run or run in out.parents:
        raise ConfigError(
            f"--out {out} is inside the run directory {run}: it holds only what training wrote "
            "(extra files make gprec train --overwrite refuse it); pick another"
        )


def handle(args) -> int:
    from gprec.cli.common import echo, output_dir
    from gprec.evaluation.slices import (
        matches_recorded,
        run_markdown,
        slice_run,
        slice_settings,
        write_run_slices,
    )
    from gprec.training.load import load_run

    slices = slice_settings(
        args.slices if args.slices is not None else SLICE_NAMES,
        args.user_buckets,
        args.item_buckets,
    )
    out = output_dir(args.out if args.out is not None else default_out(args.run_dir))
    check_out(out, args.run_dir)
    run = load_run(args.run_dir)
    result = slice_run(run, slices)
    files = write_run_slices(result, out)
    print(run_markdown(result))
    if result["recorded"] is not None and not matches_recorded(result):
        echo(
            f"warning: the overall test metrics differ from {run.path}/metrics.json by up to "
            f"{result['recorded_difference']:.1e}: the data, gprec or the device changed since "
            "the run was trained"
        )
    for f in files:
        print(f"wrote {f}")
    return 0
