"""KMeans groups for data without them (data.user_groups, data/user_groups.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_ml100k
from gprec.cli.main import main
from gprec.data.schema import EncodedField, Role
from gprec.data.user_groups import add_kmeans_groups, assign_groups
from gprec.errors import ConfigError

ML100K_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ml-100k" / "mlp.yaml"
FIELDS = [
    EncodedField("item_id", Role.ITEM, 9),
    EncodedField("user_id", Role.PERSONAL, 30),
    EncodedField("age", Role.USER, 5),
    EncodedField("job", Role.USER, 4),
]


def split(n, seed):
    """Two kinds of users: (age 1, job 1) and (age 4, job 3), with item and id noise."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    return np.stack(
        [rng.integers(1, 9, n), rng.integers(1, 30, n), np.where(kind, 4, 1), np.where(kind, 3, 1)],
        axis=1,
    )


def test_users_with_the_same_features_share_a_group_in_every_split():
    X = {"train": split(200, 0), "valid": split(50, 1), "test": split(50, 2)}
    out, fields, summary = add_kmeans_groups(X, FIELDS, 2, seed=0)
    assert fields[-1] == EncodedField("group", Role.USER, 3) and len(fields) == 5
    for s, x in out.items():
        assert np.array_equal(x[:, :4], X[s])  # the other fields untouched
        group = x[:, 4]
        assert set(group) <= {1, 2}  # 0 stays "unseen"
        # the two kinds of users land in different groups, the same kind in the same one
        kind = X[s][:, 2] == 4
        assert len(set(group[kind])) == 1 and len(set(group[~kind])) == 1
        assert group[kind][0] != group[~kind][0]
    assert sum(summary["train_rows_per_group"]) == 200
    # the saved spec reproduces every row's group without the KMeans object
    for s, x in out.items():
        assert np.array_equal(assign_groups(X[s], json.loads(json.dumps(summary))), x[:, 4])


def test_group_errors_are_one_line():
    X = {"train": split(20, 0), "valid": split(5, 1), "test": split(5, 2)}
    with pytest.raises(ConfigError, match="only 2 distinct user-feature rows"):
        add_kmeans_groups(X, FIELDS, 3, seed=0)
    no_users = [
        f if f.role != Role.USER else EncodedField(f.name, Role.ITEM, f.cardinality) for f in FIELDS
    ]
    with pytest.raises(ConfigError, match="needs user features"):
        add_kmeans_groups(X, no_users, 2, seed=0)
    named = [*FIELDS[:3], EncodedField("group", Role.USER, 4)]
    with pytest.raises(ConfigError, match="already has a field named 'group'"):
        add_kmeans_groups(X, named, 2, seed=0)


def test_gprec_train_with_kmeans_groups(tmp_path):
    data = write_ml100k(tmp_path / "ml-100k")
    out = tmp_path / "run"
    args = [
        "train", "-c", str(ML100K_CONFIG), "--set", f"data.path={data}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.user_groups=4",
        "--set", "train.max_epochs=1", "--set", "train.progress=false", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["test"]["auc"] >= 0
    spec = json.loads((out / "user_groups.json").read_text())  # the run keeps how groups were made
    assert spec["n_groups"] == 4 and spec["field"] == "group" and len(spec["centroids"]) == 4
    # a second run reads the groups back from the cache
    assert main([*args[:-1], str(tmp_path / "run2")]) == 0
    assert json.loads((tmp_path / "run2" / "metrics.json").read_text())["data"]["from_cache"]
    assert json.loads((tmp_path / "run2" / "user_groups.json").read_text()) == spec
