"""The classic CF baselines (scikit-surprise) and the non-learned predictors, on gprec's split.

What must hold: the baselines see exactly the rows `load_dataset` gives; the vectorised
predictions equal Surprise's own one-pair-at-a-time `predict` (unseen ids included); unseen
users and items get the documented fallback; popularity / random / perfect do what they say;
and scikit-surprise is never imported by the CLI.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_ml100k
from gprec.baselines.surprise_models import (
    BASELINES,
    SURPRISE_MODELS,
    PerfectPredictor,
    PopularityPredictor,
    RandomPredictor,
    RatingSplit,
    SurpriseModel,
    make_baseline,
)
from gprec.evaluation.metrics import regression_metrics
from gprec.evaluation.ranking import full_ranking_report

pytest.importorskip("surprise")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "ml-100k" / "mlp.yaml"
REGRESSION = ["train.task=regression", "data.target=value"]


def write_with_rare(directory: Path) -> Path:
    """A tiny ML-100K (30 users, 20 items) plus 10 users and 10 items rated once each, so
    that some land only in valid/test and gprec encodes them as index 0."""
    write_ml100k(directory, n_users=40, n_items=30, n_ratings=600)
    rows = [ln.split("\t") for ln in (directory / "u.data").read_text().splitlines()]
    kept = [r for r in rows if int(r[0]) <= 30 and int(r[1]) <= 20]
    extra = [[str(30 + k), str(k), "4", str(890000000 + k)] for k in range(1, 11)]
    extra += [[str(k), str(20 + k), str(1 + k % 5), str(891000000 + k)] for k in range(1, 11)]
    (directory / "u.data").write_text("".join("\t".join(r) + "\n" for r in kept + extra))
    return directory


def overrides(directory: Path, seed: int) -> list[str]:
    return [
        f"data.path={directory}",
        f"data.cache_dir={directory.parent / 'cache'}",
        f"train.seed={seed}",
        *REGRESSION,
    ]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """(split, dataset, overrides): the first seed whose test split has unseen users and items."""
    directory = write_with_rare(tmp_path_factory.mktemp("data") / "ml-100k")
    for seed in range(2024, 2074):
        split, data = RatingSplit.from_config(CONFIG, overrides(directory, seed))
        unseen = split.unseen("test")
        if unseen["unseen_user"] and unseen["unseen_item"]:
            return split, data, overrides(directory, seed)
    raise AssertionError("no seed put a rare user and a rare item in the test split")


@pytest.fixture(scope="module")
def fitted(loaded):
    split = loaded[0]
    return {key: make_baseline(key, seed=7).fit(split) for key in BASELINES}


def all_pairs(split: RatingSplit) -> tuple[np.ndarray, np.ndarray]:
    """Every (user, item) of the index space, index 0 (unseen) included."""
    u, i = np.meshgrid(np.arange(split.n_users), np.arange(split.n_items), indexing="ij")
    return u.ravel(), i.ravel()


# --------------------------------------------------------------------------- the split


def test_split_is_the_rows_load_dataset_gives(loaded):
    from gprec.config import load_config
    from gprec.data.dataset import load_dataset

    split, data, sets = loaded
    cfg = load_config(CONFIG, sets)
    again = load_dataset(cfg.data, cfg.split_seed(), use_cache=False)  # parsed afresh
    names = [f.name for f in again.fields]
    u, i = names.index("user_id"), names.index("item_id")
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(split.users[s], again.X[s][:, u])
        np.testing.assert_array_equal(split.items[s], again.X[s][:, i])
        np.testing.assert_array_equal(split.ratings[s], again.y[s])
    assert set(np.unique(split.ratings["train"])) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert split.users["train"].min() >= 1 and split.items["train"].min() >= 1
    assert (split.n_users, split.n_items) == (
        again.fields[u].cardinality,
        again.fields[i].cardinality,
    )


def test_from_config_refuses_binary_labels(loaded, tmp_path):
    from gprec.errors import ConfigError

    sets = [s for s in loaded[2] if s not in REGRESSION]
    with pytest.raises(ConfigError, match="data.target=value"):
        RatingSplit.from_config(CONFIG, sets)


# --------------------------------------------------------------------------- Surprise


@pytest.mark.parametrize("key", list(SURPRISE_MODELS))
def test_vectorised_predictions_equal_surprise_own(fitted, loaded, key):
    """On the test rows (unseen ids included) and on every pair of the index space."""
    split = loaded[0]
    model = fitted[key]
    for users, items in ((split.users["test"], split.items["test"]), all_pairs(split)):
        np.testing.assert_allclose(
            model.predict(users, items), model.predict_surprise(users, items), atol=1e-10
        )
        np.testing.assert_allclose(
            model.scores(users, items), model.predict_surprise(users, items, clip=False), atol=1e-10
        )
    lo, hi = split.rating_scale
    pred = model.predict_split("test")
    assert pred.shape == split.ratings["test"].shape and lo <= pred.min() and pred.max() <= hi
    assert np.isfinite(regression_metrics(split.ratings["test"], pred)["rmse"])


@pytest.mark.parametrize("key", list(SURPRISE_MODELS))
def test_grid_equals_pairwise_scores(fitted, loaded, key):
    split = loaded[0]
    model = fitted[key]
    users, items = np.arange(split.n_users), np.arange(split.n_items)
    grid = model.grid(users, items)
    u, i = all_pairs(split)
    np.testing.assert_allclose(grid.ravel(), model.scores(u, i), atol=1e-10)


@pytest.mark.parametrize("key", ["svd", "nmf"])
def test_seeded_models_repeat_and_follow_the_seed(loaded, key):
    split = loaded[0]
    pairs = (split.users["test"], split.items["test"])
    a = make_baseline(key, seed=1).fit(split).predict(*pairs)
    b = make_baseline(key, seed=1).fit(split).predict(*pairs)
    c = make_baseline(key, seed=2).fit(split).predict(*pairs)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_unseen_ids_fall_back_as_documented(fitted, loaded):
    split = loaded[0]
    mu, (lo, hi) = split.global_mean, split.rating_scale
    user, item = int(split.users["train"][0]), int(split.items["train"][0])
    users = np.array([0, user, 0])
    items = np.array([item, 0, 0])  # unseen user; unseen item; both
    for key in ("svd", "svdpp", "knnbaseline"):  # the baseline with the unknown side dropped
        m = fitted[key]
        a, ts = m.algo, m.trainset
        bu, bi = a.bu[ts.to_inner_uid(user)], a.bi[ts.to_inner_iid(item)]
        expected = np.clip([mu + bi, mu + bu, mu], lo, hi)
        np.testing.assert_allclose(m.predict(users, items), expected, atol=1e-12)
    for key in ("nmf", "knnbasic", "knnwithmeans"):  # impossible: the global mean
        np.testing.assert_allclose(fitted[key].predict(users, items), mu, atol=1e-12)
    # The unseen rows of the real test split get the same treatment.
    rows = (split.users["test"] == 0) | (split.items["test"] == 0)
    assert rows.any()
    for key in ("nmf", "knnbasic", "knnwithmeans"):
        np.testing.assert_allclose(fitted[key].predict_split("test")[rows], mu, atol=1e-12)


def hand_split() -> RatingSplit:
    """Users 1 and 2 rated disjoint items (1 and 2): no common item, similarity 0."""
    arr = lambda *v: np.array(v, np.int64)  # noqa: E731
    return RatingSplit(
        users={"train": arr(1, 1, 2, 2), "valid": arr(1), "test": arr(1, 2)},
        items={"train": arr(1, 3, 2, 4), "valid": arr(2), "test": arr(2, 1)},
        ratings={
            "train": np.array([5.0, 4.0, 1.0, 2.0]),
            "valid": np.array([3.0]),
            "test": np.array([2.0, 4.0]),
        },
        n_users=3,
        n_items=5,
    )


def test_knn_without_positive_neighbours():
    """KNNBasic -> global mean, KNNWithMeans -> the user's mean, KNNBaseline -> the baseline,
    when no neighbour with a positive similarity rated the item."""
    split = hand_split()
    users, items = np.array([1]), np.array([2])  # user 1, item 2 rated only by user 2
    for key, expected in (
        ("knnbasic", lambda m: split.global_mean),
        ("knnwithmeans", lambda m: 4.5),
        (
            "knnbaseline",
            lambda m: (
                split.global_mean
                + m.algo.bu[m.trainset.to_inner_uid(1)]
                + m.algo.bi[m.trainset.to_inner_iid(2)]
            ),
        ),
    ):
        m = SurpriseModel(key).fit(split)
        assert m.algo.sim[m.trainset.to_inner_uid(1), m.trainset.to_inner_uid(2)] == 0
        np.testing.assert_allclose(m.predict(users, items), expected(m), atol=1e-12)
        np.testing.assert_allclose(m.predict(users, items), m.predict_surprise(users, items))


def test_out_of_range_index_is_refused(fitted, loaded):
    split = loaded[0]
    with pytest.raises(ValueError, match="out of range"):
        fitted["svd"].predict([split.n_users], [1])


# --------------------------------------------------------------------------- non-learned


def test_popularity_counts_and_means(fitted, loaded):
    split = loaded[0]
    pop = fitted["popularity"]
    assert isinstance(pop, PopularityPredictor)
    items = np.arange(split.n_items)
    train_i, train_r = split.items["train"], split.ratings["train"]
    count = np.array([(train_i == i).sum() for i in items], float)
    count[0] = 0
    mean = np.array(
        [train_r[train_i == i].mean() if (train_i == i).any() else split.global_mean for i in items]
    )
    mean[0] = split.global_mean
    users = np.ones_like(items)
    np.testing.assert_allclose(pop.scores(users, items), count)
    np.testing.assert_allclose(pop.predict(users, items), mean)
    np.testing.assert_allclose(pop.predict(users + 3, items), mean)  # no user in it


def test_random_is_seeded_fixed_per_pair_and_order_free(loaded):
    split = loaded[0]
    u, i = all_pairs(split)
    r1 = RandomPredictor(seed=3).fit(split)
    a = r1.scores(u, i)
    rev = r1.scores(u[::-1], i[::-1])[::-1]
    np.testing.assert_array_equal(a, rev)  # the same pair scores the same in any call
    np.testing.assert_array_equal(a, RandomPredictor(seed=3).fit(split).scores(u, i))
    assert not np.allclose(a, RandomPredictor(seed=4).fit(split).scores(u, i))
    assert len(np.unique(a)) == len(a)  # continuous: no ties
    lo, hi = split.rating_scale
    p = r1.predict(u, i)
    assert lo <= p.min() and p.max() <= hi
    # Distribution: N(mean, std) of the training ratings (loose, few hundred pairs).
    r = split.ratings["train"]
    assert abs(a.mean() - r.mean()) < 0.25 and abs(a.std() - r.std()) < 0.25


def test_perfect_is_the_truth_and_the_ceiling(fitted, loaded):
    split = loaded[0]
    perfect = fitted["perfect"]
    assert isinstance(perfect, PerfectPredictor)
    for s in ("valid", "test"):
        pred = perfect.predict_split(s)
        np.testing.assert_array_equal(pred, split.ratings[s])
        assert regression_metrics(split.ratings[s], pred) == {"rmse": 0.0, "mae": 0.0}
    # Pairs of known ids look up their rating; an unrated pair has none.
    known = (split.users["test"] > 0) & (split.items["test"] > 0)
    got = perfect.predict(split.users["test"][known], split.items["test"][known])
    np.testing.assert_array_equal(got, split.ratings["test"][known])
    every = {
        f: np.concatenate([getattr(split, f)[s] for s in split.ratings]) for f in ("users", "items")
    }
    rated = set(zip(every["users"].tolist(), every["items"].tolist(), strict=True))
    free = next(
        (u, i)
        for u in range(1, split.n_users)
        for i in range(1, split.n_items)
        if (u, i) not in rated
    )
    assert np.isnan(perfect.predict([free[0]], [free[1]])[0])
    assert perfect.scores([free[0]], [free[1]])[0] == 0.0


def test_perfect_and_random_reach_the_full_ranking_bounds(fitted, loaded):
    """Scored by gprec's full ranking, the perfect predictor's grid reaches the closed-form
    perfect bound; the random one lands near the closed-form random bound."""
    split = loaded[0]
    users, items = np.arange(1, split.n_users), np.arange(1, split.n_items)
    seen = np.zeros((len(users), len(items)), bool)
    for s in ("train", "valid"):
        ok = (split.users[s] > 0) & (split.items[s] > 0)
        seen[split.users[s][ok] - 1, split.items[s][ok] - 1] = True
    ok = (split.users["test"] > 0) & (split.items["test"] > 0) & (split.ratings["test"] >= 3.5)
    test = np.zeros_like(seen)
    test[split.users["test"][ok] - 1, split.items["test"][ok] - 1] = True
    test &= ~seen
    report = full_ranking_report(fitted["perfect"].grid(users, items), seen, test, ks=(5,))
    for name, value in report.metrics.items():
        assert value == pytest.approx(report.perfect[name])
    report = full_ranking_report(fitted["random"].grid(users, items), seen, test, ks=(5,))
    assert report.metrics["recall@5"] < report.perfect["recall@5"]


# --------------------------------------------------------------------------- import hygiene


def test_make_baseline_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("svd+++")
    with pytest.raises(ValueError, match="takes no options"):
        make_baseline("random", n_factors=3)


def test_surprise_is_not_imported_by_the_cli_or_the_package():
    code = (
        "import sys, gprec.cli.main, gprec.baselines, gprec.training.run\n"
        "print('surprise' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"
