"""`gprec data synth|inspect`."""

from __future__ import annotations

import json

from gprec.cli.common import add_config_args, output_dir
from gprec.config import load_config


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="make or inspect datasets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    s = dsub.add_parser("synth", help="write a synthetic dataset with planted user groups")
    s.add_argument("--out", "-o", required=True, help="directory to create")
    s.add_argument("--users", type=int, default=2000)
    s.add_argument("--items", type=int, default=500)
    s.add_argument("--interactions", type=int, default=100_000)
    s.add_argument("--groups", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(handler=handle_synth)

    i = dsub.add_parser("inspect", help="print statistics of the configured dataset")
    add_config_args(i)
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(handler=handle_inspect)


def handle_synth(args) -> int:
    from gprec.data.synth import SynthConfig, write_dataset

    out = output_dir(args.out)
    cfg = SynthConfig(
        n_users=args.users,
        n_items=args.items,
        n_interactions=args.interactions,
        n_groups=args.groups,
        seed=args.seed,
    )
    schema = write_dataset(cfg, out, overwrite=args.overwrite)
    print(
        f"wrote {cfg.n_interactions} interactions; train on it with data.source=generic data.path={schema}"
    )
    return 0


def handle_inspect(args) -> int:
    from gprec.data.dataset import load_dataset

    cfg = load_config(args.config, args.overrides)
    ds = load_dataset(cfg.data, cfg.split_seed())
    summary = ds.summary()
    summary["unseen_rate"] = {
        s: {
            f.name: float((ds.X[s][:, j] == 0).mean()) if ds.size(s) else 0.0
            for j, f in enumerate(ds.fields)
        }
        for s in ("valid", "test")
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"dataset {summary['name']}")
    for s, info in summary["splits"].items():
        print(f"  {s:5s} {info['rows']:>10,d} rows, positive rate {info['positive_rate']:.4f}")
    print(
        f"  {'field':14s} {'role':9s} {'cardinality':>11s} {'unseen(valid)':>14s} {'unseen(test)':>13s}"
    )
    for f in summary["fields"]:
        uv, ut = (
            summary["unseen_rate"]["valid"][f["name"]],
            summary["unseen_rate"]["test"][f["name"]],
        )
        print(f"  {f['name']:14s} {f['role']:9s} {f['cardinality']:>11,d} {uv:>14.4f} {ut:>13.4f}")
    return 0
