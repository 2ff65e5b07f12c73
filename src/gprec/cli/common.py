"""Arguments shared by several commands."""

from __future__ import annotations

import argparse
import sys


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML config (default: built-in synthetic data + MLP)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.001 (repeatable)",
    )


def echo(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
