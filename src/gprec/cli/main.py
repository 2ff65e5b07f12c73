"""Entry point: `gprec <command>`. User errors print one line and exit 2, without a traceback.

Command modules import only argparse-level code at the top; torch, polars, scipy
and scikit-learn are imported inside the handlers, so `gprec --help` is instant.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

from gprec import __version__
from gprec.cli import (
    cache,
    compare,
    config_cmd,
    data,
    evaluate,
    experiment,
    export,
    groups,
    models,
    predict,
    recommend,
    serve,
    train,
)
from gprec.errors import GprecError

COMMANDS = (train, evaluate, compare, experiment, data, models, config_cmd, cache, groups)
COMMANDS += (predict, recommend, serve, export)  # a finished run in use: gprec.serving

# OS errors a user's environment causes (where they point --out, a full disk): one line, no
# traceback. Anything else is a bug in gprec and keeps its traceback.
_USER_OS_ERRORS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
}


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
        code = args.handler(args) or 0
        sys.stdout.flush()  # inside the try: a closed pipe must surface here, not at exit
        return code
    except GprecError as e:
        print(f"gprec: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`gprec ... | head`): stop quietly, as other Unix tools do.
        # stdout is pointed at devnull so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe
    except MemoryError:
        print("gprec: error: out of memory: lower the sizes in the config", file=sys.stderr)
        return 2
    except RuntimeError as e:  # torch reports a failed allocation as a RuntimeError
        if "can't allocate memory" not in str(e) and "out of memory" not in str(e):
            raise
        print(f"gprec: error: out of memory ({str(e).splitlines()[0][:120]})", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in _USER_OS_ERRORS:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"gprec: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gprec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
