"""Tables in and out in batches: CSV or Parquet read a bounded number of rows at a time (so a
file larger than memory can be scored), and written batch by batch, to a file atomically (a
temp file beside it, renamed when complete) or to a stream.

CSV columns are read as strings (as the generic loader reads them: a value is a category, and
`007` must stay `007`); a Parquet file keeps its column types. Header names are stripped, as
`gprec.data.readers.read_table` strips them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from gprec.errors import DataError

CSV_BLOCK_BYTES = 1 << 20  # what pyarrow parses at once; batches are then cut to `batch_rows`


FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: str | Path, what: str = "file") -> str:
    """'csv' or 'parquet' from the suffix of `path`; one `DataError` line for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"unknown {what} type {suffix or '(no suffix)'!r}: give a .csv, .tsv or .parquet file",
            path=path,
        )
    return FORMATS[suffix]


def separator_of(path: Path) -> str:
    return "\t" if Path(path).suffix.lower() == ".tsv" else ","


@dataclass
class TableReader:
    """A CSV or Parquet file's column names and its rows in batches of `batch_rows`."""

    path: Path
    format: str
    columns: list[str]
    batch_rows: int

    def batches(self) -> Iterator[pa.Table]:
        """The rows in order, `batch_rows` at a time (the last batch may be shorter)."""
        try:
            yield from _rebatch(self._raw_batches(), self.batch_rows)
        except (pa.ArrowException, OSError) as e:
            raise DataError(
                f"cannot read as {self.format}: {_first_line(e)}", path=self.path
            ) from None

    def _raw_batches(self) -> Iterator[pa.RecordBatch]:
        if self.format == "parquet":
            yield from pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_rows)
            return
        reader = pacsv.open_csv(
            self.path,
            read_options=pacsv.ReadOptions(
                column_names=self.columns, skip_rows=1, block_size=CSV_BLOCK_BYTES
            ),
            parse_options=pacsv.ParseOptions(delimiter=separator_of(self.path)),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(self.columns, pa.string()), strings_can_be_null=False
            ),
        )
        yield from reader


def open_table(path: str | Path, batch_rows: int) -> TableReader:
    """A reader of `path` (format from its suffix: .csv, .tsv, .parquet, .pq); one `DataError`
    line when it cannot be read or has no columns."""
    path = Path(path)
    if batch_rows < 1:
        raise DataError(f"batch rows must be at least 1, not {batch_rows}")
    fmt = file_format(path, "input")
    if not path.exists():
        raise DataError("file not found", path=path)
    if not path.is_file():
        raise DataError("not a file", path=path)
    try:
        if fmt == "parquet":
            columns = pq.ParquetFile(path).schema_arrow.names
        else:
            columns = _csv_header(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read as {fmt}: {_first_line(e)}", path=path) from None
    if not columns:
        raise DataError("no columns: the file is empty", path=path)
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"column {repeated[0]!r} appears more than once", path=path)
    return TableReader(path, fmt, columns, batch_rows)


def _csv_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh, delimiter=separator_of(path)), [])
    return [name.strip() for name in header]


def _rebatch(batches, n: int) -> Iterator[pa.Table]:
    """Record batches of any sizes as tables of exactly `n` rows (the last one fewer)."""
    pending, count = [], 0
    for batch in batches:
        while batch.num_rows:
            take = min(n - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == n:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending)


class TableWriter:
    """Writes tables of one schema batch by batch, as CSV (polars' writer: values quoted only
    where needed, floats in their shortest exact form) or Parquet (pyarrow's: the columns keep
    their types), to a path or an open binary file."""

    def __init__(self, sink: str | BinaryIO, format: str):
        self.format = format
        self._own = isinstance(sink, str)
        self._sink = open(sink, "wb") if self._own and format == "csv" else sink
        self._parquet = None
        self._schema = None
        self._header = True

    def write(self, table: pa.Table) -> None:
        if self._schema is None:
            self._schema = table.schema
        table = table.cast(self._schema)
        if self.format == "parquet":
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._sink, self._schema)
            self._parquet.write_table(table)
            return
        pl.from_arrow(table).write_csv(self._sink, include_header=self._header)
        self._header = False

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._own and self.format == "csv":
            self._sink.close()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
