"""Group data: the ITM-Rec and AGREE/ConsRec loaders on files written in their real formats,
the strict cleaning of listed negatives, and the counts of the real copies when present."""

from pathlib import Path

import numpy as np
import pytest

from gprec.data.groups import (
    GroupData,
    SampledTest,
    clean_negatives,
    load_agree,
    load_group_data,
    load_itm_rec,
)
from gprec.errors import DataError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ITM_REC = DATA / "itm-rec"
MAFENGWO = DATA / "mafengwo"

RATING_HEADER = "Item,Rating,App,Data,Ease,Class,Semester,Lockdown"


def crlf(lines: list[str]) -> bytes:
    """ITM-Rec's CSVs end every line, the last included, with CRLF."""
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def write_itm_rec(directory: Path, **replace: list[str]) -> Path:
    """A tiny ITM-Rec copy: 3 groups (one member listed twice), 5 users, 4 items.

    As in the official files: CRLF, spaces after the commas of users.csv's
    header and before one age value, a blank Data cell, a user who rated one
    item in two classes, quoted item descriptions with commas and quotes.
    """
    files = {
        "group": ["GroupID,UserID", "100,1305", "100,1340", "101,1244", "101,1204",
                  "101,1244", "102,1305", "102,1001"],
        "group_size": ["GroupID,Size", "100,2", "101,2", "102,2"],
        "group_ratings": [f"GroupID,{RATING_HEADER}", "100,3,3,3,3,2,DB,Spring,PRE",
                          "100,5,4,3,3,2,DB,Spring,PRE", "101,3,1,1,2,2,DA,Fall,DUR",
                          "102,21,5,5,4,4,DM,Fall,POS"],
        "ratings": [f"UserID,{RATING_HEADER}", "1305,3,5,4,4,4,DA,Fall,PRE",
                    "1340,5,2,3,,3,DB,Fall,POS", "1244,3,4,4,4,4,DA,Spring,PRE",
                    "1001,21,2,3,3,3,DM,Fall,PRE", "1001,21,3,4,4,4,DA,Spring,PRE"],
        "users": ["UserID, Gender, Age,Married", "1001,1,20-25,0", "1204,0, 31-100,1",
                  "1244,1,>30,0", "1305,0,26-30,0", "1340,1,<20,1"],
        "items": ["Item,Title,URL,Descriptions", "3,Flight ticket purchase system,https://a,",
                  '5,Inventory,https://b,"Stock, orders and ""suppliers"""',
                  "9,Unrated topic,https://c,", "21,Credit Card Fraud,https://d,Kaggle"],
    }  # fmt: skip
    files.update(replace)
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (directory / f"{name}.csv").write_bytes(crlf(lines))
    return directory


def write_agree(directory: Path, ratings: bool = False, users: bool = True) -> Path:
    """A tiny dataset in the AGREE/ConsRec layout, formats as in the Mafengwo copy.

    groupMember.txt `gid uid,uid`; rating files `id item` (or CAMRa2011's
    `id item rating`); negatives `(id,item) n1 ...` with CRLF line ends, one
    per test row, listing a repeated item and, for group 1, its own
    held-out item; userFollow.txt `uid:f1 f2`.
    """
    score = (lambda s: f" {s}") if ratings else (lambda s: "")
    directory.mkdir(parents=True, exist_ok=True)
    texts = {
        "groupMember.txt": "0 0,1,2\n1 2,3\n2 4,0\n",
        "groupRatingTrain.txt": f"0 0{score(70)}\n0 1{score(0)}\n1 2{score(85)}\n2 1{score(5)}\n",
        "groupRatingTest.txt": f"0 3{score(90)}\n1 4{score(60)}\n2 0{score(75)}\n",
        "groupRatingNegative.txt": "(0,3) 5 1 5 6\r\n(1,4) 4 0 6\r\n(2,0) 2 3 5 6\r\n",
    }
    if users:
        texts |= {
            "userRatingTrain.txt": f"0 1{score(50)}\n3 2{score(60)}\n4 0{score(70)}\n",
            "userRatingTest.txt": f"0 6{score(80)}\n3 5{score(40)}\n",
            "userRatingNegative.txt": "(0,6) 2 3 4 4\r\n(3,5) 0 5 1 6\r\n",
            "userFollow.txt": "0:1 7 9\n1:0\n2:\n",
        }
    for name, text in texts.items():
        (directory / name).write_bytes(text.encode())
    return directory


def error_of(load, *args) -> str:
    with pytest.raises(DataError) as e:
        load(*args)
    return str(e.value)


# --- ITM-Rec -------------------------------------------------------------------


def test_itm_rec_loads_and_removes_duplicate_membership_rows(tmp_path):
    d = load_itm_rec(write_itm_rec(tmp_path / "itm"))
    assert isinstance(d, GroupData) and d.feedback == "explicit"
    assert d.cleaning == {"duplicate_membership_rows": 1}
    assert (d.n_groups, d.n_users, d.n_items) == (3, 5, 4)
    assert d.group_ids.to_list() == [100, 101, 102]
    assert d.user_ids.to_list() == [1001, 1204, 1244, 1305, 1340]
    assert d.item_ids.to_list() == [3, 5, 9, 21]  # 9: only in items.csv, still encoded
    assert d.members.rows() == [(0, 3), (0, 4), (1, 1), (1, 2), (2, 0), (2, 3)]
    assert d.group_sizes().tolist() == [2, 2, 2]
    offsets, users = d.group_members()
    assert offsets.tolist() == [0, 2, 4, 6]
    assert d.raw_ids("user", users[offsets[1] : offsets[2]]).to_list() == [1204, 1244]
    u_offsets, groups = d.user_groups()
    assert groups[u_offsets[3] : u_offsets[4]].tolist() == [0, 2]  # user 1305 is in 100 and 102

    g = d.group_interactions
    assert g.columns[:3] == ["group", "item", "rating"]
    assert g.select("group", "item", "rating").rows() == [
        (0, 0, 3.0), (0, 1, 4.0), (1, 0, 1.0), (2, 3, 5.0)
    ]  # fmt: skip
    assert g["lockdown"].to_list() == ["PRE", "PRE", "DUR", "POS"]
    u = d.user_interactions
    assert u.height == 5  # the same (user, item) in two classes is kept
    assert u["data"].to_list() == [4.0, None, 4.0, 3.0, 4.0]  # the blank cell
    assert d.user_features.columns == ["user", "gender", "age", "married"]
    assert d.user_features["age"].to_list() == ["20-25", "31-100", ">30", "26-30", "<20"]
    assert d.item_features["descriptions"][1] == 'Stock, orders and "suppliers"'


def test_itm_rec_feature_tables_are_optional(tmp_path):
    directory = write_itm_rec(tmp_path / "itm")
    (directory / "users.csv").unlink()
    (directory / "items.csv").unlink()
    (directory / "group_size.csv").unlink()
    d = load_itm_rec(directory)
    assert d.user_features is None and d.item_features is None
    assert (d.n_users, d.n_items) == (5, 3)


def test_itm_rec_malformed_value_names_file_and_line(tmp_path):
    directory = write_itm_rec(
        tmp_path / "itm",
        group_ratings=[f"GroupID,{RATING_HEADER}", "100,3,3,3,3,2,DB,Spring,PRE",
                       "100,x5,4,3,3,2,DB,Spring,PRE"],
    )  # fmt: skip
    path = directory / "group_ratings.csv"
    assert error_of(load_itm_rec, directory) == (
        f"{path}, line 3: column 'Item': 'x5' is not an integer"
    )


def test_itm_rec_short_row_names_file_and_line(tmp_path):
    directory = write_itm_rec(
        tmp_path / "itm", group=["GroupID,UserID", "100,1305", "100,1340", "101"]
    )
    message = error_of(load_itm_rec, directory)
    assert message.startswith(f"{directory / 'group.csv'}, line 4: expected 2 columns")


def test_itm_rec_missing_column_and_blank_rating(tmp_path):
    directory = write_itm_rec(tmp_path / "a", group=["GroupID;UserID", "100;1305"])
    assert error_of(load_itm_rec, directory) == (
        f"{directory / 'group.csv'}, line 1: missing column 'GroupID' (the header has GroupID;UserID)"
    )
    directory = write_itm_rec(
        tmp_path / "b",
        ratings=[f"UserID,{RATING_HEADER}", "1305,3,5,4,4,4,DA,Fall,PRE", "1340,5,,3,3,3,DB,Fall,POS"],
    )  # fmt: skip
    assert error_of(load_itm_rec, directory).startswith(
        f"{directory / 'ratings.csv'}, line 3: column 'Rating'"
    )


def test_itm_rec_size_file_must_agree_and_rated_groups_need_members(tmp_path):
    directory = write_itm_rec(
        tmp_path / "a", group_size=["GroupID,Size", "100,2", "101,3", "102,2"]
    )
    assert error_of(load_itm_rec, directory) == (
        f"{directory / 'group_size.csv'}, line 3: group 101 has size 3, "
        "but group.csv lists 2 distinct members for it"
    )
    directory = write_itm_rec(
        tmp_path / "b",
        group_ratings=[f"GroupID,{RATING_HEADER}", "100,3,3,3,3,2,DB,Spring,PRE",
                       "107,5,4,3,3,2,DB,Spring,PRE"],
    )  # fmt: skip
    assert error_of(load_itm_rec, directory) == (
        f"{directory / 'group_ratings.csv'}, line 3: group 107 has no members in group.csv"
    )


# --- AGREE / ConsRec layout ----------------------------------------------------


def test_agree_layout_loads_as_given(tmp_path):
    d = load_agree(write_agree(tmp_path / "Tiny"))
    assert d.name == "Tiny" and d.feedback == "implicit"
    assert (d.n_groups, d.n_users, d.n_items) == (3, 5, 7)  # item 6 is only a negative
    # ids already 0..n-1 (as in every benchmark): codes equal them
    for vocab in (d.group_ids, d.user_ids, d.item_ids):
        assert vocab.to_list() == list(range(len(vocab)))
    assert d.members.rows() == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 3), (2, 0), (2, 4)]
    assert d.group_sizes().tolist() == [3, 2, 2]
    assert d.group_interactions.rows() == [(0, 0), (0, 1), (1, 2), (2, 1)]  # train only
    assert d.user_interactions.rows() == [(0, 1), (3, 2), (4, 0)]

    t = d.group_test
    assert isinstance(t, SampledTest) and t.rating is None
    assert t.entity.tolist() == [0, 1, 2] and t.held_out.tolist() == [3, 4, 0]
    assert [t.negatives(k).tolist() for k in range(3)] == [[5, 1, 5, 6], [4, 0, 6], [2, 3, 5, 6]]
    assert t.source == tmp_path / "Tiny" / "groupRatingNegative.txt"
    assert d.user_test.entity.tolist() == [0, 3]
    assert d.user_test.negatives(1).tolist() == [0, 5, 1, 6]
    assert d.follows.rows() == [(0, 1), (0, 7), (0, 9), (1, 0)]  # user 2 follows nobody
    assert d.summary()["group_test_negatives"] == 11


def test_agree_ratings_column_and_optional_user_files(tmp_path):
    d = load_agree(write_agree(tmp_path / "camra", ratings=True, users=False))
    assert d.group_interactions["rating"].to_list() == [70.0, 0.0, 85.0, 5.0]
    assert d.group_test.rating.tolist() == [90.0, 60.0, 75.0]
    assert d.user_test is None and d.follows is None and d.user_interactions.height == 0
    assert d.n_users == 5  # members only


def test_agree_sparse_raw_ids_are_compacted(tmp_path):
    directory = tmp_path / "gaps"
    directory.mkdir()
    files = {
        "groupMember.txt": "10 7,3\n40 3\n",
        "groupRatingTrain.txt": "10 100\n40 300\n",
        "groupRatingTest.txt": "40 100\n10 300\n",
        "groupRatingNegative.txt": "(40,100) 500 300\n(10,300)\n",  # a case may list none
    }
    for name, text in files.items():
        (directory / name).write_text(text)
    d = load_agree(directory)
    assert d.group_ids.to_list() == [10, 40] and d.item_ids.to_list() == [100, 300, 500]
    assert d.members.rows() == [(0, 0), (0, 1), (1, 0)]
    assert d.group_test.entity.tolist() == [1, 0]
    assert d.raw_ids("item", d.group_test.negatives(0)).to_list() == [500, 300]
    assert d.group_test.neg_offsets.tolist() == [0, 2, 2]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("groupRatingTrain.txt", "0 0\n0 abc\n", "line 2: item 'abc' is not an integer"),
        ("groupRatingTrain.txt", "0 0\n0 1 1\n", "line 2: expected 2 fields (id item), found 3"),
        ("groupRatingTrain.txt", "0 0 1 1\n", "line 1: expected 2 fields (id item) or 3 (id item"),
        ("groupRatingTrain.txt", "0 0\n\n1 2\n", "line 2: blank line"),
        ("groupRatingTrain.txt", "0 0\n9 1\n", "line 2: group 9 has no members in groupMember.txt"),
        ("groupMember.txt", "0 0,1,2\n1 2,,3\n2 4\n", "line 2: member '' is not an integer"),
        ("groupMember.txt", "0 0,1,2\n1\n", "line 2: expected 2 fields (group id, comma-separated"),
        ("groupRatingNegative.txt", "(0,3) 5\r\n(1,4) 4 x\r\n(2,0) 2\r\n",
         "line 2: negative 'x' is not an integer"),
        ("groupRatingNegative.txt", "(0,3) 5\r\n(1,5) 4\r\n(2,0) 2\r\n",
         "line 2: key (1,5) does not match test row 2 (1 4)"),
        ("groupRatingNegative.txt", "(0,3) 5\r\n1,4 4\r\n(2,0) 2\r\n",
         "line 2: expected '(id,item)' as the first field, found '1,4'"),
        ("groupRatingNegative.txt", "(0,3) 5\r\n(1,4) 4\r\n",
         "2 lines, but the test file has 3 rows (one line each)"),
        ("userFollow.txt", "0:1\n1 0\n", "line 2: expected 'uid:followee followee ...'"),
        ("groupRatingTest.txt", "", "no data rows"),
    ],
)  # fmt: skip
def test_agree_bad_input_is_one_line_naming_file_and_line(tmp_path, name, text, message):
    directory = write_agree(tmp_path / "bad")
    (directory / name).write_text(text)
    error = error_of(load_agree, directory)
    assert "\n" not in error
    assert error.startswith(f"{directory / name}")
    assert message in error


def test_agree_missing_files(tmp_path):
    directory = write_agree(tmp_path / "d")
    (directory / "userRatingNegative.txt").unlink()
    assert (
        error_of(load_agree, directory) == f"{directory / 'userRatingNegative.txt'}: file not found"
    )
    assert error_of(load_agree, tmp_path / "nope") == f"{tmp_path / 'nope'}: folder not found"


def test_load_group_data_tells_layouts_apart(tmp_path):
    assert load_group_data(write_agree(tmp_path / "a")).feedback == "implicit"
    assert load_group_data(write_itm_rec(tmp_path / "b")).name == "itm-rec"
    (tmp_path / "c").mkdir()
    assert "no group data found" in error_of(load_group_data, tmp_path / "c")


# --- negatives, strictly -------------------------------------------------------


def test_clean_negatives_hand_example():
    test = SampledTest(
        entity=np.array([0, 1, 2]),
        held_out=np.array([5, 7, 2]),
        neg_offsets=np.array([0, 5, 8, 8]),
        neg_items=np.array([1, 5, 2, 1, 3, 7, 7, 4]),
    )
    clean = clean_negatives(test)
    assert list((h, n.tolist()) for h, n in clean) == [(5, [1, 2, 3]), (7, [4]), (2, [])]
    assert clean.removed_positive == 3  # 5 once in case 0, 7 twice in case 1
    assert clean.removed_duplicate == 1  # the second 1 in case 0
    assert clean.removed == 4 and clean.cases_with_positive == 2
    assert clean.removed_per_case.tolist() == [2, 2, 0]
    assert test.negatives(0).tolist() == [1, 5, 2, 1, 3]  # the input is untouched


def test_clean_negatives_on_the_tiny_agree_files(tmp_path):
    d = load_agree(write_agree(tmp_path / "t"))
    group = clean_negatives(d.group_test)
    assert [n.tolist() for _, n in group] == [[5, 1, 6], [0, 6], [2, 3, 5, 6]]
    assert (group.removed_positive, group.removed_duplicate) == (1, 1)
    user = clean_negatives(d.user_test)
    assert [n.tolist() for _, n in user] == [[2, 3, 4], [0, 1, 6]]
    assert (user.removed_positive, user.removed_duplicate) == (1, 1)


# --- the real copies (skipped without ../shared/data) ---------------------------


@pytest.mark.skipif(not ITM_REC.is_dir(), reason="ITM-Rec not in ../shared/data")
def test_real_itm_rec_counts():
    d = load_itm_rec(ITM_REC)
    assert d.n_groups == 143  # after removing duplicate rows of group.csv
    assert d.group_interactions.height == 1117
    assert d.cleaning["duplicate_membership_rows"] == 37
    assert d.members.height == 358
    assert np.bincount(d.group_sizes()).tolist() == [0, 0, 88, 42, 9, 4]
    assert d.user_interactions.height == 5230
    assert d.user_interactions["user"].n_unique() == 454
    assert (d.n_users, d.n_items) == (476, 70)
    counts = d.group_interactions["rating"].value_counts().sort("rating")["count"].to_list()
    assert counts == [115, 306, 172, 244, 280]


@pytest.mark.skipif(not MAFENGWO.is_dir(), reason="Mafengwo not in ../shared/data")
def test_real_mafengwo_counts_and_negatives():
    d = load_agree(MAFENGWO)
    assert d.summary() == {
        "groups": 995,
        "users": 5275,
        "items": 1513,
        "memberships": 9580,
        "group_interactions": 2600,
        "user_interactions": 38011,
        "group_test_cases": 995,
        "group_test_negatives": 99500,
        "user_test_cases": 1754,
        "user_test_negatives": 175400,
    }
    sizes = d.group_sizes()
    assert (sizes.min(), sizes.max(), round(sizes.mean(), 1)) == (2, 48, 9.6)
    assert d.user_interactions["user"].n_unique() == 2017
    assert d.item_ids.to_list() == list(range(1513))  # codes are the published ids
    group = clean_negatives(d.group_test)
    assert (group.removed_positive, group.cases_with_positive) == (33, 33)
    assert group.removed_duplicate == 1100
    user = clean_negatives(d.user_test)
    assert (user.removed_positive, user.cases_with_positive) == (342, 333)
    assert user.removed_duplicate == 1821
