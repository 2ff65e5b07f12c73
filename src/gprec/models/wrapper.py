"""What every model that wraps a backbone shares (GPRec, STAR, APG, PEPNet, DGPM).

A wrapper's `model:` section names its backbone in a `backbone:` section (default the MLP);
its own file holds only its mechanism. This module gives it:

- `WrapperOptions`: the `backbone` section, validated against the backbone's own options
  (a wrapper is never a backbone, so it cannot wrap itself or another wrapper); the options
  there is one of (`embedding_dim`, `embedding_init_std`: one embedding table, the
  backbone's) may be written at either level and must agree; and the backbone's other
  options written at the top level go to the backbone, so a dataset config's
  `model: {name: mlp, head_units: [...], dropout: ...}` switched by `--set model.name=star`
  keeps its head and the wrapper its defaults.
- `BackboneWrapper`: builds the backbone (`with_head` where the wrapper calls it), shares its
  embedding table, and indexes field roles.
- `require_layer_mods`: the config-time check of a wrapper that modulates the backbone head's
  layers (`LayerMod`s) that the backbone's head takes them (`head_accepts_layer_mods`).
- `PartitionOptions` / `partition_field_index`: a user field naming the partition of each
  sample (MMoE, PLE and STAR split users by it), checked against the dataset's fields and
  against `max_partitions` (PEPNet's domain field is `PartitionFieldOptions`: no limit, its
  cost does not grow with the field's values).
- Field roles and names: `field_positions` for options that name fields,
  `user_field_positions` for the personal and user fields a model reads by default,
  `BackboneWrapper.register_index` for keeping either as an index buffer.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from torch import nn

from gprec.config import key_error
from gprec.data.schema import EncodedField, Role, fields_of_role
from gprec.errors import ConfigError
from gprec.models.base import Backbone, CTRModel, ModelOptions
from gprec.models.registry import (
    available_models,
    build_model,
    model_class,
    unknown_model_message,
    validate_model_options,
)

# One embedding table, the backbone's: these options may be written at either level.
SHARED_WITH_BACKBONE = ("embedding_dim", "embedding_init_std")


class WrapperOptions(ModelOptions):
    backbone: dict[str, Any] = Field(
        default_factory=lambda: {"name": "mlp"},
        description="the wrapped backbone: a section with its name and options",
    )

    @model_validator(mode="before")
    @classmethod
    def _route_backbone_options(cls, data: Any) -> Any:
        """Shared options agree at both levels; the backbone's own options given at the top
        level (and unknown to the wrapper) move into the backbone section."""
        if not isinstance(data, dict) or not isinstance(data.get("backbone", {}), dict):
            return data
        data = dict(data)
        backbone = dict(data.get("backbone", {"name": "mlp"}))
        for key in SHARED_WITH_BACKBONE:
            if key in data and key in backbone and data[key] != backbone[key]:
                raise PydanticCustomError(
                    "shared_option",
                    "{key} is shared with the backbone, but is {a} here and {b} in backbone",
                    {"key": key, "a": data[key], "b": backbone[key]},
                )
            if key in data:
                backbone[key] = data[key]
            elif key in backbone:
                data[key] = backbone[key]
        name = str(backbone.get("name", "mlp"))
        if name in available_models(Backbone):
            theirs = set(model_class(name).Options.model_fields) - set(cls.model_fields)
            for key in sorted(theirs & set(data)):
                value = data.pop(key)
                if key in backbone and backbone[key] != value:
                    raise PydanticCustomError(
                        "shared_option",
                        "{key} is {a} here and {b} in backbone; it is the backbone's option, "
                        "write it once",
                        {"key": key, "a": value, "b": backbone[key]},
                    )
                backbone[key] = value
        data["backbone"] = backbone
        return data

    @field_validator("backbone", mode="before")
    @classmethod
    def _backbone_is_a_section(cls, v: Any) -> Any:
        if isinstance(v, str):
            if cls._is_wrapper(v):
                raise key_error((), cls._wrapper_message(v), v)
            raise key_error((), f"a section, not a name: write model.backbone.name={v}", v)
        return v

    @field_validator("backbone")
    @classmethod
    def _resolve_backbone(cls, v: dict[str, Any]) -> dict[str, Any]:
        name = v.get("name")
        if name is not None:
            # Checked before the options, which would otherwise fail on keys the
            # named model lacks and hide that it cannot be a backbone at all.
            if cls._is_wrapper(str(name)):
                raise key_error(("name",), cls._wrapper_message(str(name)), name)
            backbones = available_models(Backbone)
            if str(name) not in available_models():
                raise key_error(
                    ("name",), unknown_model_message(str(name), backbones, "backbones"), name
                )
            if str(name) not in backbones:
                raise key_error(
                    ("name",),
                    f"'{name}' is not a backbone (one with represent() and a prediction head); "
                    f"backbones: {', '.join(backbones)}",
                    name,
                )
        return validate_model_options(v)

    @staticmethod
    def _is_wrapper(name: str) -> bool:
        return name in available_models() and issubclass(model_class(name).Options, WrapperOptions)

    @classmethod
    def _wrapper_message(cls, name: str) -> str:
        return (
            f"'{name}' wraps a backbone and is not one itself; model.backbone.name must name "
            "a backbone: " + ", ".join(available_models(Backbone))
        )


def backbones_with_layer_mods() -> list[str]:
    """Backbones whose prediction head takes per-layer `LayerMod`s."""
    return [n for n in available_models(Backbone) if model_class(n).head_accepts_layer_mods]


def require_layer_mods(backbone: str, what: str, hint: str = "") -> None:
    """A config error at `model.backbone.name` when that backbone's head takes no `LayerMod`s;
    `what` says what the wrapper does to the head's layers ("STAR scales ...")."""
    if not model_class(backbone).head_accepts_layer_mods:
        raise key_error(
            ("backbone", "name"),
            f"{what}, which '{backbone}' does not allow (supported backbones: "
            f"{', '.join(backbones_with_layer_mods())}){hint}",
            backbone,
        )


class BackboneWrapper(CTRModel):
    """Base of a model around `options.backbone`: `self.backbone` keeps its embedding table,
    `represent` and head (built only when `with_head`); `self.embedding` *is* that table."""

    Options = WrapperOptions

    def __init__(self, fields: list[EncodedField], options: WrapperOptions, with_head: bool = True):
        # Not CTRModel.__init__: that would create a second, unused embedding table.
        nn.Module.__init__(self)
        self.fields = fields
        self.options = options
        self.backbone: Backbone = build_model(options.backbone, fields, with_head=with_head)

    @property
    def embedding(self):
        return self.backbone.embedding

    @property
    def embedding_dim(self) -> int:
        return self.backbone.options.embedding_dim

    def register_field_index(self, name: str, roles: tuple[Role, ...]) -> list[int]:
        """A non-persistent buffer `name` of the positions of the fields with `roles`."""
        return self.register_index(name, fields_of_role(self.fields, *roles))

    def register_index(self, name: str, positions: list[int]) -> list[int]:
        """A non-persistent buffer `name` of these field positions (`field_positions`,
        `user_field_positions`); returns them."""
        self.register_buffer(name, torch.tensor(positions, dtype=torch.long), persistent=False)
        return positions


def field_positions(
    fields: list[EncodedField], names: list[str], key: str, allow_empty: bool = False
) -> list[int]:
    """Positions of the named fields; a `ConfigError` at `key` naming the fields otherwise
    (also for an empty list, unless `allow_empty`)."""
    known = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ConfigError(f"{key}: a field is named twice in {names}")
    missing = [n for n in names if n not in known]
    if missing or not (names or allow_empty):
        what = f"{', '.join(missing)} not a field of this data" if missing else "empty"
        raise ConfigError(f"{key}: {what}; fields: {', '.join(known)}")
    return [known.index(n) for n in names]


def user_field_positions(fields: list[EncodedField], key: str, why: str) -> list[int]:
    """Positions of the personal and user fields, in schema order; when the data has none, a
    one-line `ConfigError` at `key` saying `why` the model needs them and naming the fields."""
    positions = fields_of_role(fields, Role.PERSONAL, Role.USER)
    if not positions:
        raise ConfigError(
            f"{key}: {why}, but this data has no personal or user field; "
            f"its fields: {', '.join(f.name for f in fields)}"
        )
    return positions


# The partition MovieLens users are split by in the papers' user-modeling baselines.
DEFAULT_PARTITION_FIELD = "gender"


class PartitionFieldOptions(ModelOptions):
    partition_field: str | None = Field(
        None,
        description="the user field whose value is each sample's partition (null: gender "
        "where the data has it)",
    )


class PartitionOptions(PartitionFieldOptions):
    """The partition field of a model with parameters and compute per partition."""

    max_partitions: int = Field(
        64,
        ge=1,
        description="refuse a partition field with more values than this (unseen included): "
        "each partition has its own parameters and compute (MMoE, PLE: a gate and a tower, "
        "PLE's specific experts; STAR: a scaled copy of the head); 64 admits ML-100K's raw "
        "ages (62 values), not user_id or zip",
    )


def partition_field_index(
    fields: list[EncodedField], name: str | None, max_partitions: int | None = None
) -> tuple[int, int]:
    """`(column, number of partitions)` of the partition field; a `ConfigError` naming the
    user fields when `name` is not one (or, when None, the data has no gender field), and
    one naming the field and its count when it has more than `max_partitions` values."""
    if name is None and not any(
        f.name == DEFAULT_PARTITION_FIELD and f.role in USER_ROLES for f in fields
    ):
        raise ConfigError(
            f"model.partition_field: this data has no '{DEFAULT_PARTITION_FIELD}' field to "
            f"default to; name one of its user fields: {_user_names(fields)}"
        )
    i = user_field_index(fields, name or DEFAULT_PARTITION_FIELD, "model.partition_field")
    f = fields[i]
    if max_partitions is not None and f.cardinality > max_partitions:
        raise ConfigError(
            f"model.partition_field: '{f.name}' has {f.cardinality} values (partitions, "
            f"unseen included), over model.max_partitions={max_partitions}: each "
            "partition has its own parameters and compute; pick a coarser field or "
            "raise max_partitions"
        )
    return i, f.cardinality


USER_ROLES = (Role.USER, Role.PERSONAL)


def _user_names(fields: list[EncodedField]) -> str:
    return ", ".join(f.name for f in fields if f.role in USER_ROLES) or "(none)"


def user_field_index(fields: list[EncodedField], name: str, key: str, why: str = "") -> int:
    """Column of the user (or personal) field `name`; otherwise one `ConfigError` line at `key`
    saying what `name` is, `why` a user field is needed, and naming the user fields."""
    for i, f in enumerate(fields):
        if f.name == name and f.role in USER_ROLES:
            return i
    roles = [f.role for f in fields if f.name == name]
    kind = (
        ("an item field" if roles[0] == Role.ITEM else f"a {roles[0]} field")
        if roles
        else "not a field of this data"
    )
    raise ConfigError(f"{key}: '{name}' is {kind}; {why}user fields: {_user_names(fields)}")
