"""MovieLens 100K and 1M in their official GroupLens file layouts.

Both give the same eight fields, every value a string category, so that
models and configs can switch between the two datasets unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from gprec.data.encode import SOURCE_ROW
from gprec.data.readers import count_fields, read_delimited, require_unique
from gprec.data.schema import FieldSpec, RawTable, Role
from gprec.errors import DataError

log = logging.getLogger(__name__)

FIELDS = [
    FieldSpec("item_id", Role.ITEM),
    FieldSpec("genres", Role.ITEM),
    FieldSpec("year", Role.ITEM),
    FieldSpec("user_id", Role.PERSONAL),
    FieldSpec("age", Role.USER),
    FieldSpec("gender", Role.USER),
    FieldSpec("occupation", Role.USER),
    FieldSpec("zip", Role.USER),
]
UNKNOWN = "unknown"
# u.item's genre flags, in column order, for copies that ship without u.genre.
ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]  # fmt: skip

_USER_ID = {"user_id": pl.Int64}
_ITEM_ID = {"item_id": pl.Int64}
_RATINGS = ["user_id", "item_id", "rating", "timestamp"]
_RATING_TYPES = {**_USER_ID, **_ITEM_ID, "rating": pl.Float64, "timestamp": pl.Int64}


def load_ml100k(path: Path) -> RawTable:
    """MovieLens 100K from `u.data`, `u.user`, `u.item` (and `u.genre` when present)."""
    path = Path(path)
    files = [path / "u.data", path / "u.user", path / "u.item"]
    ratings = read_delimited(files[0], "\t", _RATINGS, dtypes=_RATING_TYPES)
    users = read_delimited(
        files[1], "|", ["user_id", "age", "gender", "occupation", "zip"], dtypes=_USER_ID
    )
    genre_names, genre_files = _ml100k_genres(path / "u.genre")
    flags = [f"genre_{k}" for k in range(len(genre_names))]
    items = read_delimited(
        files[2],
        "|",
        ["item_id", "title", "release_date", "video_release_date", "url", *flags],
        dtypes={**_ITEM_ID, **dict.fromkeys(flags, pl.Int8)},
    ).select(
        "item_id",
        _genre_combination(flags, genre_names).alias("genres"),
        _year(pl.col("title"), fallback=pl.col("release_date").str.slice(-4)).alias("year"),
    )
    return _assemble(ratings, items, users, files + genre_files)


def load_ml1m(path: Path, ratings_file: str = "ratings.dat") -> RawTable:
    """MovieLens 1M from `::`-separated files; the ratings may lack the timestamp column.

    Ratings of movies or users missing from movies.dat / users.dat are dropped
    (and the count logged): without their side fields they cannot be encoded.
    """
    path = Path(path)
    files = [path / ratings_file, path / "users.dat", path / "movies.dat"]
    ratings = _ml1m_ratings(files[0])
    users = read_delimited(
        files[1], "::", ["user_id", "gender", "age", "occupation", "zip"], dtypes=_USER_ID
    ).with_columns(pl.col("zip").str.slice(0, 5))
    items = read_delimited(files[2], "::", ["item_id", "title", "genres"], dtypes=_ITEM_ID).select(
        "item_id",
        pl.when(pl.col("genres") == "").then(pl.lit(UNKNOWN)).otherwise("genres").alias("genres"),
        _year(pl.col("title")).alias("year"),
    )
    return _assemble(ratings, items, users, files)


def _ml1m_ratings(path: Path) -> pl.DataFrame:
    """Read either ratings layout: with the timestamp (official) or without it."""
    n = count_fields(path, "::")
    if n not in (0, 3, 4):
        raise DataError(
            f"expected 4 columns (UserID::MovieID::Rating::Timestamp) or 3 (without the "
            f"timestamp) separated by '::', found {n}",
            path=path,
            line=1,
        )
    columns = _RATINGS[: n or 4]  # an empty file: read_delimited says so
    table = read_delimited(path, "::", columns, dtypes={c: _RATING_TYPES[c] for c in columns})
    if n == 3:
        table = table.with_columns(pl.lit(None, dtype=pl.Int64).alias("timestamp"))
    return table


def _ml100k_genres(path: Path) -> tuple[list[str], list[Path]]:
    """Genre names in flag order from u.genre, or the standard 19 when it is absent."""
    if not path.exists():
        return ML100K_GENRES, []
    table = read_delimited(path, "|", ["name", "index"], dtypes={"index": pl.Int64})
    return table.sort("index")["name"].to_list(), [path]


def _genre_combination(flags: list[str], names: list[str]) -> pl.Expr:
    """The set flags' names joined by "|", as one category; no flag set gives "unknown"."""
    joined = pl.concat_str(
        [pl.when(pl.col(f) == 1).then(pl.lit(n)) for f, n in zip(flags, names, strict=True)],
        separator="|",
        ignore_nulls=True,
    )
    return pl.when(joined == "").then(pl.lit(UNKNOWN)).otherwise(joined)


def _year(title: pl.Expr, fallback: pl.Expr | None = None) -> pl.Expr:
    """The 4-digit year at the end of a title like "Toy Story (1995)"."""
    year = title.str.extract(r"\((\d{4})\)\s*$", 1)
    if fallback is not None:
        year = year.fill_null(fallback.str.extract(r"^(\d{4})$", 1))
    return year.fill_null(pl.lit(UNKNOWN))


def _assemble(
    ratings: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame, files: list[Path]
) -> RawTable:
    """Join side fields onto the ratings, dropping ratings whose movie or user is unknown."""
    require_unique(users, "user_id", files[1])
    require_unique(items, "item_id", files[2])
    table = (
        ratings.with_row_index(SOURCE_ROW, offset=1)
        .join(items, on="item_id", how="inner", maintain_order="left")
        .join(users, on="user_id", how="inner", maintain_order="left")
    )
    dropped = ratings.height - table.height
    if dropped:
        log.warning(
            "%s: dropped %d of %d ratings whose movie or user is not in the movie/user files",
            files[0],
            dropped,
            ratings.height,
        )
    if table.height == 0:
        raise DataError("no rating refers to a known movie and user", path=files[0])
    table = table.select(
        *(pl.col(f.name).cast(pl.String) for f in FIELDS),
        pl.col("rating").alias(RawTable.TARGET),
        pl.col("timestamp").alias(RawTable.TIMESTAMP),
        # Only needed once rows were dropped: then table row i is no longer file line i + 1.
        *([pl.col(SOURCE_ROW)] if dropped else []),
    )
    return RawTable(table, list(FIELDS), source_files=files)
