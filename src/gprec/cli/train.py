"""`gprec train`: one run, written to a run directory."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from gprec.cli.common import add_config_args, echo, output_dir

# How gloo reports a process that went away (its socket closed) to those waiting on it.
LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train one model and write a run directory")
    add_config_args(p)
    p.add_argument("--out", "-o", help="run directory (default: runs/<model>-<time>)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier gprec run in --out (its files only; other files are never "
        "deleted), or retrain a finished one",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted or failed run in --out from its last epoch's checkpoint, "
        "and fail if it has none (without this flag such a run is resumed when it can be, "
        "else trained from scratch)",
    )
    how.add_argument(
        "--restart",
        action="store_true",
        help="train an interrupted or failed run in --out again from scratch instead of "
        "resuming it",
    )
    p.set_defaults(handler=handle)


def handle(args) -> int:
    # Imported here: torch and the data stack take seconds, and `--help` needs neither.
    from gprec.config import load_config
    from gprec.errors import ConfigError
    from gprec.training.distributed import Abort, session
    from gprec.training.run import run_training

    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite contradict: --overwrite trains from scratch")
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out: the run directory to resume")
    cfg = load_config(args.config, args.overrides)
    if args.out is not None:
        out = output_dir(args.out)
    else:
        default = Path("runs") / f"{cfg.model['name']}-{time.strftime('%Y%m%d-%H%M%S')}"
        out = output_dir(default, "run directory")
    resume = "require" if args.resume else "never" if args.restart else "auto"
    # Under torchrun (several processes: docs/distributed.md) one process group for the run;
    # without it, one process as ever.
    with session(cfg.train.device) as dist:
        if not dist.is_main():  # rank 0 alone warns (about the data ...)
            logging.getLogger("gprec").setLevel(logging.ERROR)
        out = dist.broadcast(out)  # the default name holds the time: rank 0's
        try:
            metrics = run_training(
                cfg, out, echo if dist.is_main() else None, overwrite=args.overwrite,
                resume=resume, dist=dist,
            )  # fmt: skip
        except Abort:
            return 2  # rank 0 has reported the error
        except RuntimeError as e:
            # Another process stopped (its own message says why) while this one waited for it
            # in a collective: one line, not the collective's traceback.
            if not dist.active or not any(m in str(e) for m in LOST_PEER):
                raise
            print(
                f"gprec: error: process {dist.rank} lost its connection to the others: one of "
                "them stopped (see its message)",
                file=sys.stderr,
            )
            return 2
    if not dist.is_main():
        return 0
    test = " ".join(f"{k} {v:.4f}" for k, v in metrics["test"].items())
    monitor = metrics["monitor"]
    print(
        f"test {test} | valid {monitor} {metrics['valid'][monitor]:.4f} "
        f"| {metrics['epochs_run']} epochs, {metrics['train']['samples_per_second'] / 1000:.0f}k samples/s | {out}"
    )
    return 0
