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
_MODEL_PACKAGES = ("gprec.models.backbones", "gprec.models.gprec")


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


def available_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def model_class(name: str) -> type:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"unknown model '{name}'{hint}; available: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def resolve_model_options(model: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate a `model:` section against its model's options; return it with defaults filled."""
    from gprec.config import format_validation_error

    if "name" not in model:
        raise ConfigError(f"{source}: model.name is required")
    cls = model_class(str(model["name"]))
    try:
        options = cls.Options.model_validate(model)
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_validation_error(e, 'model')}") from None
    return options.model_dump(mode="json")


def build_model(model: dict[str, Any], fields: list[EncodedField]):
    cls = model_class(str(model["name"]))
    return cls(fields, cls.Options.model_validate(model))
