"""Any dataset described by a small YAML schema: an interaction table plus optional side tables.

The schema is checked strictly (unknown keys, roles and columns are errors)
because a typo that silently dropped a field would still train, just worse.

    interactions: {path: interactions.csv, separator: ","}
    users: {path: users.csv, key: user_id}
    items: {path: items.csv, key: item_id}
    target: rating
    timestamp: ts
    fields: {user_id: personal, age: user, item_id: item, genre: item}
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from gprec.data.readers import (
    cast_numeric,
    read_table,
    require_unique,
    separator_hint,
    table_format,
)
from gprec.data.schema import FieldSpec, RawTable, Role
from gprec.errors import ConfigError, DataError

_TOP_KEYS = ("interactions", "users", "items", "target", "timestamp", "fields")
_SIDE_TABLES = ("users", "items")
_TABLE_KEYS = ("path", "format", "separator")
_ROLES = ", ".join(r.value for r in Role)


@dataclass(frozen=True)
class TableSpec:
    name: str  # the schema key: interactions, users or items
    path: Path
    format: str | None
    separator: str
    key: str | None  # the join column of a side table


@dataclass(frozen=True)
class GenericSchema:
    path: Path
    tables: list[TableSpec]  # the interactions first
    target: str
    timestamp: str | None
    fields: list[FieldSpec]

    def files(self) -> list[Path]:
        return [self.path, *(t.path for t in self.tables)]


def load_generic(schema_path: Path, data_dir: Path | None = None) -> RawTable:
    """The dataset a schema file describes; data paths are relative to `data_dir`
    if given, else to the schema file's directory."""
    schema = _with_files(parse_schema(schema_path, data_dir), data_dir)
    table = _numeric_columns(schema, _read(schema.tables[0]))
    for spec in schema.tables[1:]:
        table = _join_side(schema, table, spec)
    _require_fields(schema, table)
    return RawTable(_as_fields(schema, table), schema.fields, source_files=schema.files())


def _as_fields(schema: GenericSchema, table: pl.DataFrame, timestamp: bool = True) -> pl.DataFrame:
    """The fields as text (a missing value as ""), the target and the timestamp."""
    return table.select(
        *(pl.col(f.name).cast(pl.String).fill_null("") for f in schema.fields),
        RawTable.TARGET,
        *([RawTable.TIMESTAMP] if schema.timestamp and timestamp else []),
    )


class InteractionStream:
    """A generic dataset whose interactions are Parquet, read in blocks of rows: each block is
    the slice of the table `load_generic` gives (fields as text, the target), side tables
    joined, without the timestamp (nothing streamed uses it). Only the interaction columns
    that are needed are read; the side tables (users, items: one row per key) are read once
    and kept in memory. Memory while reading follows the block and the file's row groups
    (pyarrow decodes a row group's column chunks), not the file's size.
    """

    def __init__(self, schema_path: Path, data_dir: Path | None = None):
        import pyarrow.parquet as pq

        self.schema = schema = _with_files(parse_schema(schema_path, data_dir), data_dir)
        spec = schema.tables[0]
        self.path = spec.path
        if table_format(spec.path, spec.format) != "parquet":
            raise DataError(
                "data.format parquet-stream reads Parquet interactions, and this is CSV "
                "(convert it to Parquet, or use data.format memory)",
                path=spec.path,
            )
        if not spec.path.is_file():
            raise DataError("not a file", path=spec.path)
        try:
            self.file = pq.ParquetFile(spec.path)
        except Exception as e:  # pyarrow: ArrowInvalid, OSError, ...
            raise DataError(f"cannot read as parquet: {_first_line(e)}", path=spec.path) from e
        self.rows = self.file.metadata.num_rows
        if self.rows == 0:
            raise DataError("no data rows", path=spec.path)
        names = self.file.schema_arrow.names
        for column, name in ((schema.target, RawTable.TARGET), (schema.timestamp, "timestamp")):
            if column is not None and column not in names:
                raise _not_a_column(schema.path, name, column, [spec], names)
        # The columns `load_generic`'s table has at each step, as its joins see them.
        columns = [*names, RawTable.TARGET, *([RawTable.TIMESTAMP] if schema.timestamp else [])]
        self.sides: list[tuple[str, pl.DataFrame]] = []
        for side_spec in schema.tables[1:]:
            side = _side_table(schema, side_spec, spec, columns)
            self.sides.append((side_spec.key, side))
            columns += side.columns[1:]
        for f in schema.fields:
            if f.name not in columns:
                raise _not_a_column(schema.path, "field", f.name, schema.tables, columns)
        wanted = {schema.target, *(f.name for f in schema.fields), *(k for k, _ in self.sides)}
        self.read_columns = [c for c in names if c in wanted]

    def blocks(self, rows: int) -> Iterator[tuple[int, pl.DataFrame]]:
        """(rows of the file before the block, the block) for each block of up to `rows` rows."""
        offset = 0
        batches = self.file.iter_batches(batch_size=rows, columns=self.read_columns)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as e:  # a damaged page or column chunk
                raise DataError(
                    f"cannot read as parquet after row {offset:,d}: {_first_line(e)}",
                    path=self.path,
                ) from e
            table = pl.from_arrow(batch)
            table = _numeric_columns(self.schema, table, first_row=offset, timestamp=False)
            for key, side in self.sides:
                table = _join(table, key, side)
            yield offset, _as_fields(self.schema, table, timestamp=False)
            offset += batch.num_rows


def _first_line(e: BaseException) -> str:
    return (str(e).strip().split("\n", 1)[0] or type(e).__name__)[:200]


def schema_source_files(schema_path: Path, data_dir: Path | None = None) -> list[Path]:
    """The schema file and every data file it names: what a cache key must hash."""
    return _with_files(parse_schema(schema_path, data_dir), data_dir).files()


def _with_files(schema: GenericSchema, data_dir: Path | None) -> GenericSchema:
    """Refuse a schema naming a missing data file, saying where the path was looked for."""
    base = "the data directory" if data_dir is not None else "the schema file's directory"
    for spec in schema.tables:
        if not spec.path.exists():
            raise DataError(
                f"file not found ({spec.name}.path in {schema.path}; a relative path is "
                f"taken from {base})",
                path=spec.path,
            )
    return schema


def parse_schema(schema_path: Path, data_dir: Path | None = None) -> GenericSchema:
    path = Path(schema_path)
    doc = _load_yaml(path)
    _no_unknown_keys(path, doc, _TOP_KEYS, "")
    for key in ("interactions", "target", "fields"):
        if doc.get(key) is None:
            raise _error(path, f"missing required key {key!r}")
    base = Path(data_dir) if data_dir is not None else path.parent
    tables = [_table_spec(path, base, "interactions", doc["interactions"])]
    tables += [_table_spec(path, base, n, doc[n]) for n in _SIDE_TABLES if doc.get(n) is not None]
    timestamp = doc.get("timestamp")
    return GenericSchema(
        path=path,
        tables=tables,
        target=_name(path, "target", doc["target"]),
        timestamp=None if timestamp is None else _name(path, "timestamp", timestamp),
        fields=_fields(path, doc["fields"]),
    )


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError("schema file not found", path=path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).split("\n", 1)[0]
        raise _error(path, f"invalid YAML{where}: {problem}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", path=path) from e
    if not isinstance(doc, dict):
        raise _error(path, "expected a mapping of keys (interactions, target, fields, ...)")
    return doc


def _table_spec(path: Path, base: Path, name: str, entry: Any) -> TableSpec:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict):
        raise _error(path, f"{name}: expected a file path or a mapping with 'path'")
    allowed = _TABLE_KEYS + (("key",) if name in _SIDE_TABLES else ())
    _no_unknown_keys(path, entry, allowed, f"{name}.")
    file = _name(path, f"{name}.path", entry.get("path"))
    separator = entry.get("separator", ",")
    if not isinstance(separator, str) or len(separator) != 1:
        raise _error(path, f"{name}.separator: must be one character, got {separator!r}")
    fmt = entry.get("format")
    if fmt not in (None, "csv", "parquet"):
        raise _error(path, f"{name}.format: must be csv or parquet, got {fmt!r}")
    key = _name(path, f"{name}.key", entry.get("key")) if name in _SIDE_TABLES else None
    return TableSpec(name, base / Path(file).expanduser(), fmt, separator, key)


def _fields(path: Path, entry: Any) -> list[FieldSpec]:
    if not isinstance(entry, dict) or not entry:
        raise _error(path, "fields: expected a mapping of column name -> role")
    fields = []
    for name, role in entry.items():
        if name in (RawTable.TARGET, RawTable.TIMESTAMP):
            raise _error(path, f"fields.{name}: the name {name!r} is reserved; rename the column")
        try:
            fields.append(FieldSpec(str(name), Role(role)))
        except ValueError:
            raise _error(
                path, f"fields.{name}: unknown role {role!r} (expected one of {_ROLES})"
            ) from None
    return fields


def _name(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _error(path, f"{key}: expected a name, got {value!r}")
    return value


def _no_unknown_keys(path: Path, entry: dict, allowed: tuple[str, ...], prefix: str) -> None:
    for key in entry:
        if key not in allowed:
            raise _error(
                path, f"unknown key '{prefix}{key}' (allowed: {', '.join(sorted(allowed))})"
            )


def _error(path: Path, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _read(spec: TableSpec) -> pl.DataFrame:
    return read_table(spec.path, spec.format, spec.separator)


def _numeric_columns(
    schema: GenericSchema, table: pl.DataFrame, first_row: int = 0, timestamp: bool = True
) -> pl.DataFrame:
    """Add the target (Float64) and timestamp (Int64), checked while the file's lines are known.

    `first_row`: rows of the file before `table` (a block of a streamed file, which leaves out
    the timestamp: nothing streamed uses it).
    """
    spec = schema.tables[0]
    # Line of the first data row below the CSV header; Parquet has no lines.
    line = 2 if table_format(spec.path, spec.format) == "csv" else None
    wanted = [(schema.target, RawTable.TARGET, pl.Float64)]
    if schema.timestamp and timestamp:
        wanted.append((schema.timestamp, RawTable.TIMESTAMP, pl.Int64))
    numeric = []
    for column, name, dtype in wanted:
        if column not in table.columns:
            raise _not_a_column(schema.path, name, column, [spec], table.columns)
        values = cast_numeric(table[column], dtype, spec.path, line, first_row=first_row)
        numeric.append(values.alias(name))
    return table.with_columns(numeric)


def _join_side(schema: GenericSchema, table: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """Left-join the side table's columns the interactions lack, by its key."""
    side = _side_table(schema, spec, schema.tables[0], table.columns)
    return _join(table, spec.key, side)


def _side_table(
    schema: GenericSchema, spec: TableSpec, interactions: TableSpec, columns: list[str]
) -> pl.DataFrame:
    """The side table's key (as text) and the columns it adds to a table of `columns`."""
    side = _read(spec)
    key = spec.key
    for source, names in ((interactions, columns), (spec, side.columns)):
        if key not in names:
            raise _not_a_column(schema.path, f"{spec.name}.key", key, [source], names)
    wanted = [c for c in side.columns if c != key and c not in columns]
    side = side.select(pl.col(key).cast(pl.String), *wanted)
    require_unique(side, key, spec.path)
    return side


def _join(table: pl.DataFrame, key: str, side: pl.DataFrame) -> pl.DataFrame:
    return table.with_columns(pl.col(key).cast(pl.String)).join(
        side, on=key, how="left", maintain_order="left"
    )


def _require_fields(schema: GenericSchema, table: pl.DataFrame) -> None:
    for f in schema.fields:
        if f.name not in table.columns:
            raise _not_a_column(schema.path, "field", f.name, schema.tables, table.columns)


def _not_a_column(
    path: Path, what: str, name: str, tables: list[TableSpec], columns: list[str]
) -> ConfigError:
    names = ", ".join(t.path.name for t in tables)
    message = f"{what} {name!r} is not a column of {names}"
    # A CSV read with the wrong separator has one column named after the whole
    # header; then the separator is the fix, not a close column name.
    if len(tables) == 1 and table_format(tables[0].path, tables[0].format) == "csv":
        hint = separator_hint(columns, tables[0].separator)
        if hint:
            return _error(path, f"{message}: {hint} (set {tables[0].name}.separator)")
    guess = difflib.get_close_matches(name, columns, n=1)
    return _error(path, message + (f" (did you mean {guess[0]!r}?)" if guess else ""))
