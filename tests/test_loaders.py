import logging
import os
from pathlib import Path

import polars as pl
import pytest

from gprec.data.generic import load_generic, schema_source_files
from gprec.data.movielens import load_ml1m, load_ml100k
from gprec.data.readers import read_delimited, read_table
from gprec.data.schema import RawTable, Role

# The real datasets: where $GPREC_DATA points (as for the CLI), else the workspace's copy.
SHARED = Path(os.environ.get("GPREC_DATA") or Path(__file__).parents[2] / "shared" / "data")
FIELD_ORDER = ["item_id", "genres", "year", "user_id", "age", "gender", "occupation", "zip"]
ROLES = [Role.ITEM, Role.ITEM, Role.ITEM, Role.PERSONAL] + [Role.USER] * 4

U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t1\t4\t881251000\n22\t267\t5\t878887200\n186\t242\t2\t891717800\n"
U_USER = "22|25|M|writer|40206\n186|39|F|executive|00000\n196|49|M|writer|55105\n"
U_GENRE = (
    "".join(
        f"{g}|{k}\n"
        for k, g in enumerate(
            [
                "unknown",
                "Action",
                "Adventure",
                "Animation",
                "Children's",
                "Comedy",
                "Crime",
                "Documentary",
                "Drama",
                "Fantasy",
                "Film-Noir",
                "Horror",
                "Musical",
                "Mystery",
                "Romance",
                "Sci-Fi",
                "Thriller",
                "War",
                "Western",
            ]
        )  # fmt: skip
    )
    + "\n"
)
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "302|L.A. Confidential (1997)|01-Jan-1997||http://us.imdb.com/M/title-exact?L%2EA%2E+Confidential+(1997)|0|0|0|0|0|0|1|0|0|0|1|0|0|1|0|0|1|0|0\n"
    "377|Heavyweights|01-Jan-1994||http://us.imdb.com/M/title-exact?Heavyweights%20(1994)|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)

ML1M_RATINGS = (
    "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::73::2::978299000\n"
)
ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072-1234\n"
ML1M_MOVIES = (
    "73::Misérables, Les (1995)::Drama|War\n"
    "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
    "260::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi\n"
)


def write_ml100k(directory: Path, genre_file: bool = True) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "u.data").write_text(U_DATA)
    (directory / "u.user").write_text(U_USER)
    (directory / "u.item").write_bytes(U_ITEM.encode("latin-1"))
    if genre_file:
        (directory / "u.genre").write_text(U_GENRE)
    return directory


def write_ml1m(directory: Path, ratings: str = ML1M_RATINGS, name: str = "ratings.dat") -> Path:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(ratings)
    (directory / "users.dat").write_text(ML1M_USERS)
    (directory / "movies.dat").write_bytes(ML1M_MOVIES.encode("latin-1"))
    return directory


def by_item(raw: RawTable) -> dict[str, dict]:
    return {row["item_id"]: row for row in raw.table.iter_rows(named=True)}


@pytest.mark.parametrize("genre_file", [True, False])
def test_ml100k_fields_values_and_dtypes(tmp_path, genre_file):
    raw = load_ml100k(write_ml100k(tmp_path / "ml", genre_file))
    assert raw.field_names == FIELD_ORDER
    assert [f.role for f in raw.fields] == ROLES
    assert raw.table.columns == [*FIELD_ORDER, "target", "timestamp"]
    assert raw.table.dtypes == [pl.String] * 8 + [pl.Float64, pl.Int64]
    assert raw.table.height == 6
    assert raw.table.row(0) == (
        "242", "Comedy", "1996", "196", "49", "M", "writer", "55105", 3.0, 881250949,
    )  # fmt: skip
    items = by_item(raw)
    assert items["1"]["genres"] == "Animation|Children's|Comedy"
    assert items["1"]["year"] == "1995"
    assert items["302"]["genres"] == "Crime|Film-Noir|Mystery|Thriller"
    assert items["267"]["genres"] == "unknown"  # the "unknown" genre flag itself
    assert items["267"]["year"] == "unknown"  # neither title year nor release date
    assert items["377"]["genres"] == "unknown"  # no flag set
    assert items["377"]["year"] == "1994"  # from the release date
    assert items["302"]["zip"] == "00000"  # kept as text, leading zeros intact
    assert raw.has_timestamp()


def test_ml100k_source_files(tmp_path):
    directory = write_ml100k(tmp_path / "ml")
    assert [p.name for p in load_ml100k(directory).source_files] == [
        "u.data", "u.user", "u.item", "u.genre",
    ]  # fmt: skip


def test_ml1m_official_layout_with_timestamps(tmp_path):
    raw = load_ml1m(write_ml1m(tmp_path / "ml"))
    assert raw.field_names == FIELD_ORDER
    assert [f.role for f in raw.fields] == ROLES
    assert raw.table.dtypes == [pl.String] * 8 + [pl.Float64, pl.Int64]
    assert raw.table.height == 4
    assert raw.table.row(0) == (
        "1193", "Drama", "1975", "1", "1", "F", "10", "48067", 5.0, 978300760,
    )  # fmt: skip
    items = by_item(raw)
    assert items["73"]["genres"] == "Drama|War"
    assert items["73"]["year"] == "1995"
    assert items["73"]["zip"] == "70072"  # "70072-1234" cut to 5 characters
    assert items["661"]["genres"] == "Animation|Children's|Musical"
    assert raw.has_timestamp()


def test_ml1m_without_timestamps(tmp_path):
    ratings = "1::1193::5\n1::661::3\n2::260::4"  # no newline at the end
    raw = load_ml1m(write_ml1m(tmp_path / "ml", ratings, "r.dat"), "r.dat")
    assert raw.table.height == 3
    assert raw.table["timestamp"].dtype == pl.Int64
    assert raw.table["timestamp"].null_count() == 3
    assert not raw.has_timestamp()
    assert by_item(raw)["260"]["year"] == "1977"  # "Star Wars: Episode IV ..." split on '::' only
    assert raw.table["target"].to_list() == [5.0, 3.0, 4.0]


def test_ml1m_latin1_title_is_read(tmp_path):
    directory = write_ml1m(tmp_path / "ml")
    movies = read_delimited(directory / "movies.dat", "::", ["id", "title", "genres"])
    assert movies["title"][0] == "Misérables, Les (1995)"
    assert movies["title"][3] == "Star Wars: Episode IV - A New Hope (1977)"


def test_ml1m_drops_ratings_of_unknown_movies_and_users(tmp_path, caplog):
    ratings = ML1M_RATINGS + "1::9999::4::978300000\n3::1193::4::978300001\n"
    with caplog.at_level(logging.WARNING, logger="gprec.data.movielens"):
        raw = load_ml1m(write_ml1m(tmp_path / "ml", ratings))
    assert raw.table.height == 4
    assert "dropped 2 of 6 ratings" in caplog.text


def test_read_delimited_line_endings_and_trailing_blank_lines(tmp_path):
    path = tmp_path / "x.dat"
    path.write_bytes(b"1|a b|2.5\r\n2||3\r\n\r\n\n")
    table = read_delimited(path, "|", ["id", "name", "score"], dtypes={"score": pl.Float64})
    assert table.rows() == [("1", "a b", 2.5), ("2", "", 3.0)]


def test_read_delimited_keeps_quotes_as_text(tmp_path):
    path = tmp_path / "x.dat"
    path.write_text('1::"Great Escape, The" (1963)::War\n2::x "y::Drama\n')
    table = read_delimited(path, "::", ["id", "title", "genres"])
    assert table["title"].to_list() == ['"Great Escape, The" (1963)', 'x "y']


def write_generic(directory: Path, schema: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "interactions.csv").write_text(
        "uid,iid,rating,ts\n1,a,5,100\n2,b,1,200\n3,a,4,300\n"
    )
    (directory / "users.csv").write_text("uid, age\n1,25\n2,40\n")  # user 3 has no row
    (directory / "items.csv").write_text("iid,genre\na,Drama\nb,Comedy\n")
    (directory / "schema.yaml").write_text(schema)
    return directory / "schema.yaml"


SCHEMA = """
interactions: {path: interactions.csv, separator: ","}
users: {path: users.csv, key: uid}
items: {path: items.csv, key: iid}
target: rating
timestamp: ts
fields:
  uid: personal
  age: user
  iid: item
  genre: item
"""


def test_generic_joins_side_tables(tmp_path):
    raw = load_generic(write_generic(tmp_path / "d", SCHEMA))
    assert raw.field_names == ["uid", "age", "iid", "genre"]
    assert [f.role for f in raw.fields] == [Role.PERSONAL, Role.USER, Role.ITEM, Role.ITEM]
    assert raw.table.dtypes == [pl.String] * 4 + [pl.Float64, pl.Int64]
    assert raw.table.rows() == [
        ("1", "25", "a", "Drama", 5.0, 100),
        ("2", "40", "b", "Comedy", 1.0, 200),
        ("3", "", "a", "Drama", 4.0, 300),  # missing from users.csv: empty category
    ]
    assert [p.name for p in raw.source_files] == [
        "schema.yaml", "interactions.csv", "users.csv", "items.csv",
    ]  # fmt: skip


def test_generic_parquet_without_timestamp_and_data_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pl.DataFrame({"user": [7, 8], "item": [1, 2], "click": [True, False]}).write_parquet(
        data / "log.parquet"
    )
    schema = tmp_path / "schema.yaml"
    schema.write_text(
        "interactions: log.parquet\ntarget: click\nfields: {user: personal, item: item}\n"
    )
    raw = load_generic(schema, data_dir=data)
    assert raw.table.columns == ["user", "item", "target"]
    assert raw.table.rows() == [("7", "1", 1.0), ("8", "2", 0.0)]
    assert not raw.has_timestamp()
    assert schema_source_files(schema, data) == [schema, data / "log.parquet"]


def test_generic_separator_and_format_override(tmp_path):
    (tmp_path / "log.txt").write_text("u;i;y\n1;2;0\n")
    schema = tmp_path / "s.yaml"
    schema.write_text(
        "interactions: {path: log.txt, separator: ';', format: csv}\n"
        "target: y\nfields: {u: personal, i: item}\n"
    )
    assert load_generic(schema).table.rows() == [("1", "2", 0.0)]


def test_read_table_strips_header_names(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a, b ,c\n1,2,3\n")
    assert read_table(path).columns == ["a", "b", "c"]


@pytest.mark.skipif(
    not (SHARED / "ml-1m").is_dir(), reason=f"MovieLens data absent from {SHARED} ($GPREC_DATA)"
)
def test_real_movielens_cardinalities():
    # The official zip has ratings.dat; the workspace's copy holds the timestamp-less layout.
    ratings = "ratings.dat" if (SHARED / "ml-1m" / "ratings.dat").is_file() else "ratings_no_timestamp.dat"
    raw = load_ml1m(SHARED / "ml-1m", ratings)
    columns = ("user_id", "item_id", "genres", "year", "zip", "occupation", "age", "gender")
    counts = {c: raw.table[c].n_unique() for c in columns}
    assert raw.table.height == 1_000_111
    # The paper lists these cardinalities; all match but item_id (3,706 in the paper): the
    # 98 ratings whose movie is not in movies.dat, dropped here, are the only ones of 40 movies.
    assert counts == {
        "user_id": 6040, "item_id": 3666, "genres": 301, "year": 81, "zip": 3402,
        "occupation": 21, "age": 7, "gender": 2,
    }  # fmt: skip

    ml100k = load_ml100k(SHARED / "ml-100k").table
    assert ml100k.height == 100_000
    assert ml100k["user_id"].n_unique() == 943
    assert ml100k["item_id"].n_unique() == 1682
    assert ml100k.row(0)[:4] == ("242", "Comedy", "1996", "196")


def test_read_table_keeps_empty_last_fields_and_quoted_separators(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id,title,genre\n1,"Escape, The",\n2,,Drama\n3,x,""\n')
    table = read_table(path)
    assert table.rows() == [("1", "Escape, The", None), ("2", None, "Drama"), ("3", "x", "")]
