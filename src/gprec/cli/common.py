"""Arguments shared by several commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gprec.errors import ConfigError
from gprec.io import refuse_non_directory


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        action="append",
        help="YAML config (default: built-in synthetic data + MLP); repeat to lay one over "
        "another, e.g. -c configs/ml-1m/mlp.yaml -c configs/models/gdcn.yaml",
    )
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


def output_dir(path: str | Path, what: str = "--out") -> Path:
    """`path` as a directory to write into, refused up front if it or a parent is a file.

    Checked before any work, since otherwise the mkdir fails only after training.
    """
    if not str(path).strip():
        raise ConfigError(f"{what} is empty: give a directory")
    path = Path(path)
    existing = refuse_non_directory(path, what)
    # access() also reports a read-only file system (EROFS), which root cannot write either;
    # a plain permission problem the later write still turns into one line.
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        where = (
            "" if existing == path else f" (its nearest existing parent {existing} is not writable)"
        )
        raise ConfigError(f"{what} {path}: cannot write here{where}")
    return path


def at_least_one(value: int, option: str) -> int:
    """A count option (`--k`, `--batch-rows`) refused up front when below 1."""
    if value < 1:
        raise ConfigError(f"{option} must be at least 1, not {value}")
    return value


def output_file(path: str, kinds: str, what: str = "--output", overwrite: bool = False) -> Path:
    """`path` as a file to write (`kinds`: what it may be, for the message), refused up front
    when empty, a directory, or an existing file without `overwrite` (nothing is replaced
    silently)."""
    if not path.strip():
        raise ConfigError(f"{what} is empty: give a {kinds} file")
    if Path(path).is_dir():
        raise ConfigError(f"{what} {path}: is a directory; give a file")
    if (Path(path).exists() or Path(path).is_symlink()) and not overwrite:
        raise ConfigError(f"{what} {path}: exists; pass --overwrite to replace it")
    return Path(path)


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite", action="store_true", help="replace --output if it exists (else refused)"
    )


def add_rebuild_catalogue(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rebuild-catalogue",
        action="store_true",
        help="build the run's catalogue.npz from its data through its config first (a run "
        "trained before gprec kept one)",
    )
