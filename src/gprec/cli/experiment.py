"""`gprec experiment ablation|sweep`: the paper's studies, each a grid of runs with a report."""

from __future__ import annotations

import time
from pathlib import Path

from gprec.cli.common import add_config_args, echo, output_dir

SEEDS_HELP = "a count (5) or a list (1,2,3); default 5"
OUT_HELP = "experiment directory, one run directory per point and seed (default: runs/{}-<time>)"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "experiment", help="the GPRec paper's studies: ablation of GPRec, sweep of a config key"
    )
    studies = p.add_subparsers(dest="study", required=True, metavar="STUDY")

    a = studies.add_parser(
        "ablation",
        help="a GPRec config and its ablations GPRec-1..5 over seeds: table and bar chart",
        description="Train the GPRec model of --config and its ablations GPRec-1 (single group "
        "embeddings, softmax over groups), GPRec-2 (no r_P), GPRec-3/4/5 (no L_G / L_con / L_O) "
        "with every seed; write ablation.md|csv|json (each variant's test metrics, its "
        "difference to the full model with the paired and Welch tests) and ablation.png. "
        "Finished runs are reused.",
    )
    add_config_args(a)
    a.add_argument("--seeds", "-s", default="5", help=SEEDS_HELP)
    a.add_argument("--out", "-o", help=OUT_HELP.format("ablation"))
    a.add_argument("--title", help="title of the table and the figure")
    a.set_defaults(handler=handle_ablation)

    s = studies.add_parser(
        "sweep",
        help="one config key over a list of values, over seeds: table and line plot",
        description="Train the model of --config once per value of --param and seed, and the "
        "bare backbone (when the model wraps one) with the same seeds as the reference; write "
        "sweep.md|csv|json and sweep.png (each metric against the value, std over seeds as "
        "error bars, the backbone as a line). Finished runs are reused.",
    )
    add_config_args(s)
    s.add_argument(
        "--param", "-p", required=True, metavar="KEY", help="a dotted config key, e.g. model.tau"
    )
    s.add_argument(
        "--values",
        required=True,
        metavar="V1,V2,...",
        help="comma-separated values, each read as YAML (3 int, 0.5 float, true bool)",
    )
    s.add_argument("--seeds", "-s", default="5", help=SEEDS_HELP)
    s.add_argument("--out", "-o", help=OUT_HELP.format("sweep-<key>"))
    s.add_argument("--title", help="title of the table and the figure")
    s.set_defaults(handler=handle_sweep)


def _base(args):
    """The config of --config and --set, validated, with its source and the seeds."""
    # Imported here: torch, scipy and the data stack take seconds, and `--help` needs none.
    from gprec.config import apply_overrides, config_source, parse_config, read_configs
    from gprec.experiments.grid import parse_seeds

    source = config_source(args.config)
    base_raw = apply_overrides(read_configs(args.config), args.overrides)
    base_seed = parse_config(base_raw, source, args.overrides).train.seed
    return base_raw, source, parse_seeds(args.seeds, base_seed)


def _out(args, default_name: str) -> Path:
    if args.out is not None:
        return output_dir(args.out)
    default = Path("runs") / f"{default_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return output_dir(default, "experiment directory")


def handle_ablation(args) -> int:
    from gprec.experiments.ablation import run_ablation

    base_raw, source, seeds = _base(args)
    out = _out(args, "ablation")
    run_ablation(base_raw, source, seeds, out, echo, args.overrides, args.title)
    print((out / "ablation.md").read_text())
    return 0


def handle_sweep(args) -> int:
    from gprec.experiments.grid import safe_dirname
    from gprec.experiments.sweep import run_sweep

    base_raw, source, seeds = _base(args)
    out = _out(args, f"sweep-{safe_dirname(args.param)}")
    run_sweep(
        base_raw, source, args.param, args.values, seeds, out, echo, args.overrides, args.title
    )
    print((out / "sweep.md").read_text())
    return 0
