"""The synthetic dataset must carry the structure the benchmarks rely on.

If these properties slip (labels too easy or too hard, groups readable from
one field, popularity as good as the truth), the comparison GPRec vs MLP vs
popularity on the default dataset stops meaning anything.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from gprec.data.schema import RawTable, Role
from gprec.data.synth import SynthConfig, generate, generate_with_truth, write_dataset
from gprec.errors import ConfigError, DataError

FIELD_ORDER = ["item_id", "genre", "year", "user_id", "age", "gender", "occupation", "region"]
SMALL = SynthConfig(n_users=200, n_items=80, n_interactions=3000, seed=3)


@pytest.fixture(scope="module")
def default():
    return generate_with_truth(SynthConfig())


def _codes(column: pl.Series) -> np.ndarray:
    return column.rank("dense").cast(pl.Int64).to_numpy() - 1


def test_same_seed_same_table_other_seed_other_table():
    a, b = generate(SMALL), generate(SMALL)
    assert a.table.equals(b.table)
    other = generate(SynthConfig(n_users=200, n_items=80, n_interactions=3000, seed=4))
    assert not a.table.equals(other.table)


def test_columns_dtypes_and_roles(default):
    raw, truth = default
    assert raw.field_names == FIELD_ORDER
    assert raw.table.columns == [*FIELD_ORDER, RawTable.TARGET, RawTable.TIMESTAMP]
    for name in FIELD_ORDER:
        assert raw.table.schema[name] == pl.String
    assert raw.table.schema[RawTable.TARGET] == pl.Float64
    assert raw.table.schema[RawTable.TIMESTAMP] == pl.Int64
    roles = {f.name: f.role for f in raw.fields}
    assert roles["user_id"] == Role.PERSONAL
    assert {roles[n] for n in ("age", "gender", "occupation", "region")} == {Role.USER}
    assert {roles[n] for n in ("item_id", "genre", "year")} == {Role.ITEM}
    assert raw.table.height == 100_000
    assert raw.table.null_count().sum_horizontal().item() == 0
    assert truth.membership.shape == (2000, 8)
    assert truth.membership.dtype == bool
    assert len(truth.probability) == len(truth.logit) == raw.table.height


def test_cardinalities(default):
    raw, _ = default
    t = raw.table
    assert t["age"].n_unique() == 7
    assert t["gender"].n_unique() == 2
    assert t["genre"].n_unique() == 12
    assert t["user_id"].n_unique() <= 2000
    assert t["item_id"].n_unique() <= 500


def test_ratings_encode_the_label(default):
    raw, truth = default
    rating = raw.table[RawTable.TARGET].to_numpy()
    assert set(np.unique(rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    np.testing.assert_array_equal(rating > 3, truth.label == 1)


def test_positive_rate_is_balanced(default):
    _, truth = default
    assert 0.4 <= truth.label.mean() <= 0.6


def test_user_item_pairs_are_distinct(default):
    raw, _ = default
    assert raw.table.select("user_id", "item_id").is_duplicated().sum() == 0


def test_timestamps_strictly_increase_per_user(default):
    raw, _ = default
    gaps = (
        raw.table.sort("user_id", RawTable.TIMESTAMP)
        .select(pl.col(RawTable.TIMESTAMP).diff().over("user_id").alias("gap"))
        .drop_nulls()["gap"]
    )
    assert gaps.min() > 0


def test_without_timestamp():
    raw = generate(SynthConfig(n_users=50, n_items=40, n_interactions=500, with_timestamp=False))
    assert RawTable.TIMESTAMP not in raw.table.columns
    assert not raw.has_timestamp()


def test_users_belong_to_several_groups(default):
    _, truth = default
    per_user = truth.membership.sum(axis=1)
    assert per_user.min() >= 1
    assert per_user.mean() > 1.2
    assert (per_user >= 2).mean() > 0.3
    assert truth.membership.any(axis=0).all()  # no empty group


def test_no_single_field_determines_membership(default):
    """Within every value of every field, some group still splits the users.

    Concretely: the best predictor from one field alone (majority membership
    per value) must miss a good share of users for some group.
    """
    raw, truth = default
    users = (
        raw.table.select("user_id", "age", "gender", "occupation", "region")
        .unique("user_id")
        .with_columns(pl.col("user_id").str.slice(1).cast(pl.Int64).alias("index"))
        .sort("index")
    )
    m = truth.membership[users["index"].to_numpy()]
    for name in ("age", "gender", "occupation", "region"):
        codes = _codes(users[name])
        errors = []
        for g in range(m.shape[1]):
            rate = np.bincount(codes, weights=m[:, g]) / np.bincount(codes)
            errors.append(((rate[codes] >= 0.5) != m[:, g]).mean())
        assert max(errors) > 0.1, name
    # ...but the fields together do carry it: occupation x age beats occupation alone.
    occ, age = _codes(users["occupation"]), _codes(users["age"])
    both = occ * 7 + age
    for g in range(m.shape[1]):
        single = np.bincount(occ, weights=m[:, g]) / np.bincount(occ)
        pair = np.bincount(both, weights=m[:, g], minlength=both.max() + 1)
        pair = pair / np.maximum(np.bincount(both, minlength=both.max() + 1), 1)
        acc_single = ((single[occ] >= 0.5) == m[:, g]).mean()
        acc_pair = ((pair[both] >= 0.5) == m[:, g]).mean()
        assert acc_pair > acc_single


def test_truth_beats_popularity(default):
    _, truth = default
    y = truth.label
    bayes = roc_auc_score(y, truth.probability)
    # Item positive rate, fit on the same rows: an optimistic popularity baseline.
    n_items = len(truth.item_popularity)
    shown = np.bincount(truth.item, minlength=n_items)
    liked = np.bincount(truth.item, weights=y, minlength=n_items)
    popularity = roc_auc_score(y, (liked / np.maximum(shown, 1))[truth.item])
    assert 0.75 <= bayes <= 0.9
    assert 0.5 < popularity < bayes - 0.1
    assert roc_auc_score(y, truth.logit) == pytest.approx(bayes)  # noise only flattens


def test_write_dataset_files_and_schema(tmp_path):
    out = tmp_path / "synth"
    schema_path = write_dataset(SMALL, out)
    assert schema_path == out / "schema.yaml"
    assert sorted(p.name for p in out.iterdir()) == [
        "interactions.csv",
        "items.csv",
        "schema.yaml",
        "users.csv",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]  # no temp dir left behind
    schema = yaml.safe_load(schema_path.read_text())
    assert schema == {
        "interactions": {"path": "interactions.csv"},
        "users": {"path": "users.csv", "key": "user_id"},
        "items": {"path": "items.csv", "key": "item_id"},
        "target": "rating",
        "timestamp": "timestamp",
        "fields": {
            "item_id": "item",
            "genre": "item",
            "year": "item",
            "user_id": "personal",
            "age": "user",
            "gender": "user",
            "occupation": "user",
            "region": "user",
        },
    }


def test_write_dataset_round_trips(tmp_path):
    write_dataset(SMALL, tmp_path / "d")
    raw = generate(SMALL)
    inter = pl.read_csv(tmp_path / "d" / "interactions.csv")
    users = pl.read_csv(tmp_path / "d" / "users.csv", schema_overrides={"user_id": pl.String})
    items = pl.read_csv(tmp_path / "d" / "items.csv")
    assert inter.columns == ["user_id", "item_id", "rating", "timestamp"]
    assert inter.height == raw.table.height
    assert users.height == SMALL.n_users and users["user_id"].n_unique() == SMALL.n_users
    assert items.height == SMALL.n_items and items["item_id"].n_unique() == SMALL.n_items
    joined = inter.join(users, on="user_id", how="left", maintain_order="left").join(
        items, on="item_id", how="left", maintain_order="left"
    )
    assert joined.null_count().sum_horizontal().item() == 0
    rebuilt = joined.select(
        *FIELD_ORDER,
        pl.col("rating").cast(pl.Float64).alias(RawTable.TARGET),
        RawTable.TIMESTAMP,
    )
    assert rebuilt.equals(raw.table)


def test_write_dataset_refuses_to_overwrite(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        write_dataset(SMALL, out)
    assert (out / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["d"]

    write_dataset(SMALL, out, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert (out / "schema.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_write_dataset_into_empty_existing_dir(tmp_path):
    (tmp_path / "d").mkdir()
    write_dataset(SMALL, tmp_path / "d")
    assert (tmp_path / "d" / "interactions.csv").is_file()


def test_write_dataset_without_timestamp(tmp_path):
    config = SynthConfig(n_users=50, n_items=40, n_interactions=500, with_timestamp=False)
    schema = yaml.safe_load(write_dataset(config, tmp_path / "d").read_text())
    assert "timestamp" not in schema
    assert pl.read_csv(tmp_path / "d" / "interactions.csv").columns == [
        "user_id",
        "item_id",
        "rating",
    ]


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError, match="n_interactions"):
        SynthConfig(n_users=10, n_items=10, n_interactions=60)
    with pytest.raises(ConfigError, match="groups_per_user"):
        SynthConfig(n_groups=2, groups_per_user=3)
