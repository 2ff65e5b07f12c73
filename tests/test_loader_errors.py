from pathlib import Path

import polars as pl
import pytest
from test_loaders import SCHEMA, write_generic, write_ml1m, write_ml100k

from gprec.config import DataConfig
from gprec.data.dataset import load_dataset
from gprec.data.generic import load_generic, schema_source_files
from gprec.data.movielens import load_ml1m, load_ml100k
from gprec.data.readers import read_delimited, read_table
from gprec.errors import ConfigError, DataError

COLUMNS = ["user", "item", "rating"]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("latin-1")
    path.write_bytes(text)
    return path


def read_ratings(path: Path) -> pl.DataFrame:
    return read_delimited(path, "::", COLUMNS, dtypes={"rating": pl.Float64})


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.dat: file not found") as e:
        read_ratings(tmp_path / "nope.dat")
    assert e.value.path == tmp_path / "nope.dat"


@pytest.mark.parametrize("text", ["", "\n", "\n\n\r\n"])
def test_empty_file(tmp_path, text):
    with pytest.raises(DataError, match="r.dat: no data rows"):
        read_ratings(write(tmp_path / "r.dat", text))


def test_wrong_separator_names_file_and_line(tmp_path):
    path = write(tmp_path / "r.dat", "1\t1193\t5\n1\t661\t3\n")
    with pytest.raises(DataError) as e:
        read_ratings(path)
    assert str(e.value) == (
        f"{path}, line 1: expected 3 columns separated by '::', found 1 — wrong separator?"
    )
    assert e.value.line == 1


def test_wrong_column_count_on_line_3(tmp_path):
    path = write(tmp_path / "r.dat", "1::1193::5\n1::661::3\n1::914::3::978301968\n2::1::1\n")
    with pytest.raises(DataError, match=r"r\.dat, line 3: expected 3 columns .* found 4"):
        read_ratings(path)


def test_long_and_short_lines_that_balance_out(tmp_path):
    path = write(tmp_path / "r.dat", "1::1193::5\n1::661::3::9\n1::914\n")
    with pytest.raises(DataError, match="line 2: expected 3 columns"):
        read_ratings(path)


def test_blank_line_inside_the_file(tmp_path):
    with pytest.raises(DataError, match="line 2: blank line"):
        read_ratings(write(tmp_path / "r.dat", "1::1193::5\n\n1::661::3\n"))


def test_non_numeric_rating(tmp_path):
    path = write(tmp_path / "r.dat", "1::1193::5\n1::661::3\n1::914::abc\n")
    with pytest.raises(DataError) as e:
        read_ratings(path)
    assert str(e.value) == f"{path}, line 3: column 'rating': 'abc' is not a number"


def test_empty_numeric_value(tmp_path):
    with pytest.raises(DataError, match="line 2: column 'rating': '' is not a number"):
        read_ratings(write(tmp_path / "r.dat", "1::1193::5\n1::661::\n"))


def test_non_integer_id(tmp_path):
    path = write(tmp_path / "r.dat", "1::1193::5\n1::661.5::3\n")
    with pytest.raises(DataError, match="line 2: column 'item': '661.5' is not an integer"):
        read_delimited(path, "::", COLUMNS, dtypes={"item": pl.Int64})


def test_undecodable_text_names_the_line(tmp_path):
    path = write(tmp_path / "r.dat", b"1::a::5\n2::\xff::3\n")
    with pytest.raises(DataError, match="line 2: not valid utf-8"):
        read_delimited(path, "::", COLUMNS, encoding="utf-8")


def test_ml100k_missing_file_is_named(tmp_path):
    directory = write_ml100k(tmp_path / "ml")
    (directory / "u.user").unlink()
    with pytest.raises(DataError, match=r"u\.user: file not found"):
        load_ml100k(directory)


def test_ml100k_missing_directory(tmp_path):
    with pytest.raises(DataError, match=r"u\.data: file not found"):
        load_ml100k(tmp_path / "nowhere")


def test_ml100k_bad_genre_flag(tmp_path):
    directory = write_ml100k(tmp_path / "ml")
    lines = (directory / "u.item").read_text().splitlines()
    lines[1] = lines[1][:-1] + "x"
    (directory / "u.item").write_text("\n".join(lines))
    with pytest.raises(
        DataError, match=r"u\.item, line 2: column 'genre_18': 'x' is not an integer"
    ):
        load_ml100k(directory)


def test_ml1m_unknown_ratings_layout(tmp_path):
    directory = write_ml1m(tmp_path / "ml", "1::1193::5::978300760::x\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 1: expected 4 columns .* found 5"):
        load_ml1m(directory)


def test_ml1m_layout_change_inside_the_file(tmp_path):
    directory = write_ml1m(
        tmp_path / "ml", "1::1193::5::978300760\n1::661::3::978302109\n1::914::3\n"
    )
    with pytest.raises(DataError, match=r"ratings\.dat, line 3: expected 4 columns .* found 3"):
        load_ml1m(directory)


def test_ml1m_non_numeric_rating(tmp_path):
    directory = write_ml1m(tmp_path / "ml", "1::1193::5\n1::661::three\n")
    with pytest.raises(DataError, match="line 2: column 'rating': 'three' is not a number"):
        load_ml1m(directory)


def test_ml1m_empty_ratings(tmp_path):
    with pytest.raises(DataError, match=r"ratings\.dat: no data rows"):
        load_ml1m(write_ml1m(tmp_path / "ml", ""))


def test_ml1m_duplicate_movie_id(tmp_path):
    directory = write_ml1m(tmp_path / "ml")
    with open(directory / "movies.dat", "a") as fh:
        fh.write("73::Another (1999)::Drama\n")
    with pytest.raises(DataError, match=r"movies\.dat: key column 'item_id' repeats the value 73"):
        load_ml1m(directory)


def test_ml1m_no_rating_matches(tmp_path):
    with pytest.raises(DataError, match="no rating refers to a known movie and user"):
        load_ml1m(write_ml1m(tmp_path / "ml", "9::9::5::1\n"))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("t.csv", "", "no data rows"),
        ("t.csv", "a,b\n", "no data rows"),
        ("t.csv", "a,b\n1,2\n3,4,5\n", "line 3: expected 2 columns separated by ','"),
        ("t.parquet", "not parquet at all", "cannot read as parquet"),
        ("t.json", "{}", "unknown data format '.json'"),
    ],
)
def test_read_table_errors(tmp_path, name, text, message):
    with pytest.raises(DataError, match=message):
        read_table(write(tmp_path / name, text))


def test_read_table_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"t\.csv: file not found"):
        read_table(tmp_path / "t.csv")


def schema_error(tmp_path, schema: str, error=ConfigError) -> str:
    path = write_generic(tmp_path / "d", schema)
    with pytest.raises(error) as e:
        load_generic(path)
    assert str(path) in str(e.value)
    return str(e.value)


def test_generic_missing_schema_file(tmp_path):
    with pytest.raises(DataError, match=r"schema\.yaml: schema file not found"):
        load_generic(tmp_path / "schema.yaml")
    with pytest.raises(DataError, match="schema file not found"):
        schema_source_files(tmp_path / "schema.yaml")


def test_generic_invalid_yaml(tmp_path):
    bad_indent = "target: rating\nfields:\n  age: user\n   genre: item\n"
    assert "invalid YAML at line 4" in schema_error(tmp_path, bad_indent)


def test_generic_unknown_top_level_key(tmp_path):
    message = schema_error(tmp_path, SCHEMA + "itemz: {path: items.csv}\n")
    assert "unknown key 'itemz'" in message
    assert "allowed: fields, interactions, items, target, timestamp, users" in message


def test_generic_unknown_table_key(tmp_path):
    message = schema_error(tmp_path, SCHEMA.replace("key: uid", "kye: uid"))
    assert "unknown key 'users.kye'" in message


def test_generic_unknown_role(tmp_path):
    message = schema_error(tmp_path, SCHEMA.replace("age: user", "age: usr"))
    assert (
        "fields.age: unknown role 'usr' (expected one of personal, user, item, context)" in message
    )


def test_generic_missing_field_column(tmp_path):
    message = schema_error(tmp_path, SCHEMA.replace("age: user", "agee: user"))
    assert message.endswith(
        "field 'agee' is not a column of interactions.csv, users.csv, items.csv "
        "(did you mean 'age'?)"
    )


def test_generic_missing_target_column(tmp_path):
    message = schema_error(tmp_path, SCHEMA.replace("target: rating", "target: stars"))
    assert "target 'stars' is not a column of interactions.csv" in message


def test_generic_missing_key_column(tmp_path):
    message = schema_error(tmp_path, SCHEMA.replace("key: iid", "key: item"))
    assert "items.key 'item' is not a column of interactions.csv" in message


def test_generic_missing_required_key(tmp_path):
    assert "missing required key 'target'" in schema_error(
        tmp_path, SCHEMA.replace("target: rating", "")
    )


def test_generic_reserved_field_name(tmp_path):
    assert "'target' is reserved" in schema_error(tmp_path, SCHEMA + "  target: item\n")


def test_generic_non_numeric_target(tmp_path):
    path = write_generic(tmp_path / "d", SCHEMA)
    write(path.parent / "interactions.csv", "uid,iid,rating,ts\n1,a,5,100\n2,b,five,200\n")
    with pytest.raises(
        DataError, match=r"interactions\.csv, line 3: column 'rating': 'five' is not a number"
    ):
        load_generic(path)


def test_generic_empty_interactions(tmp_path):
    path = write_generic(tmp_path / "d", SCHEMA)
    write(path.parent / "interactions.csv", "uid,iid,rating,ts\n")
    with pytest.raises(DataError, match=r"interactions\.csv: no data rows"):
        load_generic(path)


def test_generic_missing_data_file(tmp_path):
    path = write_generic(tmp_path / "d", SCHEMA)
    (path.parent / "items.csv").unlink()
    with pytest.raises(DataError, match=r"items\.csv: file not found"):
        load_generic(path)


def test_generic_duplicate_side_key(tmp_path):
    path = write_generic(tmp_path / "d", SCHEMA)
    write(path.parent / "users.csv", "uid,age\n1,25\n1,30\n")
    with pytest.raises(DataError, match=r"users\.csv: key column 'uid' repeats the value '1'"):
        load_generic(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a,b\n1,2\n3\n4,5\n",
            "line 3: expected 2 columns separated by ',' as in the header, found 1",
        ),
        ("a,b,c\n1,2,3\n4,5\n", "line 3: expected 3 columns .* found 2$"),
        ("a,b\n1,2\n\n3,4\n", "line 3: blank line"),
        ("a,b\n1,2\n3,4\n\n\n", "line 4: blank line"),
    ],
)
def test_read_table_short_rows_and_blank_lines(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_table(write(tmp_path / "t.csv", text))


def test_generic_side_table_row_with_other_separator(tmp_path):
    path = write_generic(tmp_path / "d", SCHEMA)
    users = write(path.parent / "users.csv", "uid,age\n1,25\n2;40\n")
    with pytest.raises(DataError) as e:
        load_generic(path)
    assert str(e.value) == (
        f"{users}, line 3: expected 2 columns separated by ',' as in the header, found 1"
        " — is this line separated by ';'?"
    )
    assert e.value.line == 3


def test_generic_short_and_long_rows_name_file_and_line(tmp_path):
    path = write_generic(tmp_path / "d", SCHEMA)
    write(path.parent / "items.csv", "iid,genre\na,Drama\nb,Comedy,Extra\n")
    with pytest.raises(DataError, match=r"items\.csv, line 3: expected 2 columns .* found 3"):
        load_generic(path)
    write_generic(tmp_path / "d", SCHEMA)
    write(path.parent / "interactions.csv", "uid,iid,rating,ts\n1,a,5,100\n2,b,1\n3,a,4,300\n")
    with pytest.raises(
        DataError, match=r"interactions\.csv, line 3: expected 4 columns .* found 3"
    ):
        load_generic(path)


@pytest.mark.parametrize(
    ("table", "text", "separator"),
    [("interactions", "uid;iid;rating;ts\n1;a;5;100\n", ";"), ("users", "uid\tage\n1\t25\n", "\t")],
)
def test_generic_wrong_separator_hint(tmp_path, table, text, separator):
    path = write_generic(tmp_path / "d", SCHEMA)
    write(path.parent / f"{table}.csv", text)
    with pytest.raises(ConfigError) as e:
        load_generic(path)
    assert str(e.value).endswith(
        f"is not a column of {table}.csv: the header has 1 column; "
        f"is the separator {separator!r} not ','? (set {table}.separator)"
    )


def test_single_class_split_is_an_error_and_caches_nothing(tmp_path):
    cache = tmp_path / "cache"
    synthetic = {"n_users": 100, "n_items": 30, "n_interactions": 1000}
    cfg = DataConfig(label_threshold=10, cache_dir=str(cache), synthetic=synthetic)
    with pytest.raises(DataError) as e:
        load_dataset(cfg, seed=0)
    assert str(e.value) == (
        "the valid split has only label 0 (100 rows): AUC is undefined; "
        "check data.label_threshold / data.split_ratios"
    )
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.parametrize(
    ("ratios", "split"), [((1.0, 0.0, 0.0), "valid"), ((0.9, 0.1, 0.0), "test")]
)
def test_empty_evaluation_split_is_an_error(tmp_path, ratios, split):
    synthetic = {"n_users": 100, "n_items": 30, "n_interactions": 1000}
    cfg = DataConfig(split_ratios=ratios, cache_dir=str(tmp_path / "cache"), synthetic=synthetic)
    with pytest.raises(DataError, match=f"the {split} split is empty: AUC is undefined"):
        load_dataset(cfg, seed=0)
