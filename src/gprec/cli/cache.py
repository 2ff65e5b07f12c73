"""`gprec cache list|clean`: the encoded-dataset cache (filled in by the cache work)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="list or clean the encoded-dataset cache")
    p.set_defaults(handler=lambda args: 0)
