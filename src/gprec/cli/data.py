"""`gprec data synth|inspect`."""

from __future__ import annotations

import json
import shlex

from gprec.cli.common import add_config_args, output_dir
from gprec.errors import ConfigError

# SynthConfig field -> (flag, default, help). The defaults repeat SynthConfig's (a test
# checks) so that building the parser does not import numpy and polars via gprec.data.synth.
SYNTH_FLAGS = {
    "n_users": ("--users", 2000, "number of users"),
    "n_items": ("--items", 500, "number of items"),
    "n_interactions": (
        "--interactions",
        100_000,
        "number of interactions, each a distinct user-item pair: at most half of users x items",
    ),
    "n_groups": ("--groups", 8, "number of planted user groups (a user is in 1 to 3 of them)"),
    "seed": (
        "--seed",
        0,
        "generator seed, 0 .. 2**32-1: the same settings and seed give the same files",
    ),
}
# What write_dataset writes; --overwrite replaces a directory holding nothing else.
SYNTH_FILES = frozenset({"schema.yaml", "interactions.csv", "users.csv", "items.csv"})


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="make or inspect datasets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    s = dsub.add_parser(
        "synth",
        help="write a synthetic dataset with planted user groups",
        description="Write a synthetic CTR dataset whose users belong to planted groups: "
        "interactions.csv, users.csv, items.csv and a schema.yaml that `gprec train` reads "
        "with data.source=generic. The same settings give the same files, byte for byte.",
    )
    s.add_argument(
        "--out",
        "-o",
        required=True,
        help="directory to write; it must not exist or be empty (see --overwrite)",
    )
    for field, (flag, default, text) in SYNTH_FLAGS.items():
        s.add_argument(
            flag, dest=field, type=int, default=default, help=f"{text} (default: %(default)s)"
        )
    s.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a synthetic dataset already in --out (never a directory holding other files)",
    )
    s.set_defaults(handler=handle_synth)

    i = dsub.add_parser("inspect", help="print statistics of the configured dataset")
    add_config_args(i)
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(handler=handle_inspect)


def handle_synth(args) -> int:
    from gprec.data.synth import SynthConfig, SynthConfigError, write_dataset

    values = {field: getattr(args, field) for field in SYNTH_FLAGS}
    try:
        cfg = SynthConfig(**values)
    except SynthConfigError as e:
        flag = SYNTH_FLAGS[e.field][0] if e.field in SYNTH_FLAGS else e.field
        value = f" {values[e.field]}" if e.field in values else ""
        names = {f: spec[0] for f, spec in SYNTH_FLAGS.items()}
        raise ConfigError(f"{flag}{value}: {e.message(lambda f: names.get(f, f))}") from None
    out = output_dir(args.out)
    _check_replaceable(out, args.overwrite)
    try:
        schema = write_dataset(cfg, out, overwrite=args.overwrite)
    except OSError as e:  # e.g. the disk filled up; write_dataset removed its partial files
        raise ConfigError(f"--out {out}: cannot write the dataset ({e.strerror})") from None
    schema = schema.resolve()
    print(
        f"wrote {cfg.n_interactions} interactions of {cfg.n_users} users and {cfg.n_items} "
        f"items to {schema.parent}\ntrain on it with:\n  gprec train --set data.source=generic "
        f"--set {shlex.quote(f'data.path={schema}')}"
    )
    return 0


def _check_replaceable(out, overwrite: bool) -> None:
    """Refuse a non-empty --out unless --overwrite, and never replace files synth did not write."""
    if not out.is_dir():
        return
    try:
        present = sorted(p.name for p in out.iterdir())
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot list the directory ({e.strerror})") from None
    if not present:
        return
    foreign = [name for name in present if name not in SYNTH_FILES]
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise ConfigError(
            f"--out {out}: directory is not empty ({shown}); choose a new or empty directory "
            "(--overwrite replaces only a dataset written by gprec data synth)"
        )
    if not overwrite:
        raise ConfigError(
            f"--out {out}: directory is not empty: it holds a synthetic dataset; "
            "pass --overwrite to replace it"
        )


def handle_inspect(args) -> int:
    from gprec.config import load_config
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
