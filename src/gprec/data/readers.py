"""Reading text and columnar data files with errors that name the file and line.

The happy path hands the whole file to polars in one call; only once a
vectorised check has seen that something is wrong does a slow per-line scan
run, to name the first bad line.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl

from gprec.errors import DataError

# Control characters that stand in for a multi-character separator, since
# polars only splits on a single byte; the first absent from the text is used.
_STAND_INS = ("\x1f", "\x1e", "\x1d", "\x1c", "\x01")
# What a delimited file most likely uses when the configured separator finds one column.
_LIKELY_SEPARATORS = (",", ";", "\t", "|")
_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_delimited(
    path: str | Path,
    separator: str,
    columns: list[str],
    encoding: str = "latin-1",
    dtypes: dict[str, pl.DataType] | None = None,
) -> pl.DataFrame:
    """Read a header-less delimited file with exactly `columns` per line.

    Columns not in `dtypes` stay strings (empty fields as ""); a value of a
    numeric column that does not parse, or is empty, is an error. No quoting:
    MovieLens titles contain quote characters that are part of the text.
    """
    path = Path(path)
    dtypes = dtypes or {}
    text = _decode(_read_bytes(path), encoding, path).rstrip("\r\n")
    if not text.strip():
        raise DataError("no data rows", path=path)
    token = _single_char(separator, text, path)
    text = text.replace(separator, token) if token != separator else text
    table = _parse_strings(text, token, columns, path, separator)
    return table.with_columns(
        cast_numeric(table[c], t, path, first_line=1) for c, t in dtypes.items()
    )


def read_table(path: str | Path, format: str | None = None, separator: str = ",") -> pl.DataFrame:
    """Read a CSV (with a header) or Parquet file; `format` defaults from the suffix.

    CSV columns come back as strings, so that a caller needing numbers can
    cast them itself and name the offending line instead of a type guess failing
    somewhere inside the file. Header names are stripped: "a, b" is common.
    """
    path = Path(path)
    fmt = table_format(path, format)
    _check_readable(path)
    try:
        if fmt == "csv":
            table = pl.read_csv(
                path,
                separator=separator,
                infer_schema=False,
                with_column_names=lambda names: [n.strip() for n in names],
            )
        else:
            table = pl.read_parquet(path)
    except pl.exceptions.NoDataError:
        raise DataError("no data rows", path=path) from None
    except (pl.exceptions.PolarsError, OSError) as e:
        if fmt == "csv":
            _raise_csv_problem(path, separator)
        raise DataError(f"cannot read as {fmt}: {_first_line(str(e))}", path=path) from e
    if table.width == 0 or table.height == 0:
        raise DataError("no data rows", path=path)
    # polars pads a short row with nulls instead of failing (a long one it does
    # reject), so a null in the last column is the cheap sign of one; an empty
    # last field gives the same null, so only the slow scan can tell them apart.
    if fmt == "csv" and table.width > 1 and table[table.columns[-1]].null_count():
        _raise_csv_problem(path, separator)
    return table


def table_format(path: Path, format: str | None = None) -> str:
    """'csv' or 'parquet': `format` if given, else from the file's suffix."""
    fmt = format or _FORMATS.get(Path(path).suffix.lower())
    if fmt not in ("csv", "parquet"):
        raise DataError(
            f"unknown data format {fmt or Path(path).suffix!r} (use a .csv or .parquet file, "
            "or set format: csv|parquet)",
            path=path,
        )
    return fmt


def count_fields(path: str | Path, separator: str, encoding: str = "latin-1") -> int:
    """How many fields the first line has (0 for an empty file), to tell layouts apart."""
    path = Path(path)
    _check_readable(path)
    with open(path, "rb") as fh:
        line = _decode(fh.readline(), encoding, path).rstrip("\r\n")
    return line.count(separator) + 1 if line else 0


def cast_numeric(
    values: pl.Series, dtype: pl.DataType, path: Path, first_line: int | None, first_row: int = 0
) -> pl.Series:
    """Cast to a numeric `dtype`; a missing or unparsable value is a DataError.

    `first_line` is the file line of the first value, or None for formats
    without lines (Parquet), where the error names the row instead (`first_row`: how many
    rows of the file come before `values`, for a file read in blocks).
    """
    cast = values.cast(dtype, strict=False)
    bad = cast.is_null().arg_true()
    if len(bad) == 0:
        return cast
    row = int(bad[0])
    kind = "an integer" if dtype.is_integer() else "a number"
    message = f"column {values.name!r}: {values[row]!r} is not {kind}"
    if first_line is None:
        raise DataError(f"row {first_row + row + 1}: {message}", path=path)
    raise DataError(message, path=path, line=first_line + row)


def require_unique(table: pl.DataFrame, key: str, path: Path) -> None:
    """A side table's key must be unique, or joining it would duplicate interactions."""
    repeated = table.filter(pl.col(key).is_duplicated())[key]
    if len(repeated):
        raise DataError(f"key column {key!r} repeats the value {repeated[0]!r}", path=path)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise DataError("file not found", path=path)
    if not path.is_file():
        raise DataError("not a file", path=path)


def _read_bytes(path: Path) -> bytes:
    _check_readable(path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", path=path) from e


def _decode(data: bytes, encoding: str, path: Path) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"not valid {encoding} text ({e.reason})", path=path, line=line) from e
    except LookupError as e:
        raise DataError(f"unknown text encoding {encoding!r}", path=path) from e


def _single_char(separator: str, text: str, path: Path) -> str:
    if len(separator) == 1:
        return separator
    for c in _STAND_INS:
        if c not in text:
            return c
    raise DataError(f"cannot split on {separator!r}: the file contains control characters", path)


def _parse_strings(
    text: str, token: str, columns: list[str], path: Path, separator: str
) -> pl.DataFrame:
    """All columns as strings; a line with the wrong number of fields is an error."""
    n_lines = text.count("\n") + 1
    problem = "uneven field counts"
    # Equal totals can still hide a long line offset by a short one: polars
    # rejects the long one, and the row count catches what else slips through.
    if text.count(token) == (len(columns) - 1) * n_lines:
        try:
            table = pl.read_csv(
                text.encode("utf-8"),
                has_header=False,
                separator=token,
                quote_char=None,
                schema=dict.fromkeys(columns, pl.String),
                empty_string_is_null=False,
            )
        except pl.exceptions.PolarsError as e:
            problem = _first_line(str(e))
        else:
            if table.height == n_lines:
                return table
            problem = f"{table.height} rows parsed from {n_lines} lines"
    bad_line = _first_ragged_line(text, token, len(columns), path, separator)
    raise bad_line or DataError(f"cannot parse: {problem}", path=path)


def _first_ragged_line(
    text: str, token: str, n_columns: int, path: Path, separator: str
) -> DataError | None:
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        found = line.count(token) + 1
        if not line.strip() and n_columns > 1:
            return DataError(f"blank line (expected {n_columns} columns)", path, number)
        if found != n_columns:
            hint = " — wrong separator?" if found == 1 else ""
            message = f"expected {n_columns} columns separated by {separator!r}, found {found}"
            return DataError(message + hint, path, number)
    return None


def _raise_csv_problem(path: Path, separator: str) -> None:
    """Name the line polars choked on, or padded: a row of the wrong width, or a blank line."""
    text = _decode(_read_bytes(path), "utf-8", path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    header = next(reader, [])
    expected = f"expected {len(header)} columns separated by {separator!r} as in the header"
    for row in reader:
        if not row and len(header) > 1:
            raise DataError(f"blank line ({expected})", path, reader.line_num)
        if row and len(row) != len(header):
            raise DataError(
                f"{expected}, found {len(row)}{_row_hint(header, row, separator)}",
                path,
                reader.line_num,
            )


def _row_hint(header: list[str], row: list[str], separator: str) -> str:
    """Why a row's width differs from the header's, when the separator is the likely cause."""
    if len(header) == 1 and (hint := separator_hint(header, separator)):
        return f" — {hint}"
    if len(row) == 1:
        guess = _guess_separator(row[0], separator)
        return f" — is this line separated by {guess!r}?" if guess else " — wrong separator?"
    return ""


def separator_hint(columns: list[str], separator: str) -> str:
    """A guess at the right separator when a CSV header came out as one column, else ""."""
    guess = _guess_separator(columns[0], separator) if len(columns) == 1 else None
    if guess is None:
        return ""
    return f"the header has 1 column; is the separator {guess!r} not {separator!r}?"


def _guess_separator(text: str, separator: str) -> str | None:
    counts = {c: text.count(c) for c in _LIKELY_SEPARATORS if c != separator}
    guess = max(counts, key=lambda c: counts[c])
    return guess if counts[guess] else None


def _first_line(message: str) -> str:
    return message.strip().split("\n", 1)[0]
