"""What a dataset is to gprec: categorical fields with roles, plus a target."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import polars as pl


class Role(StrEnum):
    """Which part of a sample a field describes (docs/gprec.md §1)."""

    PERSONAL = "personal"  # ID-like user fields, x_p
    USER = "user"  # other user fields, x_o
    ITEM = "item"  # item fields, x_v
    CONTEXT = "context"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    role: Role


@dataclass
class RawTable:
    """A loaded, not yet encoded dataset.

    `table` has one column per field (any dtype; values are categories), a
    numeric `target` column (a rating, or an already binary label) and,
    when the source has one, an Int64 `timestamp` column.
    """

    table: pl.DataFrame
    fields: list[FieldSpec]
    source_files: list[Path] = field(default_factory=list)
    # Sources with their own split (data.split: file): each row's "train" or "test", and the
    # test rows' listed negatives as (offsets, raw item values), aligned with the test rows.
    split: np.ndarray | None = None
    test_negatives: tuple[np.ndarray, np.ndarray] | None = None
    # Values a field takes beyond the training rows that still get an index of their own (a
    # group dataset's whole item catalogue: items that occur only in listed negatives).
    catalogue: dict[str, list[str]] | None = None

    TARGET = "target"
    TIMESTAMP = "timestamp"

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def has_timestamp(self) -> bool:
        return (
            self.TIMESTAMP in self.table.columns
            and self.table[self.TIMESTAMP].null_count() < self.table.height
        )


@dataclass(frozen=True)
class EncodedField:
    """A field after encoding: what a model needs to size its embedding table.

    `cardinality` counts index 0, which every field reserves for unseen values.
    """

    name: str
    role: Role
    cardinality: int


def fields_of_role(fields: list[EncodedField], *roles: Role) -> list[int]:
    """Column positions of the fields with one of `roles`, in schema order."""
    return [i for i, f in enumerate(fields) if f.role in roles]
