"""Feature-interaction backbones; importing this package registers them."""

from gprec.models.backbones import mlp  # noqa: F401
