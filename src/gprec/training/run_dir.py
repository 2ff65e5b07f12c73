"""What a run directory holds, what state it is in, and when it may be written.

A run directory is claimed before anything is written into it, so that no
earlier run and no file of the user's is ever replaced silently:

- an empty or missing directory is used;
- a directory holding files that are not a gprec run's is refused, even with
  `overwrite` (gprec never deletes a user's own files);
- a run with a different config is refused, naming what differs, unless
  `overwrite` is given;
- a finished run with the same config is reported, not retrained (the CLI
  prints its metrics), unless `overwrite` is given;
- an interrupted or failed run with the same config is resumed from its `resume.pt`, or
  trained again from scratch without a usable one (`training.run.run_training` decides);
- a run that another live process is writing is always refused.

`status.json` says where a run stands: `running` (with the writer's pid and
host), `finished`, `failed` (with the error) or `interrupted`. A run killed
outright (SIGKILL, power loss) stays `running` with a pid that no longer
exists; `run_state` reads that as `interrupted`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gprec.errors import ConfigError, GprecError
from gprec.io import pid_alive, write_text_atomic

STATUS = "status.json"
CONFIG = "config.yaml"
METRICS = "metrics.json"
# Everything a run writes; --overwrite removes exactly these and nothing else.
RUN_FILES = (
    CONFIG,
    METRICS,
    "model.pt",
    "vocab.json",
    "user_groups.json",
    "log.jsonl",
    STATUS,
    "group_index.npz",  # gprec groups train: rows, memberships and seen items, for recommend
    "model.onnx",  # gprec export: stale once the run is retrained, so --overwrite removes it
    "catalogue.npz",  # gprec train: items, users' rows and training items (serving.catalogue)
    "resume.pt",  # gprec train, while it trains: the last epoch's state (training.resume)
)
# Keys that do not change what a run computes: a rerun that differs only here is the same run.
IGNORED_KEYS = ("data.cache_dir", "train.progress")


@dataclass
class RunDirState:
    """`kind` is one of new | finished | interrupted | failed | running | foreign."""

    path: Path
    kind: str
    differences: list[str] = field(default_factory=list)  # vs the config asked for
    foreign: list[str] = field(default_factory=list)  # files that are not a run's
    pid: int | None = None  # the writer, from status.json
    host: str | None = None


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """`status.json` as a mapping; None when it is missing or damaged (never an exception)."""
    try:
        status = json.loads((run_dir / STATUS).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's `metrics.json`; None when it is missing or damaged."""
    try:
        metrics = json.loads((run_dir / METRICS).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(metrics, dict) and all(k in metrics for k in ("test", "valid", "epochs_run"))
    return metrics if ok else None


def read_run_config(run_dir: Path) -> dict[str, Any] | None:
    """A run's resolved `config.yaml` as a mapping; None when it is missing or damaged."""
    try:
        config = yaml.safe_load((run_dir / CONFIG).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def write_status(run_dir: Path, state: str, **extra: Any) -> None:
    record = {
        "state": state,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    write_text_atomic(run_dir / STATUS, json.dumps(record, indent=1) + "\n")


def run_state(run_dir: Path) -> str:
    """new | finished | interrupted | failed | running, from the files alone."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "new"
    return _kind(read_status(run_dir), read_metrics(run_dir) is not None)


def _kind(status: dict[str, Any] | None, has_metrics: bool) -> str:
    """finished | interrupted | failed | running, from a run's status and its metrics."""
    if has_metrics:
        return "finished"
    if status is None:
        return "interrupted"  # left by an older gprec, or killed before its first status
    if status.get("state") == "running":
        if status.get("host") != socket.gethostname():
            return "running"  # a writer elsewhere cannot be checked: see claim_run_dir
        pid = status.get("pid")
        if not isinstance(pid, int) or pid == os.getpid() or not pid_alive(pid):
            return "interrupted"  # its writer is gone (or is this process, e.g. a test)
        return "running"
    # `finished` without readable metrics (deleted, damaged) is no finished run.
    return "failed" if status.get("state") == "failed" else "interrupted"


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key: old -> new` for every dotted key whose value differs, ignored keys left out."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        dotted = f"{prefix}{key}"
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if dotted in IGNORED_KEYS:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, dotted + ".")
        elif a != b:
            out.append(f"{dotted}: {a} -> {b}")
    return out


def require_finished_run(run_dir: str | Path, what: str = "") -> Path:
    """`run_dir` as a Path when it holds a finished run; else one `ConfigError` line (prefixed
    with `what`, e.g. `init_from: `): its weights could be those of an unfinished training."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{what}{run_dir}: no such run directory")
    state = run_state(run_dir)  # finished means metrics.json written, as everywhere else
    if state != "finished":
        raise ConfigError(
            f"{what}{run_dir}: not a finished run (status: {state}); its weights may be those "
            "of an unfinished training"
        )
    return run_dir


def with_current_defaults(old: dict[str, Any]) -> dict[str, Any]:
    """A run's config as this gprec would write it: an option added since the run was written
    takes its default, which is always the behaviour from before the option (so a run is not
    "another config" just because gprec learned a new option). One this gprec cannot read any
    more is compared as it is, and differs."""
    from gprec.config import dump_config, parse_config  # config is a leaf; keep this one light

    try:
        return yaml.safe_load(dump_config(parse_config(old, CONFIG)))
    except (GprecError, ValueError, TypeError):
        return old


def inspect_run_dir(run_dir: Path, config_text: str) -> RunDirState:
    """The state of `run_dir` relative to a run of the config `config_text` (resolved YAML)."""
    names = [p.name for p in run_dir.iterdir()] if run_dir.is_dir() else []
    if not names:
        return RunDirState(run_dir, "new")
    ours = [n for n in names if n in RUN_FILES or _is_our_temp(n)]
    foreign = sorted(n for n in names if n not in ours)
    if not ours:
        return RunDirState(run_dir, "foreign", foreign=foreign)
    status = read_status(run_dir) or {}
    kind = _kind(status or None, read_metrics(run_dir) is not None)
    writer = {"pid": status.get("pid"), "host": status.get("host")}
    if CONFIG not in ours:
        # Killed (or out of disk) before its config was written: nothing of value, no config to
        # compare, so it is trained over like an interrupted run of this config.
        kind = kind if kind == "running" else "interrupted"
        return RunDirState(run_dir, kind, [], foreign, **writer)
    old = read_run_config(run_dir)
    differences = (
        ["config.yaml: unreadable (damaged)"]
        if old is None
        else config_differences(with_current_defaults(old), yaml.safe_load(config_text))
    )
    return RunDirState(run_dir, kind, differences, foreign, **writer)


def _first_three(items: list[str], sep: str) -> str:
    more = f"{sep}and {len(items) - 3} more" if len(items) > 3 else ""
    return sep.join(items[:3]) + more


def _is_our_temp(name: str) -> bool:
    """Atomic writes leave `.model.pt.xyz` behind only if killed mid-write."""
    return any(name.startswith(f".{f}.") for f in RUN_FILES)


OVERWRITE_HINT = "use another --out, or pass --overwrite to replace it"


def claim_run_dir(
    run_dir: Path, config_text: str, overwrite: bool = False, remedy: str = OVERWRITE_HINT
) -> RunDirState:
    """Check that a run of `config_text` may be written into `run_dir`; raise a one-line error if
    not. Nothing is written or removed here: `prepare_run_dir` does that once training starts."""
    state = inspect_run_dir(run_dir, config_text)
    what = {
        "finished": "a finished run",
        "interrupted": "an interrupted run",
        "failed": "a failed run",
        "running": "a run in progress",
    }
    shown = _first_three(state.foreign, ", ")
    if state.kind == "foreign":
        raise ConfigError(
            f"{run_dir} is not empty and is not a gprec run directory (it holds {shown}); "
            "choose another --out (gprec never deletes files it did not write)"
        )
    if state.kind == "running":
        elsewhere = state.host != socket.gethostname()
        if not (overwrite and elsewhere):
            where = f"pid {state.pid} on {state.host}" if elsewhere else f"pid {state.pid}"
            hint = "; if it is gone, pass --overwrite" if elsewhere else ""
            raise ConfigError(
                f"{run_dir} holds a run in progress ({where}); wait for it or use another "
                f"--out{hint}"
            )
    if state.differences and not overwrite:
        shown_diff = _first_three(state.differences, "; ")
        raise ConfigError(
            f"{run_dir} holds {what[state.kind]} with a different config ({shown_diff}); {remedy}"
        )
    if state.foreign and not (state.kind == "finished" and not overwrite):
        # Reporting a finished run reads it only; anything else would write beside the files.
        raise ConfigError(
            f"{run_dir} holds {what[state.kind]} and files gprec did not write ({shown}); "
            "choose another --out (gprec never deletes files it did not write)"
        )
    return state


def prepare_run_dir(run_dir: Path, keep: tuple[str, ...] = (), **status: Any) -> None:
    """Remove an earlier run's files (only those, but those in `keep`: a resumed run's), and any
    temp file a killed write left; create the directory, mark it running (`status`: more keys
    for status.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for p in run_dir.iterdir():
        if (p.name in RUN_FILES and p.name not in keep) or _is_our_temp(p.name):
            p.unlink()
    write_status(run_dir, "running", started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **status)


@contextmanager
def recording_status(run_dir: Path, **finished: Any) -> Iterator[None]:
    """Around the writing of a prepared run: marks it `interrupted` (Ctrl-C), `failed` (any
    other exception, with its first line) or `finished` (`finished`: more keys for
    status.json); the exception goes on."""
    try:
        yield
    except KeyboardInterrupt:
        write_status(run_dir, "interrupted")
        raise
    except BaseException as e:
        write_status(run_dir, "failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    write_status(run_dir, "finished", **finished)
