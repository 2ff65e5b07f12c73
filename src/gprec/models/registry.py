"""Models by name: `@register("mlp")` on a class; configs and the CLI select by name."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from pydantic import ValidationError

from gprec.data.schema import EncodedField
from gprec.errors import ConfigError

_REGISTRY: dict[str, type] = {}
# Packages whose import registers models; loaded on first use to avoid import cycles.
_MODEL_PACKAGES = ("gprec.models.backbones", "gprec.models.gprec", "gprec.models.user_modeling")


def register(name: str):
    def decorator(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = cls
        cls.registered_name = name
        return cls

    return decorator


def _ensure_loaded() -> None:
    for pkg in _MODEL_PACKAGES:
        importlib.import_module(pkg)


def available_models(kind: type | None = None) -> list[str]:
    """Registered model names; with `kind`, only models of that class (e.g. `Backbone`)."""
    _ensure_loaded()
    return sorted(n for n, cls in _REGISTRY.items() if kind is None or issubclass(cls, kind))


def unknown_model_message(name: str, choices: list[str], label: str = "available") -> str:
    # Same letters in another order (a swap: 'mpl') first, then the closest spelling.
    close = [c for c in choices if sorted(c) == sorted(name)] or difflib.get_close_matches(
        name, choices, n=1
    )
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown model '{name}'{hint}; {label}: {', '.join(choices)}"


def model_class(name: str) -> type:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ConfigError(unknown_model_message(name, sorted(_REGISTRY)))
    return _REGISTRY[name]


def validate_model_options(model: dict[str, Any]) -> dict[str, Any]:
    """A `model:` section with defaults filled; pydantic's ValidationError if it is bad.

    Errors are located relative to the section (`("dropout",)`, `("name",)`), so
    callers can prefix the key they know it by (`model.`, `model.backbone.`) and
    say which file or `--set` it came from.
    """
    from gprec.config import key_error

    if "name" not in model:
        raise key_error(("name",), f"required: one of {', '.join(available_models())}")
    name = str(model["name"])
    if name not in available_models():
        raise key_error(("name",), unknown_model_message(name, available_models()), name)
    return model_class(name).Options.model_validate(model).model_dump(mode="json")


def resolve_model_options(model: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate a `model:` section against its model's options; return it with defaults filled."""
    from gprec.config import format_validation_error

    try:
        return validate_model_options(model)
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_validation_error(e, 'model')}") from None


def build_model(model: dict[str, Any], fields: list[EncodedField], **kwargs: Any):
    """The model a validated `model:` section names; `kwargs` go to its constructor (e.g. a
    backbone's `with_head`)."""
    cls = model_class(str(model["name"]))
    return cls(fields, cls.Options.model_validate(model), **kwargs)
