"""Categorical encoding: vocabularies from the training split, index 0 for unseen values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from gprec.data.schema import EncodedField, FieldSpec, RawTable
from gprec.errors import DataError

UNSEEN = 0


@dataclass
class Vocabulary:
    """Per field, the training values in index order (value i has index i + 1)."""

    values: dict[str, list[str]]

    @classmethod
    def fit(cls, table: pl.DataFrame, fields: list[FieldSpec]) -> Vocabulary:
        return cls(
            {
                f.name: table[f.name].cast(pl.String).drop_nulls().unique().sort().to_list()
                for f in fields
            }
        )

    def cardinality(self, name: str) -> int:
        return len(self.values[name]) + 1

    def encode(self, table: pl.DataFrame, fields: list[FieldSpec]) -> np.ndarray:
        """Map every field to its index; values absent from the vocabulary map to 0."""
        columns = []
        for f in fields:
            vocab = self.values[f.name]
            codes = (
                table[f.name]
                .cast(pl.String)
                .replace_strict(
                    vocab, range(1, len(vocab) + 1), default=UNSEEN, return_dtype=pl.Int64
                )
            )
            columns.append(codes.to_numpy())
        if not columns:
            return np.zeros((table.height, 0), dtype=np.int64)
        return np.ascontiguousarray(np.stack(columns, axis=1))

    def to_json(self) -> dict[str, list[str]]:
        return self.values


def binary_labels(raw: RawTable, threshold: float | None) -> np.ndarray:
    """Labels as float32 0/1: `target > threshold`, or the target itself when already binary."""
    target = raw.table[RawTable.TARGET]
    if target.null_count():
        first = int(target.is_null().arg_max())
        raise DataError(f"target is missing on data row {first + 1}")
    values = target.cast(pl.Float64).to_numpy()
    if threshold is not None:
        return (values > threshold).astype(np.float32)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise DataError(
            f"target {values[bad][0]!r} is not 0/1 (data row {int(np.argmax(bad)) + 1}); "
            "set data.label_threshold to turn ratings into labels"
        )
    return values.astype(np.float32)


def encoded_fields(fields: list[FieldSpec], vocab: Vocabulary) -> list[EncodedField]:
    return [EncodedField(f.name, f.role, vocab.cardinality(f.name)) for f in fields]
