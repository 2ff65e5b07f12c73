"""`gprec cache list|clean`: what the encoded-dataset cache holds, and freeing its space.

Only directories gprec wrote are ever deleted (see `gprec.data.cache`), and a
directory holding anything else is refused whole. Imports of the cache code stay
inside the handlers so that `gprec --help` does not load numpy.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from gprec.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cache",
        help="list or clean the encoded-dataset cache",
        description="The encoded-dataset cache: one directory per dataset, seed and data "
        "config, under $GPREC_CACHE or ./.gprec_cache (or a config's data.cache_dir).",
    )
    csub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")

    ls = csub.add_parser(
        "list",
        help="show each entry (source, size, age, last use) and writers' temp dirs",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_cache_dir(ls)
    ls.set_defaults(handler=handle_list)

    cl = csub.add_parser(
        "clean",
        help="delete cache entries and temp dirs left by killed writers",
        description="Delete every cache entry (or those unused for DAYS days) and the temp "
        "dirs of writers that are gone; a temp dir another process may still be writing is "
        "kept. Prints what was freed.",
    )
    _add_cache_dir(cl)
    which = cl.add_mutually_exclusive_group()
    which.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="only entries not used for more than DAYS days (fractions allowed)",
    )
    which.add_argument(
        "--temp-only",
        action="store_true",
        help="only the stale temp dirs; keep every entry",
    )
    cl.add_argument("--dry-run", action="store_true", help="print what would go; delete nothing")
    cl.set_defaults(handler=handle_clean)


def _add_cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        help="the cache directory (default: $GPREC_CACHE, else ./.gprec_cache)",
    )


def _cache_dir(args) -> Path | None:
    """The cache dir to work on, or None when there is none yet."""
    from gprec.config import CACHE_DIR_ENV, DataConfig

    if args.cache_dir:
        path, label = Path(args.cache_dir).expanduser(), "--cache-dir"
    else:
        path = DataConfig().resolved_cache_dir()
        label = f"${CACHE_DIR_ENV}" if os.environ.get(CACHE_DIR_ENV) else "cache dir (default)"
    if not (path.exists() or path.is_symlink()):
        print(f"no cache at {path}")
        return None
    if not path.is_dir():
        raise ConfigError(f"{label} {path}: not a directory")
    return path


def handle_list(args) -> int:
    from gprec.data import cache

    path = _cache_dir(args)
    if path is None:
        return 0
    found = _scan(path)
    now = time.time()
    total = sum(e.size for e in found.entries) + sum(t.size for t in found.temps)
    print(f"cache {path}: {_count(found.entries, 'entry', 'entries')}, {cache.format_size(total)}")
    for e in found.entries:
        rows = f"{e.rows:,d} rows" if e.rows is not None else "? rows"
        created = cache.format_age(now - e.created) if e.created else "?"
        print(
            f"  {e.source:10s} {e.path.name:32s} {cache.format_size(e.size):>9s} {rows:>14s}"
            f"  created {created:>6s} ago, last used {cache.format_age(now - e.last_used)} ago"
            f"{_entry_note(e)}"
        )
    for t in found.temps:
        state = "stale" if t.stale else "in use?"
        print(f"  temp dir   {t.path.name:32s} {cache.format_size(t.size):>9s}  {state}: {t.why}")
    if found.foreign:
        print(
            f"  also holds {_count(found.foreign, 'item', 'items')} gprec did not write "
            f"(e.g. {found.foreign[0].name!r}): not a gprec cache, `gprec cache clean` refuses it"
        )
    return 0


def _entry_note(e) -> str:
    from gprec.data.cache import CACHE_FORMAT

    if e.problem:
        return f"  [damaged: {e.problem}; rebuilt on next use]"
    if e.format != CACHE_FORMAT:
        return f"  [format {e.format or 1}, unused by this gprec]"
    return ""


def handle_clean(args) -> int:
    from gprec.data import cache

    if args.older_than is not None and not args.older_than >= 0:
        raise ConfigError(f"--older-than {args.older_than}: must be a number of days >= 0")
    path = _cache_dir(args)
    if path is None:
        return 0
    found = _scan(path)
    if found.foreign:
        more = f" and {len(found.foreign) - 1} more" if len(found.foreign) > 1 else ""
        raise ConfigError(
            f"{path} does not look like a gprec cache: it holds {found.foreign[0].name!r}{more}, "
            "which gprec did not write; nothing was deleted"
        )
    now = time.time()
    entries = [] if args.temp_only else found.entries
    if args.older_than is not None:
        entries = [e for e in entries if now - e.last_used > args.older_than * 86400]
    verb = "would remove" if args.dry_run else "removed"
    freed = 0
    for e in entries:
        _remove(e.path, args.dry_run)
        freed += e.size
        print(f"{verb} {e.path.name} ({cache.format_size(e.size)}, last used "
              f"{cache.format_age(now - e.last_used)} ago)")  # fmt: skip
    stale = [t for t in found.temps if t.stale]
    for t in stale:
        _remove(t.path, args.dry_run)
        freed += t.size
        print(f"{verb} temp dir {t.path.name} ({cache.format_size(t.size)}; {t.why})")
    for t in found.temps:
        if not t.stale:
            print(f"kept temp dir {t.path.name} ({t.why})")
    if not entries and not stale:
        print(f"nothing to clean in {path}")
        return 0
    what = f"{_count(entries, 'entry', 'entries')}, {_count(stale, 'temp dir', 'temp dirs')}"
    print(f"{'would free' if args.dry_run else 'freed'} {cache.format_size(freed)} ({what})")
    return 0


def _scan(path: Path):
    from gprec.data import cache

    try:
        return cache.scan(path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the cache: {e.strerror or e}") from None


def _remove(path: Path, dry_run: bool) -> None:
    from gprec.data import cache

    if dry_run:
        return
    try:
        cache.remove(path)
    except FileNotFoundError:
        pass  # removed meanwhile by another cleanup
    except OSError as e:
        raise ConfigError(f"{path}: cannot delete: {e.strerror or e}") from None


def _count(items: list, one: str, many: str) -> str:
    return f"{len(items)} {one if len(items) == 1 else many}"
