"""`gprec config show`: every config key with its default and meaning (filled in by the config work)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="show every config key with its default and meaning")
    p.set_defaults(handler=lambda args: 0)
