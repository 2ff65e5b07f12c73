"""`gprec models`: what can be named in a config."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the registered models")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    from gprec.models.registry import available_models  # imports torch: only when asked

    print("\n".join(available_models()))
    return 0
