"""The on-disk dataset cache: its layout, atomic writes, checks on load, cleanup and listing.

An entry is a directory `<cache>/<source>-<20 hex key>/` holding one `.npy` file per
array, `vocab.json` (and `user_groups.json` with data.user_groups) and `meta.json`.
`meta.json` is written last and records every other file's size and CRC-32 (of the array data for `.npy` files), so a truncated,
deleted or overwritten file is found on load and the entry rebuilt, instead of a
traceback or silently wrong arrays.

A writer fills `.tmp-<pid>-<host>-<random>/` beside the entry and renames it into
place, so a reader sees a whole entry or none. A writer killed mid-write leaves its
temp dir behind; the pid and host in the name tell a later process whether the
writer is gone (then the dir is stale and removed) or may still be writing.

Nothing here deletes a file or directory it does not recognise as one gprec wrote:
entry and temp directories must hold only the file names an entry has.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gprec.errors import ConfigError
from gprec.io import pid_alive, refuse_non_directory

log = logging.getLogger(__name__)

# Bump when the on-disk layout changes (it is part of the cache key, so an old
# entry is never read by new code; `gprec cache clean` removes old ones).
CACHE_FORMAT = 2

TEMP_PREFIX = ".tmp-"
META = "meta.json"
ENTRY_NAME = re.compile(r"^(?P<source>[a-z0-9][a-z0-9-]*)-(?P<key>[0-9a-f]{20})$")
_TEMP_NAME = re.compile(r"^\.tmp-(?:(?P<pid>\d+)-(?P<host>[A-Za-z0-9._]+)-)?[A-Za-z0-9_]+$")
_ENTRY_FILE = re.compile(r"^(?:[XyN]_[a-z]+\.npy|vocab\.json|user_groups\.json|meta\.json)$")
# A temp dir untouched this long is abandoned whatever its pid says (the pid may have
# been reused, or the writer ran on another host): writing an entry takes minutes at most.
STALE_AFTER_S = 6 * 3600

_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "unknown"
# mkdtemp creates 0700 dirs; an entry gets the permissions a plain mkdir would give it.
_UMASK = os.umask(0)
os.umask(_UMASK)


class Damaged(Exception):
    """A cache entry whose files do not match its meta.json, or cannot be read."""


# ---- checks before writing -------------------------------------------------------------


def check_not_a_file(cache_dir: Path, label: str) -> None:
    """Refuse a cache dir that is, or lies under, something other than a directory."""
    refuse_non_directory(cache_dir, label)


def check_writable(cache_dir: Path, label: str) -> None:
    """Refuse, before any work, a cache dir whose entries could not be written."""
    existing = refuse_non_directory(cache_dir, label)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == cache_dir else f" (its parent {existing} is read-only)"
        raise ConfigError(
            f"{label} {cache_dir}: not writable{where}; point data.cache_dir at a "
            "writable directory"
        )


def write_error(label: str, cache_dir: Path, err: OSError) -> ConfigError:
    reason = err.strerror or str(err)
    return ConfigError(f"{label} {cache_dir}: cannot write the dataset cache: {reason}")


# ---- writing ---------------------------------------------------------------------------


def write_entry(
    entry: Path,
    arrays: dict[str, np.ndarray],
    documents: dict[str, Any],
    meta: dict[str, Any],
    label: str,
    replace: bool = False,
) -> None:
    """Write `arrays` (as `<name>.npy`), `documents` (JSON files) and `meta.json` atomically.

    `replace`: the entry there is damaged and is swapped out; otherwise an entry
    that appears meanwhile was written by another process from the same inputs,
    and is kept. Any OSError (permissions, a read-only or full disk) becomes one
    ConfigError naming the cache dir, and no temp dir is left behind.
    """
    with EntryWriter(entry, label, replace) as writer:
        for name, a in arrays.items():
            writer.array(name, a)
        for name, doc in documents.items():
            writer.document(name, doc)
        writer.commit(meta)


class EntryWriter:
    """An entry written file by file into a temp dir, published whole by `commit` (`with`).

    Leaving the block without `commit` (an error, Ctrl-C) removes the temp dir, so no part of
    the entry is left behind. `appender` writes an array too large for memory block by block.
    Any OSError of the writer's own (permissions, a full disk) is one ConfigError naming the
    cache dir; errors raised by the caller's code inside the block pass through unchanged.
    """

    def __init__(self, entry: Path, label: str, replace: bool = False):
        self.entry, self.label, self.replace = entry, label, replace
        self.files: dict[str, dict[str, Any]] = {}
        self.tmp: Path | None = None
        self._open: list[ArrayAppender] = []

    def __enter__(self) -> EntryWriter:
        cache_dir = self.entry.parent
        with self._naming_the_cache():
            cache_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(cache_dir)
            self.tmp = _make_temp(cache_dir)
        return self

    def __exit__(self, *exc) -> None:
        for appender in self._open:
            appender.fh.close()
        if self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _naming_the_cache(self):
        return _write_errors(self.label, self.entry.parent)

    def array(self, name: str, a: np.ndarray) -> None:
        with self._naming_the_cache():
            self.files[f"{name}.npy"] = _save_array(self.tmp / f"{name}.npy", a)

    def document(self, name: str, doc: Any) -> None:
        with self._naming_the_cache():
            self.files[name] = _save_bytes(self.tmp / name, json.dumps(doc).encode())

    def appender(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> ArrayAppender:
        """`<name>.npy` of `shape` (its rows known beforehand), filled by `append` in order."""
        with self._naming_the_cache():
            return ArrayAppender(self, name, np.dtype(dtype), tuple(shape))

    def commit(self, meta: dict[str, Any]) -> None:
        with self._naming_the_cache():
            meta = {**meta, "format": CACHE_FORMAT, "created": time.time(), "files": self.files}
            (self.tmp / META).write_text(json.dumps(meta, indent=1))
            os.chmod(self.tmp, 0o777 & ~_UMASK)
            _publish(self.tmp, self.entry, self.replace)


class ArrayAppender:
    """One `.npy` file written as its header, then its rows block by block: its size and CRC-32
    are those `np.save` of the whole array would record."""

    def __init__(self, writer: EntryWriter, name: str, dtype: np.dtype, shape: tuple[int, ...]):
        self.writer, self.name, self.dtype, self.shape = writer, name, dtype, shape
        self.path = writer.tmp / f"{name}.npy"
        self.rows, self.crc = 0, 0
        self.fh = open(self.path, "wb")  # noqa: SIM115 - closed by close() or the writer
        writer._open.append(self)
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
        np.lib.format.write_array_header_1_0(self.fh, header | {"shape": shape})

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self.rows + len(block) > self.shape[0]:
            raise ValueError(f"{self.name}: a block of shape {block.shape} does not fit")
        with self.writer._naming_the_cache():
            self.fh.write(block.data)
        self.crc = zlib.crc32(block.data, self.crc)
        self.rows += len(block)

    def close(self) -> None:
        """Finish the file; refused unless exactly the declared rows were appended."""
        with self.writer._naming_the_cache():
            self.fh.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.name}: {self.rows} rows written, {self.shape[0]} declared")
        self.writer.files[f"{self.name}.npy"] = {
            "size": self.path.stat().st_size,
            "crc32": self.crc,
            "shape": list(self.shape),
            "dtype": self.dtype.str,
        }


@contextmanager
def _write_errors(label: str, cache_dir: Path) -> Iterator[None]:
    """An OSError inside the block becomes the ConfigError that names the cache dir."""
    try:
        yield
    except OSError as e:
        raise write_error(label, cache_dir, e) from e


def _save_array(path: Path, a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    np.save(path, a)
    return {
        "size": path.stat().st_size,
        "crc32": zlib.crc32(a.data),
        "shape": list(a.shape),
        "dtype": a.dtype.str,
    }


def _save_bytes(path: Path, data: bytes) -> dict[str, Any]:
    path.write_bytes(data)
    return {"size": len(data), "crc32": zlib.crc32(data)}


def _make_temp(cache_dir: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{_HOST}-", dir=cache_dir))


def _publish(tmp: Path, entry: Path, replace: bool) -> None:
    try:
        os.rename(tmp, entry)
        return
    except OSError:
        if not (entry.exists() or entry.is_symlink()):
            raise
    if not replace:
        return  # another process finished the same entry first; ours is discarded
    if not _holds_only_entry_files(entry):
        raise ConfigError(
            f"{entry} is not a gprec cache entry (it holds other files), so it is not replaced; "
            "move it out of the cache dir"
        )
    # Move the damaged entry aside under a temp name (which a stale-temp cleanup
    # removes if we die here), then put ours in its place.
    trash = _make_temp(entry.parent)
    try:
        os.rename(entry, trash)
        try:
            os.rename(tmp, entry)
        except OSError:
            if not entry.exists():
                raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def read_or_build(entry: Path, label: str, read, build):
    """`read(entry)` when the entry is there and whole; else `build(replace)` after checking the
    cache can be written (`replace`: a damaged entry is there, rebuilt with a warning). Both
    dataset formats go through here."""
    present = entry.exists() or entry.is_symlink()
    if present:
        try:
            ds = read(entry)
        except Damaged as e:
            log.warning("cache entry %s is damaged (%s); rebuilding it", entry, e)
        else:
            log.info("using cached dataset %s", entry)
            touch(entry)
            return ds
    check_writable(entry.parent, label)
    ds = build(present)
    log.info("cached dataset at %s", entry)
    return ds


def touch(entry: Path) -> None:
    """Record a use of the entry (its mtime), for `gprec cache list` and `clean --older-than`."""
    try:
        os.utime(entry)
    except OSError:
        pass  # a read-only cache is still usable; only the last-use time goes stale


# ---- reading ---------------------------------------------------------------------------


def read_entry(
    entry: Path, mmap: bool = False
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """An entry's meta, arrays (by name) and JSON documents (by file name).

    Raises Damaged when a file is missing, has the wrong size or checksum, or does
    not parse. File sizes are checked first (one stat each, no reading), which finds
    a truncated file; the CRC-32 finds changed bytes, at about 1.5 ms per 10 MB
    (zlib's CRC-32 is far faster than a cryptographic hash; 10 ms for ML-1M's arrays).
    With `mmap` the array checksums are skipped: computing them would read every
    page a memory map is meant to leave on disk.
    """
    meta = _read_meta(entry)
    files = meta["files"]
    for name, info in files.items():
        _check_size(entry / name, info)
    arrays, documents = {}, {}
    for name, info in files.items():
        if name.endswith(".npy"):
            arrays[name[: -len(".npy")]] = _load_array(entry / name, info, mmap)
        else:
            documents[name] = _load_document(entry / name, info)
    return meta, arrays, documents


def _read_meta(entry: Path) -> dict[str, Any]:
    try:
        meta = json.loads((entry / META).read_text())
    except FileNotFoundError:
        raise Damaged(f"{META} is missing") from None
    except (OSError, ValueError) as e:
        raise Damaged(f"{META} is unreadable ({type(e).__name__})") from None
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not files or meta.get("format") != CACHE_FORMAT:
        raise Damaged(f"{META} does not describe the entry's files")
    for name, info in files.items():
        if not _ENTRY_FILE.match(name) or not isinstance(info, dict):
            raise Damaged(f"{META} lists an unexpected file {name!r}")
    return meta


def _check_size(path: Path, info: dict[str, Any]) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        raise Damaged(f"{path.name} is missing") from None
    if size != info.get("size"):
        raise Damaged(f"{path.name} has {size:,d} bytes, expected {info.get('size')}")


def _load_array(path: Path, info: dict[str, Any], mmap: bool) -> np.ndarray:
    try:
        a = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise Damaged(f"{path.name} does not load ({_first_line(e)})") from None
    if list(a.shape) != info.get("shape") or a.dtype.str != info.get("dtype"):
        raise Damaged(f"{path.name} holds {a.dtype.str}{list(a.shape)}, not what was written")
    if not mmap and zlib.crc32(np.ascontiguousarray(a).data) != info.get("crc32"):
        raise Damaged(f"{path.name} fails its checksum")
    return a


def _load_document(path: Path, info: dict[str, Any]) -> Any:
    try:
        data = path.read_bytes()
        if zlib.crc32(data) != info.get("crc32"):
            raise Damaged(f"{path.name} fails its checksum")
        return json.loads(data)
    except (OSError, ValueError) as e:
        raise Damaged(f"{path.name} is unreadable ({type(e).__name__})") from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().split("\n", 1)[0] or type(e).__name__)[:120]


# ---- stale temp dirs -------------------------------------------------------------------


@dataclass
class TempDir:
    path: Path
    size: int
    idle_s: float  # since the last write into it
    stale: bool
    why: str


def temp_dirs(cache_dir: Path) -> list[TempDir]:
    """The writers' temp dirs in `cache_dir`, each judged stale or possibly in use."""
    now = time.time()
    found = []
    for path in sorted(cache_dir.glob(f"{TEMP_PREFIX}*")):
        match = _TEMP_NAME.match(path.name)
        if match is None or not _holds_only_entry_files(path):
            continue
        try:
            idle = now - _last_write(path)
            size = _size(path)
        except OSError:  # removed meanwhile, by its writer or another cleanup
            continue
        stale, why = _judge(match, idle)
        found.append(TempDir(path, size, idle, stale, why))
    return found


def _judge(match: re.Match, idle_s: float) -> tuple[bool, str]:
    """Stale when its writer is certainly gone; else only after STALE_AFTER_S of no writes."""
    pid, host = match["pid"], match["host"]
    if pid is not None and host == _HOST:
        if not pid_alive(int(pid)):
            return True, f"its writer (pid {pid}) has exited"
        if idle_s < STALE_AFTER_S:
            return False, f"being written by pid {pid}"
    elif idle_s < STALE_AFTER_S:
        writer = f"pid {pid} on host {host}" if pid is not None else "an older gprec"
        return False, f"may be in use by {writer}"
    return True, f"untouched for {format_age(idle_s)}"


def _last_write(path: Path) -> float:
    times = [path.stat().st_mtime]
    for child in path.iterdir():
        try:
            times.append(child.stat().st_mtime)
        except OSError:
            pass
    return max(times)


def remove_stale_temps(cache_dir: Path) -> list[TempDir]:
    """Remove the temp dirs left by writers that are gone; return what was removed.

    Best effort: a dir that cannot be removed is left for the next cleanup.
    """
    removed = []
    try:
        temps = temp_dirs(cache_dir)
    except OSError:
        return removed
    for t in temps:
        if t.stale:
            shutil.rmtree(t.path, ignore_errors=True)
            if not t.path.exists():
                log.info("removed stale cache temp dir %s (%s)", t.path, t.why)
                removed.append(t)
    return removed


# ---- listing and cleaning --------------------------------------------------------------


@dataclass
class Entry:
    path: Path
    source: str
    size: int
    created: float | None
    last_used: float  # the entry's mtime: set when written, bumped on every load
    format: int | None
    rows: int | None
    problem: str | None  # why the entry would be rebuilt, when it would


@dataclass
class Scan:
    cache_dir: Path
    entries: list[Entry]
    temps: list[TempDir]
    foreign: list[Path]  # anything gprec did not write


def scan(cache_dir: Path) -> Scan:
    """What a cache dir holds: entries, temp dirs, and anything else (foreign)."""
    entries, foreign = [], []
    temps = temp_dirs(cache_dir)
    temp_paths = {t.path for t in temps}
    for path in sorted(cache_dir.iterdir()):
        if path in temp_paths:
            continue
        match = ENTRY_NAME.match(path.name)
        if match is None or not _holds_only_entry_files(path):
            foreign.append(path)
            continue
        entries.append(_describe(path, match["source"]))
    return Scan(cache_dir, entries, temps, foreign)


def _holds_only_entry_files(path: Path) -> bool:
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        children = list(path.iterdir())
    except OSError:
        return False
    return all(_ENTRY_FILE.match(c.name) and c.is_file() and not c.is_symlink() for c in children)


def _describe(path: Path, source: str) -> Entry:
    """An entry as `list` shows it; only file sizes are checked, so listing stays quick."""
    created = fmt = rows = problem = None
    try:
        meta = json.loads((path / META).read_text())
        created, fmt = meta.get("created"), meta.get("format")
        rows = sum(s["rows"] for s in meta["splits"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        problem = f"{META} is missing or unreadable"
    if problem is None and fmt == CACHE_FORMAT:
        try:
            for name, info in _read_meta(path)["files"].items():
                _check_size(path / name, info)
        except Damaged as e:
            problem = str(e)
    return Entry(path, source, _size(path), created, path.stat().st_mtime, fmt, rows, problem)


def _size(path: Path) -> int:
    total = 0
    for child in path.iterdir():
        try:
            total += child.stat().st_size
        except OSError:
            pass
    return total


def remove(path: Path) -> None:
    """Delete an entry or temp dir: first renamed away, so no reader sees it half-deleted."""
    target = path
    if not path.name.startswith(TEMP_PREFIX):
        target = _make_temp(path.parent)
        try:
            os.rename(path, target)
        except OSError:
            target.rmdir()
            raise
    shutil.rmtree(target)


def format_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def format_age(seconds: float) -> str:
    seconds = max(seconds, 0)
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f} {unit}"
    return f"{seconds:.0f} s"
