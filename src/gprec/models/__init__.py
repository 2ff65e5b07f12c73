"""Models, one per file, registered by name (see `registry`)."""

from gprec.models.registry import available_models, build_model, register

__all__ = ["available_models", "build_model", "register"]
