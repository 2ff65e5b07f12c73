"""Atomic file writes (a reader never sees a half-written file, a crash leaves none behind), and
whether the process that was writing something is still alive."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def save_atomic(obj: object, path: Path) -> int:
    """torch.save into a temp file beside `path`, then rename: no half-written checkpoint.
    Returns the bytes written."""
    import torch  # here, not at the top: the CLI imports this module and must start fast

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getbuffer()
    write_bytes_atomic(path, data)
    return len(data)


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a temp dir's or a run's writer)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user's process
        return True
    return True


def nearest_existing(path: Path) -> Path | None:
    """`path` or its nearest ancestor that exists: what decides whether `mkdir(parents=True)` can
    work. A dangling symlink counts as existing, since mkdir cannot replace it either."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return p
    return None


def refuse_non_directory(path: Path, label: str) -> Path | None:
    """Raise a one-line ConfigError when `path` is, or lies under, something other than a
    directory; return its nearest existing ancestor (None: nothing of it exists)."""
    from gprec.errors import ConfigError

    existing = nearest_existing(path)
    if existing is not None and not existing.is_dir():
        where = "exists" if existing == path else f"its parent {existing} exists"
        raise ConfigError(f"{label} {path}: {where} and is not a directory")
    return existing


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside `path` to write in full; renamed onto `path` when the block ends
    without an exception, removed otherwise. For writers that stream (batch by batch) what
    `write_bytes_atomic` would need in memory: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
