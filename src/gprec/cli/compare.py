"""`gprec compare`: models x seeds, with a significance table."""

from __future__ import annotations

import time
from pathlib import Path

from gprec.cli.common import add_config_args, echo, output_dir
from gprec.cli.evaluate import SLICE_NAMES, add_slice_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="run several models over several seeds and test the differences"
    )
    add_config_args(p)
    p.add_argument(
        "--models",
        "-m",
        required=True,
        help="comma-separated: mlp, mlp[dropout=0.2], or path/to/model.yaml "
        "(quote the list in zsh: 'mlp,mlp[dropout=0.2]')",
    )
    p.add_argument("--seeds", "-s", default="5", help="a count (5) or a list (1,2,3); default 5")
    p.add_argument("--out", "-o", help="experiment directory (default: runs/compare-<time>)")
    p.add_argument("--title", default="Comparison", help="title of the Markdown table")
    p.add_argument(
        "--baseline",
        "-b",
        action="append",
        metavar="MODEL",
        help="a model of --models to test the others against (repeatable: the baseline is then "
        "the one with the best validation AUC); adds the pre-specified test of the best other "
        "model on validation AUC against it",
    )
    add_slice_args(
        p,
        f"also slice every run's test metrics ({SLICE_NAMES}) and write slices.md|csv|json: "
        "per bucket each model against the baseline (--baseline's chosen one, else the first "
        "model), paired by seed",
    )
    p.set_defaults(handler=handle)


def handle(args) -> int:
    # Imported here: torch, scipy and the data stack take seconds, and `--help` needs none.
    from gprec.config import apply_overrides, config_source, parse_config, read_configs
    from gprec.evaluation.slices import slice_settings
    from gprec.experiments.compare import (
        parse_model_spec,
        parse_seeds,
        run_comparison,
        split_top_level,
    )

    base_raw = apply_overrides(read_configs(args.config), args.overrides)
    base_seed = parse_config(base_raw, config_source(args.config), args.overrides).train.seed
    specs = [parse_model_spec(s) for s in split_top_level(args.models)]
    seeds = parse_seeds(args.seeds, base_seed)
    slices = slice_settings(args.slices, args.user_buckets, args.item_buckets)
    if args.out is not None:
        out = output_dir(args.out)
    else:
        default = Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
        out = output_dir(default, "experiment directory")
    run_comparison(
        base_raw, specs, seeds, out, echo, args.title, args.overrides, args.baseline, slices
    )
    print((out / "comparison.md").read_text())
    if slices:
        print((out / "slices.md").read_text())
    return 0
