"""`gprec groups train`: train a group recommender on real groups and write its run directory."""

from __future__ import annotations

import time
from pathlib import Path

from gprec.cli.common import add_config_args, echo, output_dir


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a group recommender on group data (AGREE layout, ITM-Rec)",
        description="Train a per-user model on the members' and the groups' histories and "
        "test it on the groups' held-out choices (strict sampled ranking and full ranking, "
        "or group-rating RMSE); see configs/groups/.",
    )
    add_config_args(p)
    p.add_argument("--out", "-o", help="run directory (default: runs/groups-<model>-<time>)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier gprec run in --out (its files only), or retrain a finished one",
    )
    p.set_defaults(handler=handle)


def handle(args) -> int:
    from gprec.groups.train import load_group_config, run_group_training

    cfg = load_group_config(args.config or [], args.overrides)
    default = Path("runs") / f"groups-{cfg.model['name']}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = output_dir(args.out if args.out is not None else default, "--out")
    m = run_group_training(cfg, out, echo, overwrite=args.overwrite)
    t = m["test"]
    if "rmse" in t:
        test = f"rmse {t['rmse']:.4f} mae {t['mae']:.4f}"
    else:
        s, f = t["sampled"], t["full"]
        test = (
            f"hr@5 {s['hr@5']:.4f} ndcg@5 {s['ndcg@5']:.4f} hr@10 {s['hr@10']:.4f} "
            f"ndcg@10 {s['ndcg@10']:.4f} (sampled, strict) | full ndcg@10 {f['ndcg@10']:.4f}"
        )
    print(f"test {test} | score {m['score']} | {m['epochs_run']} epochs | {out}")
    return 0
