"""Categorical encoding: vocabularies from the training split, index 0 for unseen values.

Also the row-level checks that run before the split: labels and duplicate rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from gprec.data.schema import EncodedField, FieldSpec, RawTable
from gprec.errors import DataError

UNSEEN = 0
# A loader that drops rows (MovieLens: ratings of unknown movies) or a policy that
# removes them adds this column: each row's 1-based data row in the interactions
# file, so messages name the row a user can find. Without it, table row i is data row i + 1.
SOURCE_ROW = "__source_row"


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


def target_values(raw: RawTable, path: Path | None = None) -> np.ndarray:
    """The target itself as float64 (a rating): `data.target: value` keeps it (as float32),
    `binary_labels` thresholds it."""
    target = raw.table[RawTable.TARGET]
    if target.null_count():
        first = int(target.is_null().arg_max())
        raise DataError(f"target is missing on data row {data_rows(raw)[first]}", path=path)
    return target.cast(pl.Float64).to_numpy()


def binary_labels(raw: RawTable, threshold: float | None, path: Path | None = None) -> np.ndarray:
    """Labels as float32 0/1: `target > threshold`, or the target itself when already binary.

    `path` is the interactions file, for messages.
    """
    values = target_values(raw, path)
    if threshold is not None:
        return (values > threshold).astype(np.float32)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"target {_plain(values[first])} on data row {data_rows(raw)[first]} is not 0/1; "
            "set data.label_threshold to turn ratings into labels",
            path=path,
        )
    return values.astype(np.float32)


def _plain(value: float) -> str:
    """3.0 as `3`, 2.5 as `2.5`: a number as the user wrote it, not numpy's repr."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def data_rows(raw: RawTable) -> np.ndarray:
    """Each table row's 1-based data row in the interactions file (see SOURCE_ROW)."""
    if SOURCE_ROW in raw.table.columns:
        return raw.table[SOURCE_ROW].to_numpy()
    return np.arange(1, raw.table.height + 1)


def find_duplicates(raw: RawTable) -> tuple[int, int, int] | None:
    """Rows equal to an earlier row in every field: (how many, the first such row, the
    earlier row it repeats), as table row indices; None when there are none.

    Target and timestamp are not compared: the same user and item rated twice is
    still one interaction that a random split can put in both train and test.
    """
    fields = pl.struct(raw.field_names)
    repeat = raw.table.select(~fields.is_first_distinct()).to_series()
    count = int(repeat.sum())
    if count == 0:
        return None
    first = int(repeat.arg_true()[0])
    values = raw.table.row(first, named=True)
    same = raw.table.select(
        pl.all_horizontal(pl.col(n).eq_missing(pl.lit(values[n])) for n in raw.field_names)
    ).to_series()
    return count, first, int(same.arg_true()[0])


def drop_duplicates(raw: RawTable) -> RawTable:
    """Keep the last of each set of rows equal in every field: the latest by timestamp
    when there is one, else the last in the file; the kept rows stay in file order."""
    table = raw.table
    if SOURCE_ROW not in table.columns:
        table = table.with_row_index(SOURCE_ROW, offset=1)
    order = [RawTable.TIMESTAMP, SOURCE_ROW] if raw.has_timestamp() else [SOURCE_ROW]
    kept = table.sort(order).unique(subset=raw.field_names, keep="last").sort(SOURCE_ROW)
    return RawTable(kept, raw.fields, raw.source_files)


def encoded_fields(fields: list[FieldSpec], vocab: Vocabulary) -> list[EncodedField]:
    return [EncodedField(f.name, f.role, vocab.cardinality(f.name)) for f in fields]
