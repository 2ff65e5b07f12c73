"""`gprec models`: what can be named in a config, one line each: the name, the model's
`description` and, for a backbone, the GPRec strategies it supports (`model.strategy` of a
GPRec wrapping it)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list the registered models",
        description="List every model a config may name (model.name, and model.backbone.name "
        "for a backbone), with what it is and, for a backbone, the GPRec strategies it supports.",
    )
    p.set_defaults(handler=handle)


def model_lines() -> list[str]:
    """`name  GPRec: strategies  description` per registered model, in aligned columns."""
    # The registry imports torch: only when the command runs, never for `gprec --help`.
    from gprec.models.base import Backbone
    from gprec.models.registry import available_models, model_class

    rows = []
    for name in available_models():
        cls = model_class(name)
        strategies = ""
        if issubclass(cls, Backbone):
            strategies = "GPRec: " + (", ".join(cls.gprec_strategies) or "none")
        rows.append((name, getattr(cls, "description", "") or "", strategies))
    # Strategies before the description: descriptions vary in length, so the line stays as
    # long as its own description instead of the longest one.
    name_w = max(len(r[0]) for r in rows)
    strat_w = max(len(r[2]) for r in rows)
    return [
        f"{name:<{name_w}}  {strategies:<{strat_w}}  {desc}".rstrip()
        for name, desc, strategies in rows
    ]


def handle(args) -> int:
    print("\n".join(model_lines()))
    return 0
