"""Ranking, profiling and group-aggregation metrics against hand computations on tiny examples.

The point of these metrics is that they cannot be gamed: ties count against
the relevant item, so a constant scorer never beats a random one, while the
optimistic (ties-as-hits) count that most published code reports does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from gprec.evaluation.aggregation import aggregate, borda_points, member_satisfaction, top_k
from gprec.evaluation.ranking import (
    clean_negatives,
    dmtl_precision_recall,
    full_ranking_per_user,
    full_ranking_report,
    items_to_mask,
    profiling_report,
    random_sampled_expectation,
    rank_metrics,
    sampled_ranking_report,
    sampled_ranks,
)

L3 = 1.0 / math.log2(3)  # discount at position 2
L5 = 1.0 / math.log2(5)  # discount at position 4
approx = pytest.approx


# --------------------------------------------------------------------------- sampled ranking


def test_clean_negatives_drops_positive_repeats_and_padding():
    keep = clean_negatives(
        np.array([7, 1]),
        np.array([[3, 7, 3, 5, 9], [2, 2, 2, 1, 4]]),
        np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool),
    )
    assert keep.tolist() == [[True, False, False, True, False], [True, False, False, False, True]]


def test_sampled_ranks_count_ties_against_the_held_out_item():
    pos = np.array([0.5, 0.8])
    neg = np.array([[0.9, 0.5, 0.1, 0.5], [0.1, 0.2, np.nan, np.nan]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    assert sampled_ranks(pos, neg, mask).tolist() == [4, 1]  # 0.9 and both 0.5s beat it
    assert sampled_ranks(pos, neg, mask, ties="optimistic").tolist() == [2, 1]
    with pytest.raises(ValueError, match="NaN"):
        sampled_ranks(pos, neg)  # NaN in an unmasked entry


def test_sampled_report_by_hand():
    pos = np.array([0.5, 0.8])
    neg = np.array([[0.9, 0.5, 0.1, 0.5], [0.1, 0.2, 0.0, 0.0]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    rep = sampled_ranking_report(pos, neg, mask, ks=(1, 3))
    # strict ranks 4 and 1; candidates 5 and 3
    assert rep.metrics == approx({"hr@1": 0.5, "ndcg@1": 0.5, "hr@3": 0.5, "ndcg@3": 0.5})
    # ties-as-hits: ranks 2 and 1
    assert rep.optimistic == approx(
        {"hr@1": 0.5, "ndcg@1": 0.5, "hr@3": 1.0, "ndcg@3": (L3 + 1) / 2}
    )
    assert rep.perfect == approx({"hr@1": 1.0, "ndcg@1": 1.0, "hr@3": 1.0, "ndcg@3": 1.0})
    dcg3 = 1 + L3 + 0.5
    assert rep.random == approx(
        {
            "hr@1": (1 / 5 + 1 / 3) / 2,
            "ndcg@1": (1 / 5 + 1 / 3) / 2,
            "hr@3": (3 / 5 + 1) / 2,
            "ndcg@3": (dcg3 / 5 + dcg3 / 3) / 2,
        }
    )
    assert rep.counts["cases_with_ties"] == 1
    d = rep.to_dict()
    assert d["hr@3"] == 0.5 and d["hr@3_optimistic_ties_as_hits"] == 1.0 and "hr@3_random" in d
    assert "NOT the result" in rep.format()


def test_constant_scorer_never_beats_random_but_ties_as_hits_does():
    n, m = 300, 100
    rep = sampled_ranking_report(np.zeros(n), np.zeros((n, m)))
    for name in rep.metrics:
        assert rep.metrics[name] == 0.0 < rep.random[name]
        assert rep.optimistic[name] == 1.0 > rep.random[name]  # the published caveat
    assert rep.random["hr@5"] == approx(5 / 101) and rep.random["hr@10"] == approx(10 / 101)
    # k above the list length: the constant scorer is a hit, still not above random
    rep = sampled_ranking_report(np.zeros(4), np.zeros((4, 2)), ks=(5,))
    assert rep.metrics["hr@5"] == rep.random["hr@5"] == 1.0
    assert rep.metrics["ndcg@5"] == approx(0.5)
    assert rep.random["ndcg@5"] == approx((1 + L3 + 0.5) / 3) and rep.random["ndcg@5"] > 0.5


def test_perfect_and_random_sampled_rankers():
    rng = np.random.default_rng(0)
    n, m = 4000, 20
    mask = rng.random((n, m)) < 0.6  # lists of different lengths
    rep = sampled_ranking_report(np.ones(n), np.zeros((n, m)), mask)
    assert all(v == 1.0 for v in rep.metrics.values())
    assert rep.metrics == rep.perfect
    # A random scorer (continuous scores, no ties) averages the closed form.
    closed = {k: v.mean() for k, v in random_sampled_expectation(mask.sum(1) + 1).items()}
    draws = [
        rank_metrics(sampled_ranks(rng.random(n), rng.random((n, m)), mask)) for _ in range(10)
    ]
    for name, value in closed.items():
        mc = np.mean([d[name].mean() for d in draws])
        assert mc == approx(value, abs=0.01)
        assert rep.random[name] == approx(value)


# --------------------------------------------------------------------------- full ranking

SCORES = np.array(
    [
        [0.9, 0.8, 0.5, 0.5, 0.1, 0.7],
        [0.2, 0.2, 0.2, 0.2, 0.2, 0.2],
        [0.3, 0.1, 0.4, 0.0, 0.2, 0.5],
    ]
)
SEEN = items_to_mask([[0], [5], []], 6)
TEST = items_to_mask([[2, 4], [0, 5], []], 6)  # user 1's item 5 is seen: dropped; user 2: none


def test_full_ranking_by_hand():
    per_user, r, dropped = full_ranking_per_user(SCORES, SEEN, TEST, ks=(2, 4))
    # user 0: unseen order 1 (.8), 5 (.7), 3 (.5, non-relevant before the tied 2), 2, 4
    # user 1: constant scores, the relevant item 0 goes last of the 5 unseen
    assert r.tolist() == [2, 1, 0] and dropped.tolist() == [0, 1, 0]
    assert per_user["precision@2"][:2].tolist() == [0.0, 0.0]
    assert per_user["precision@4"][:2] == approx([0.25, 0.0])
    assert per_user["recall@4"][:2] == approx([0.5, 0.0])
    assert per_user["ndcg@4"][0] == approx(L5 / (1 + L3))
    assert np.isnan(per_user["recall@4"][2])  # no relevant item: undefined, not zero
    rep = full_ranking_report(SCORES, SEEN, TEST, ks=(2, 4))
    assert rep.counts == {"users": 2, "users_without_relevant": 1, "test_items_dropped_as_seen": 1}
    assert rep.metrics == approx(
        {
            "precision@2": 0,
            "recall@2": 0,
            "ndcg@2": 0,
            "precision@4": 0.125,
            "recall@4": 0.25,
            "ndcg@4": L5 / (1 + L3) / 2,
        }
    )
    # perfect: user 0 has R=2, user 1 R=1
    assert rep.perfect == approx(
        {
            "precision@2": (1 + 0.5) / 2,
            "recall@2": 1,
            "ndcg@2": 1,
            "precision@4": (0.5 + 0.25) / 2,
            "recall@4": 1,
            "ndcg@4": 1,
        }
    )
    # random, N = 5 unseen for both
    dcg4 = 1 + L3 + 0.5 + L5
    assert rep.random == approx(
        {
            "precision@2": (0.4 + 0.2) / 2,
            "recall@2": 0.4,
            "ndcg@2": (0.4 + 0.2 * (1 + L3)) / 2,
            "precision@4": (0.4 + 0.2) / 2,
            "recall@4": 0.8,
            "ndcg@4": (0.4 * dcg4 / (1 + L3) + 0.2 * dcg4) / 2,
        }
    )


def test_full_ranking_seen_items_never_count_and_inputs_agree():
    # The seen item 0 of user 0 has the top score and is test-relevant in no way it
    # could be recommended; sparse masks and tiny chunks give the same numbers.
    dense = full_ranking_report(SCORES, SEEN, TEST, ks=(2, 4))
    sparse = full_ranking_report(
        SCORES, sp.csr_matrix(SEEN), sp.csr_matrix(TEST), ks=(2, 4), chunk_size=1
    )
    assert sparse.metrics == approx(dense.metrics) and sparse.random == approx(dense.random)
    # an unseen item scored -inf still ranks before seen items (k beyond N)
    s = np.array([[-np.inf, 1.0, 2.0]])
    pu, _, _ = full_ranking_per_user(
        s, np.array([[0, 1, 1]], bool), np.array([[1, 0, 0]], bool), ks=(3,)
    )
    assert pu["recall@3"][0] == 1.0 and pu["precision@3"][0] == approx(1 / 3)


def test_full_ranking_perfect_and_random_rankers():
    rng = np.random.default_rng(1)
    n_users, n_items = 50, 30
    seen = rng.random((n_users, n_items)) < 0.3
    test = (rng.random((n_users, n_items)) < 0.15) & ~seen
    test[0] = False  # one user without relevant items
    rep = full_ranking_report(test.astype(float), seen, test, ks=(3, 10))
    assert rep.metrics == approx(rep.perfect)
    assert all(rep.metrics[f"ndcg@{k}"] == 1.0 for k in (3, 10))
    constant = full_ranking_report(np.zeros((n_users, n_items)), seen, test, ks=(3, 10))
    draws = [
        full_ranking_report(rng.random((n_users, n_items)), seen, test, ks=(3, 10)).metrics
        for _ in range(300)
    ]
    for name, value in rep.random.items():
        assert np.mean([d[name] for d in draws]) == approx(value, abs=0.01)
        assert constant.metrics[name] <= value


# --------------------------------------------------------------------------- DMTL protocol


def _dmtl_example():
    users, ratings, preds = [], [], []
    # A: 12 items; top-10 by prediction, of which 8 are predicted >= 3.5
    a_true = [5, 4, 3, 2, 5, 1, 4, 4, 2, 3, 5, 1]
    a_pred = [4.5, 4.4, 4.3, 4.2, 4.1, 4.0, 3.9, 3.8, 3.4, 3.3, 3.2, 3.1]
    for uid, t, p in (
        ("A", a_true, a_pred),
        ("B", [3, 2, 1], [4, 3, 2]),
        ("C", [4, 5], [3.0, 3.4]),
        ("D", [5, 2, 4], [4.0, 4.0, 4.0]),
    ):
        users += [uid] * len(t)
        ratings += t
        preds += p
    perm = np.random.default_rng(0).permutation(len(users))  # row order must not matter
    return np.array(users)[perm], np.array(ratings, float)[perm], np.array(preds)[perm]


def test_dmtl_precision_recall_by_hand():
    u, r, p = _dmtl_example()
    # A: rec = 8 items, 5 relevant of 6 -> P 5/8, R 5/6; B: no relevant -> P 0, R 0 (zero);
    # C: nothing recommended -> P 0 (zero), R 0; D: all 3 recommended -> P 2/3, R 1
    rep = dmtl_precision_recall(u, r, p)
    assert rep.metrics == approx(
        {"precision@10": (5 / 8 + 2 / 3) / 4, "recall@10": (5 / 6 + 1) / 4}
    )
    assert (
        rep.counts["users_without_relevant"] == 1 and rep.counts["users_without_recommended"] == 1
    )
    assert rep.perfect == approx({"precision@10": 3 / 4, "recall@10": 3 / 4})
    assert rep.random == approx(
        {"precision@10": (0.5 + 0 + 1 + 2 / 3) / 4, "recall@10": (10 / 12 + 0 + 1 + 1) / 4}
    )
    skip = dmtl_precision_recall(u, r, p, no_relevant="skip")  # B out of both
    assert skip.metrics == approx(
        {"precision@10": (5 / 8 + 2 / 3) / 3, "recall@10": (5 / 6 + 1) / 3}
    )
    assert skip.perfect == approx({"precision@10": 1.0, "recall@10": 1.0})
    norec = dmtl_precision_recall(u, r, p, no_recommended="skip")  # C out of P only
    assert norec.metrics == approx(
        {"precision@10": (5 / 8 + 2 / 3) / 3, "recall@10": (5 / 6 + 1) / 4}
    )
    both = dmtl_precision_recall(u, r, p, no_relevant="skip", no_recommended="skip")
    assert both.metrics == approx(
        {"precision@10": (5 / 8 + 2 / 3) / 2, "recall@10": (5 / 6 + 1) / 3}
    )


def test_dmtl_ties_go_against_relevant_items():
    # Equal predictions at the cut: the non-relevant item takes the slot
    # (Surprise's stable sort would keep input order and count a hit).
    rep = dmtl_precision_recall(["u", "u"], [5.0, 2.0], [4.0, 4.0], k=1)
    assert rep.metrics == {"precision@1": 0.0, "recall@1": 0.0}
    assert rep.perfect == {"precision@1": 1.0, "recall@1": 1.0}


def test_dmtl_random_ranker_equals_closed_form():
    u, r, _ = _dmtl_example()
    rng = np.random.default_rng(2)
    rep = dmtl_precision_recall(u, r, np.full(len(u), 4.0))
    draws = [dmtl_precision_recall(u, r, rng.uniform(4, 5, len(u))).metrics for _ in range(3000)]
    for name, value in rep.random.items():
        assert np.mean([d[name] for d in draws]) == approx(value, abs=0.01)


# --------------------------------------------------------------------------- profiling


def test_profiling_by_hand():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    rep = profiling_report(y_true, y_pred, n_random=400, seed=3)
    # per class P: 1/2, 2/3, 1; R: 1/2, 1, 1/2; F1: 1/2, 4/5, 2/3
    assert rep.metrics == approx(
        {
            "precision_macro": (0.5 + 2 / 3 + 1) / 3,
            "recall_macro": 2 / 3,
            "f1_macro": (0.5 + 0.8 + 2 / 3) / 3,
            "precision_micro": 4 / 6,
            "recall_micro": 4 / 6,
            "f1_micro": 4 / 6,
            "accuracy": 4 / 6,
        }
    )
    assert all(v == 1.0 for v in rep.perfect.values())
    assert rep.random["accuracy"] == approx(1 / 3, abs=0.03)  # uniform labels over 3 classes
    assert profiling_report(y_true, y_pred, n_random=400, seed=3).random == rep.random  # seeded


# --------------------------------------------------------------------------- aggregation

MEMBERS = np.array(
    [
        [5.0, 3.0, 1.0, 4.0],
        [1.0, 4.0, 5.0, 4.0],
        [3.0, 3.0, 2.0, 5.0],
    ]
)


def test_four_aggregations_on_three_users():
    assert aggregate(MEMBERS, "average") == approx([3, 10 / 3, 8 / 3, 13 / 3])
    assert aggregate(MEMBERS, "least_misery").tolist() == [1, 3, 1, 4]
    assert aggregate(MEMBERS, "most_pleasure").tolist() == [5, 4, 5, 5]
    # Borda points (ascending rank - 1, ties share the mean rank):
    # [3, 1, 0, 2], [0, 1.5, 3, 1.5], [1.5, 1.5, 0, 3]
    assert borda_points(MEMBERS).tolist() == [[3, 1, 0, 2], [0, 1.5, 3, 1.5], [1.5, 1.5, 0, 3]]
    assert aggregate(MEMBERS, "borda").tolist() == [4.5, 4.0, 3.0, 6.5]
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(MEMBERS, "median")


def test_batched_aggregation_with_group_index():
    rows = MEMBERS[[2, 0, 1, 0, 2]]  # membership rows, groups interleaved
    gi = np.array([0, 0, 0, 2, 2])  # group 1 has no member rows
    for method in ("average", "least_misery", "most_pleasure", "borda"):
        out = aggregate(rows, method, gi, n_groups=3)
        assert out.shape == (3, 4)
        assert out[0] == approx(aggregate(MEMBERS, method))
        assert out[2] == approx(aggregate(MEMBERS[[0, 2]], method))
        assert np.isnan(out[1]).all()


def test_top_k_ties_and_exclusion():
    assert top_k(aggregate(MEMBERS, "average"), 2).tolist() == [3, 1]
    assert top_k([1.0, 2.0, 2.0, 0.0], 2).tolist() == [1, 2]  # tie: lower index first
    assert top_k([[1.0, 2.0, 2.0, 0.0]], 3, exclude=[[0, 1, 1, 0]]).tolist() == [[0, 3, -1]]


def test_member_satisfaction_by_hand():
    sat = member_satisfaction(MEMBERS, [3, 1])
    # gains over each member's minimum: [4,2,0,3], [0,3,4,3], [1,1,0,3]
    assert sat.per_member == approx([5 / 7, 6 / 7, 1.0])
    assert sat.mean == approx(6 / 7) and sat.min == approx(5 / 7)
    raw = member_satisfaction(MEMBERS, [3, 1], baseline="none")
    assert raw.per_member == approx([7 / 9, 8 / 9, 1.0])
    ex = member_satisfaction(MEMBERS, [1, 0], exclude=[0, 0, 0, 1])  # item 3 not a candidate
    assert ex.per_member == approx([1.0, 3 / 7, 1.0])
    # an indifferent member is fully satisfied; batch follows group_index
    rows = np.vstack([MEMBERS, np.full(4, 2.0)])
    batch = member_satisfaction(rows, [[3, 1], [0, 2]], group_index=[0, 0, 0, 1])
    assert batch.per_member == approx([5 / 7, 6 / 7, 1.0, 1.0])
    assert batch.group_mean == approx([6 / 7, 1.0]) and batch.group_min == approx([5 / 7, 1.0])
    assert batch.mean == approx((6 / 7 + 1) / 2) and batch.min == approx((5 / 7 + 1) / 2)
    with pytest.raises(ValueError, match="repeats"):
        member_satisfaction(MEMBERS, [1, 1])
