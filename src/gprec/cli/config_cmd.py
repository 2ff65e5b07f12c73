"""`gprec config show`: every config key with its type, default and meaning.

The meanings are the `description`s of the pydantic fields (`gprec.config` and
each model's `Options`), so this listing cannot drift from what is validated.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="show every config key with its default and meaning")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    s = csub.add_parser(
        "show",
        help="list every config key: type, default and meaning",
        description="List every key a config may set (data.*, model.*, train.*) with its type, "
        "default and meaning. Keys go in a YAML config (gprec train -c FILE) or on the command "
        "line (--set key=value).",
    )
    s.add_argument(
        "--model",
        "-m",
        default="mlp",
        help="list this model's options under model.* (default: %(default)s; "
        "`gprec models` lists the models)",
    )
    s.add_argument(
        "--format",
        choices=("text", "yaml"),
        default="text",
        help="text: one entry per key; yaml: a commented config with every default, "
        "to start a config from (default: %(default)s)",
    )
    s.set_defaults(handler=handle_show)


@dataclass
class Entry:
    """A key (`children` empty) or a section of the config, with what `show` prints for it."""

    key: str  # dotted
    type: str
    default: Any  # JSON-like, as in a resolved config
    description: str
    children: list[Entry] = field(default_factory=list)
    is_section: bool = False


def handle_show(args) -> int:
    from gprec.errors import ConfigError
    from gprec.models.registry import available_models

    if args.model not in available_models():
        from gprec.models.registry import unknown_model_message

        raise ConfigError(
            f"--model {args.model}: {unknown_model_message(args.model, available_models())}"
        )
    entries = config_entries(args.model)
    print(to_yaml(entries, args.model) if args.format == "yaml" else to_text(entries, args.model))
    return 0


def config_entries(model: str = "mlp") -> list[Entry]:
    """The sections `data`, `model` (options of `model`) and `train`, fully expanded."""
    from gprec.config import RunConfig

    out = []
    for name, info in RunConfig.model_fields.items():
        if name == "model":
            out.append(_model_section("model", model, info.description or "", skip=()))
        else:
            sub = _submodel(info.annotation)
            out.append(_section(name, sub, sub().model_dump(mode="json"), info.description or ""))
    return out


def _section(key: str, cls, defaults: dict, description: str, skip=()) -> Entry:
    entry = Entry(key, "section", None, description, is_section=True)
    for name, info in cls.model_fields.items():
        if name in skip:
            continue
        sub = _submodel(info.annotation)
        if sub is not None:
            entry.children.append(
                _section(f"{key}.{name}", sub, defaults[name], info.description or "")
            )
        else:
            entry.children.append(
                Entry(
                    f"{key}.{name}",
                    type_name(info.annotation, info.metadata),
                    defaults.get(name),
                    info.description or "",
                )
            )
    return entry


def _model_section(key: str, model: str, description: str, skip) -> Entry:
    """A `model:` section: its name, then that model's options; a nested model section
    (GPRec's backbone) is expanded with its own model's options, less those shared
    with the enclosing model (they are set once, at the outer level)."""
    from gprec.models.base import Backbone
    from gprec.models.registry import available_models, model_class

    options = model_class(model).Options
    defaults = options.model_validate({"name": model}).model_dump(mode="json")
    entry = Entry(key, "section", None, description, is_section=True)
    for name, info in options.model_fields.items():
        if name in skip:
            continue
        k = f"{key}.{name}"
        if name == "name":
            if skip:  # a nested model section names a backbone
                choices, meaning = available_models(Backbone), "the backbone model"
            else:
                choices, meaning = available_models(), info.description or ""
            entry.children.append(Entry(k, " | ".join(choices), model, meaning))
        elif isinstance(defaults[name], dict) and "name" in defaults[name]:
            shared = [n for n in options.model_fields if n != "name"]
            nested = model_class(defaults[name]["name"]).Options.model_fields
            note = ", ".join(n for n in shared if n in nested)
            meaning = info.description or ""
            if note:
                meaning += f" ({note}: set once, as {key}.*)"
            entry.children.append(_model_section(k, defaults[name]["name"], meaning, shared))
        else:
            entry.children.append(
                Entry(
                    k,
                    type_name(info.annotation, info.metadata),
                    defaults[name],
                    info.description or "",
                )
            )
    return entry


def _submodel(annotation) -> type | None:
    from pydantic import BaseModel

    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def type_name(annotation, metadata: list | tuple = ()) -> str:
    """`annotation` for people: `float > 0`, `int in [0, 4294967295] | null`, `relu | gelu`."""
    bounds = _bounds(metadata)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        inner_meta = [m for a in args[1:] for m in getattr(a, "metadata", [a])]
        return type_name(args[0], [*inner_meta, *metadata])
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_name(a, metadata) for a in args if a is not type(None)]
        return " | ".join(parts + (["null"] if type(None) in args else []))
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict or annotation is dict:
        return "section"
    name = getattr(annotation, "__name__", str(annotation))
    return f"{name} {bounds}" if bounds and name in ("int", "float") else name


def _bounds(metadata) -> str:
    lo = hi = None
    for m in metadata:
        for attr, side, text in (
            ("gt", "lo", "("),
            ("ge", "lo", "["),
            ("lt", "hi", ")"),
            ("le", "hi", "]"),
        ):
            value = getattr(m, attr, None)
            if value is not None:
                if side == "lo":
                    lo = (text, value)
                else:
                    hi = (text, value)
    if lo and hi:
        return f"in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return f"{'>' if lo[0] == '(' else '>='} {lo[1]}"
    if hi:
        return f"{'<' if hi[0] == ')' else '<='} {hi[1]}"
    return ""


def _flow(value: Any) -> str:
    """A value as it would be written in a config (YAML flow style: `[64, 32]`, `null`, `1.0e-06`)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()


def _walk(entries: list[Entry]):
    for e in entries:
        yield e
        yield from _walk(e.children)


def _walk_keys_first(entries: list[Entry]):
    """Sections with their own keys first, then their subsections, so no key lands
    under the heading of a subsection it does not belong to."""
    for e in entries:
        yield e
        yield from (c for c in e.children if not c.is_section)
        yield from _walk_keys_first([c for c in e.children if c.is_section])


def _intro(model: str) -> list[str]:
    from gprec.config import BUILTIN_DEFAULT

    builtin = ", ".join(
        f"{section}.{k}={_flow(v)}"
        for section, keys in BUILTIN_DEFAULT.items()
        for k, v in keys.items()
    )
    return [
        f"Config keys, with model.* for model '{model}' (another: gprec config show --model NAME).",
        "Set them in a YAML config (gprec train -c FILE) or with --set key=value; an unknown key is an error.",
        f"The defaults apply to keys a config leaves out. Without --config, gprec runs {builtin}.",
    ]


def to_text(entries: list[Entry], model: str) -> str:
    keys = [e for e in _walk(entries) if not e.is_section]
    kw = max(len(e.key) for e in keys)
    tw = max(len(e.type) for e in keys)
    lines = _intro(model)
    for e in _walk_keys_first(entries):
        if e.is_section:
            lines += ["", f"{e.key}: {e.description}"]
        else:
            lines.append(f"  {e.key:<{kw}}  {e.type:<{tw}}  default {_flow(e.default)}")
            lines.append(f"      {e.description}")
    return "\n".join(lines)


def to_yaml(entries: list[Entry], model: str) -> str:
    """A config with every key at its default, each above a comment with its meaning and type."""
    lines = [f"# {line}" for line in _intro(model)]
    lines.append(
        "# This file sets every key to its default: keep the keys you change, delete the rest."
    )

    def emit(e: Entry, depth: int) -> None:
        pad = "  " * depth
        name = e.key.rsplit(".", 1)[-1]
        if e.is_section:
            lines.append(f"{pad}# {e.description}")
            lines.append(f"{pad}{name}:")
            for child in e.children:
                emit(child, depth + 1)
        else:
            lines.append(f"{pad}# {e.description}")
            lines.append(f"{pad}{name}: {_flow(e.default)}  # {e.type}")

    for e in entries:
        emit(e, 0)
    return "\n".join(lines)
