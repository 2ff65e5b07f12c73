import numpy as np
import polars as pl
import pytest

from gprec.data.encode import UNSEEN, Vocabulary, binary_labels
from gprec.data.schema import FieldSpec, RawTable, Role
from gprec.data.split import leave_last_out_split, random_split
from gprec.errors import DataError

FIELDS = [FieldSpec("user_id", Role.PERSONAL), FieldSpec("item_id", Role.ITEM)]


def test_vocabulary_reserves_zero_for_unseen_values():
    train = pl.DataFrame({"user_id": ["u1", "u2", "u1"], "item_id": ["a", "b", "c"]})
    vocab = Vocabulary.fit(train, FIELDS)
    assert vocab.cardinality("user_id") == 3  # u1, u2 + unseen
    test = pl.DataFrame({"user_id": ["u2", "u9", None], "item_id": ["c", "a", "zz"]})
    codes = vocab.encode(test, FIELDS)
    assert codes.dtype == np.int64 and codes.shape == (3, 2)
    assert codes[:, 0].tolist() == [2, UNSEEN, UNSEEN]
    assert codes[:, 1].tolist() == [3, 1, UNSEEN]
    assert UNSEEN not in vocab.encode(train, FIELDS)


def test_vocabulary_treats_numbers_as_categories():
    train = pl.DataFrame({"user_id": [10, 2, 10], "item_id": [1, 1, 1]})
    vocab = Vocabulary.fit(train, FIELDS)
    assert vocab.values["user_id"] == ["10", "2"]  # string order, as stored in vocab.json
    assert vocab.encode(pl.DataFrame({"user_id": [2], "item_id": [1]}), FIELDS).tolist() == [[2, 1]]


def test_labels_from_threshold_and_binary_checks():
    raw = RawTable(pl.DataFrame({"target": [1.0, 3.0, 4.0, 5.0]}), [])
    assert binary_labels(raw, 3.0).tolist() == [0, 0, 1, 1]
    with pytest.raises(DataError, match="not 0/1"):
        binary_labels(raw, None)
    ok = RawTable(pl.DataFrame({"target": [0.0, 1.0]}), [])
    assert binary_labels(ok, None).tolist() == [0, 1]


def test_random_split_is_seeded_disjoint_and_complete():
    a, b, c = (
        random_split(1000, (0.8, 0.1, 0.1), 7),
        random_split(1000, (0.8, 0.1, 0.1), 7),
        random_split(1000, (0.8, 0.1, 0.1), 8),
    )
    for s in a:
        assert np.array_equal(a[s], b[s])
    assert not np.array_equal(a["test"], c["test"])
    assert [len(a[s]) for s in ("train", "valid", "test")] == [800, 100, 100]
    assert np.array_equal(np.sort(np.concatenate(list(a.values()))), np.arange(1000))


def test_leave_last_out_takes_latest_per_user():
    users = pl.Series(["a", "a", "a", "a", "b", "b", "c", "c", "c"])
    ts = pl.Series([4, 1, 3, 2, 1, 2, 9, 8, 7])
    s = leave_last_out_split(users, ts, seed=0)
    assert s["test"].tolist() == [0, 6]  # a@4, c@9; b has only 2 interactions
    assert s["valid"].tolist() == [2, 7]
    assert s["train"].tolist() == [1, 3, 4, 5, 8]


def test_leave_last_out_needs_timestamps():
    with pytest.raises(DataError, match="timestamp"):
        leave_last_out_split(pl.Series(["a"]), pl.Series([None], dtype=pl.Int64), 0)
