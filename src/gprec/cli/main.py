"""Entry point: `gprec <command>`. User errors print one line and exit 2, without a traceback."""

from __future__ import annotations

import argparse
import logging
import sys

from gprec import __version__
from gprec.cli import cache, compare, config_cmd, data, models, train
from gprec.errors import GprecError

COMMANDS = (train, compare, data, models, config_cmd, cache)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gprec",
        description="Deep recommenders with group- and individual-level user modeling.",
    )
    parser.add_argument("--version", action="version", version=f"gprec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args) or 0
    except GprecError as e:
        print(f"gprec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gprec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
