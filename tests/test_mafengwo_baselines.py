"""The two no-learning group baselines (group popularity, neighbour groups) against hand
computations on a tiny AGREE-layout dataset written here, ties counted against the held-out
item, and the committed Mafengwo summary reproduced from the real files when present."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from gprec.baselines.group_heuristics import (
    group_popularity,
    lexicographic,
    neighbour_group_scores,
    neighbour_matrix,
    sampled_candidates,
    score_cases,
)
from gprec.data.groups import load_agree
from gprec.evaluation.ranking import sampled_ranks

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "mafengwo_baselines.py"
SUMMARY = ROOT / "benchmarks" / "results" / "mafengwo-baselines" / "summary.json"
MAFENGWO = ROOT.parent / "shared" / "data" / "mafengwo"

# Groups g0 {0,1}, g1 {1,2,3}, g2 {1,3,4}, g3 {5,6}: g0-g1 and g0-g2 share user 1
# (Jaccard 1/4 each), g1-g2 share users 1 and 3 (Jaccard 2/4), g3 shares nobody.
# Training: g0 {0,1}, g1 {1,2} (1 listed twice), g2 {2,3}, g3 {3,4}.
# Test: g0 held out 3, g1 held out 0, g2 held out 2, g3 held out 5. Negatives as published:
# case 0 repeats 5, case 1 lists its own held-out item 0, case 3 has six negatives.
FILES = {
    "groupMember.txt": "0 0,1\n1 1,2,3\n2 1,3,4\n3 5,6\n",
    "groupRatingTrain.txt": "0 0\n0 1\n1 1\n1 2\n1 1\n2 2\n2 3\n3 3\n3 4\n",
    "groupRatingTest.txt": "0 3\n1 0\n2 2\n3 5\n",
    "groupRatingNegative.txt": (
        "(0,3) 1 4 5 5\r\n(1,0) 3 0 5 6\r\n(2,2) 0 3 4 6\r\n(3,5) 6 0 1 2 3 4\r\n"
    ),
}
# By hand: interactions per item (item 1 is listed three times: g0 once, g1 twice).
POPULARITY = [1, 3, 2, 2, 1, 0, 0]
# Other groups sharing a member that chose the item: distinct groups, g1's repeat counts once,
# and a group's own items get nothing from itself (g0 item 0, g2 item 3).
COUNT = [
    [0, 1, 2, 1, 0, 0, 0],  # g0: item 1 by g1; item 2 by g1 and g2; item 3 by g2
    [1, 1, 1, 1, 0, 0, 0],  # g1: items 0, 1 by g0; items 2, 3 by g2
    [1, 2, 1, 0, 0, 0, 0],  # g2: items 0, 1 by g0; item 1, 2 by g1
    [0, 0, 0, 0, 0, 0, 0],  # g3: no neighbours
]
JACCARD = [
    [0, 1 / 4, 1 / 2, 1 / 4, 0, 0, 0],
    [1 / 4, 1 / 4, 1 / 2, 1 / 2, 0, 0, 0],
    [1 / 4, 3 / 4, 1 / 2, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
]


@pytest.fixture
def tiny(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text, newline="")
    return load_agree(tmp_path)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("mafengwo_baselines", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ranks(data, scores, clean=True):
    entity, held_out, negatives, mask = sampled_candidates(data.group_test, clean)
    pos, neg = score_cases(scores, entity, held_out, negatives)
    return (
        sampled_ranks(pos, neg, mask, ties="against").tolist(),
        sampled_ranks(pos, neg, mask, ties="optimistic").tolist(),
    )


def test_scorers_equal_the_hand_computation(tiny):
    np.testing.assert_array_equal(group_popularity(tiny), POPULARITY)
    np.testing.assert_array_equal(neighbour_group_scores(tiny), COUNT)
    np.testing.assert_allclose(neighbour_group_scores(tiny, "jaccard"), JACCARD)
    shared = neighbour_matrix(tiny, "shared_members").toarray()
    np.testing.assert_array_equal(shared, [[0, 1, 1, 0], [1, 0, 2, 0], [1, 2, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="weight"):
        neighbour_matrix(tiny, "members")


def test_candidates_cleaned_and_as_published(tiny):
    _, held_out, negatives, mask = sampled_candidates(tiny.group_test, clean=True)
    assert held_out.tolist() == [3, 0, 2, 5]
    assert [row[m].tolist() for row, m in zip(negatives, mask, strict=True)] == [
        [1, 4, 5],
        [3, 5, 6],
        [0, 3, 4, 6],
        [6, 0, 1, 2, 3, 4],
    ]
    _, _, raw, raw_mask = sampled_candidates(tiny.group_test, clean=False)
    assert raw_mask.sum(axis=1).tolist() == [4, 4, 4, 6]
    assert raw[0, :4].tolist() == [1, 4, 5, 5]


def test_ties_count_against_the_held_out_item(tiny):
    pop = group_popularity(tiny)
    # Popularity. Case 0: item 3 (2) behind item 1 (3). Case 1: item 0 (1) behind item 3 (2).
    # Case 2: item 2 (2) ties item 3 (2): rank 2, a hit only if ties counted as hits.
    # Case 3: item 5 (0) ties item 6 (0) and trails the other five: 7 strictly, 6 optimistic.
    assert ranks(tiny, pop) == ([2, 2, 2, 7], [2, 2, 1, 6])
    # Published lists: case 1 lists its own held-out item, a tie that costs it one place.
    assert ranks(tiny, pop, clean=False) == ([2, 3, 2, 7], [2, 2, 1, 6])
    # Neighbour count: every held-out item ties a negative; g3 scores everything 0, a constant
    # that is rank 1 when ties are hits and last (6 negatives + 1) when they are not.
    count = neighbour_group_scores(tiny)
    assert ranks(tiny, count) == ([2, 2, 2, 7], [1, 1, 1, 1])
    assert ranks(tiny, count, clean=False) == ([2, 3, 2, 7], [1, 1, 1, 1])
    jaccard = neighbour_group_scores(tiny, "jaccard")
    assert ranks(tiny, jaccard) == ([2, 2, 1, 7], [1, 2, 1, 1])
    # Popularity breaks Jaccard's ties: case 0's item 3 (1/4, pop 2) now loses to item 1
    # (1/4, pop 3) outright; g3's item 5 (0, pop 0) still ties item 6 (0, pop 0).
    assert ranks(tiny, lexicographic(jaccard, pop)) == ([2, 2, 1, 7], [2, 2, 1, 6])


def test_lexicographic_orders_by_primary_then_secondary():
    primary = np.array([[0.1 + 0.2, 0.3, 0.5, 0.0]])  # 0.1 + 0.2 != 0.3 in float64
    secondary = np.array([5.0, 1.0, 0.0, 9.0])
    key = lexicographic(primary, secondary)
    assert key.shape == primary.shape
    # 0.5 first whatever its secondary; the two 0.3s tie on primary (after rounding) and
    # are ordered by secondary; 0.0 last despite the largest secondary.
    assert np.argsort(-key[0]).tolist() == [2, 0, 1, 3]
    equal = lexicographic(np.array([1.0, 1.0]), np.array([2.0, 2.0]))
    assert equal[0] == equal[1]  # equal on both keys: still a tie


def test_evaluate_reports_the_hand_computed_metrics(tiny, bench):
    out = bench.evaluate(tiny)
    pop = out["results"]["group_popularity"]
    log2_3 = np.log2(3.0)
    # Strict cleaned ranks [2, 2, 2, 7]; ties-as-hits [2, 2, 1, 6].
    assert pop["cleaned"]["ties_against"]["hr@5"] == pytest.approx(3 / 4)
    assert pop["cleaned"]["ties_against"]["ndcg@5"] == pytest.approx(3 / log2_3 / 4)
    assert pop["cleaned"]["ties_against"]["hr@10"] == pytest.approx(1.0)
    assert pop["cleaned"]["ties_against"]["ndcg@10"] == pytest.approx((3 / log2_3 + 1 / 3) / 4)
    assert pop["cleaned"]["ties_as_hits"]["ndcg@5"] == pytest.approx((2 / log2_3 + 1) / 4)
    assert pop["cleaned"]["cases_with_ties"] == 2
    # Published ranks [2, 3, 2, 7].
    assert pop["published"]["ties_against"]["ndcg@5"] == pytest.approx((2 / log2_3 + 1 / 2) / 4)
    count = out["results"]["neighbour_groups"]["cleaned"]
    assert count["ties_against"]["hr@5"] == pytest.approx(3 / 4)
    assert count["ties_as_hits"]["hr@5"] == pytest.approx(1.0)
    # Bounds on the cleaned lists: 4, 4, 5 and 7 candidates.
    bounds = out["bounds"]["cleaned"]
    assert bounds["perfect"]["hr@5"] == 1.0
    assert bounds["random"]["hr@5"] == pytest.approx((1 + 1 + 1 + 5 / 7) / 4)
    assert (bounds["candidates_min"], bounds["candidates_max"]) == (4, 7)
    facts = out["data"]
    # Held-out items 3, 0, 2 are chosen by a neighbour of their group; g3's item 5 is not.
    assert facts["held_out_neighbour_items"] == pytest.approx(3 / 4)
    assert facts["removed_by_cleaning"] == {
        "held_out_item": 1,
        "cases_with_held_out_item": 1,
        "repeats": 1,
    }
    assert facts["negatives_own_train_items"] == 4  # g0: item 1; g2: 3; g3: 3 and 4


def test_no_seeds_the_scores_are_deterministic(tiny):
    first = neighbour_group_scores(tiny, "jaccard")
    assert np.array_equal(first, neighbour_group_scores(tiny, "jaccard"))


@pytest.mark.skipif(not MAFENGWO.is_dir(), reason="no Mafengwo copy at ../shared/data/mafengwo")
def test_mafengwo_reproduces_the_committed_summary(bench):
    committed = json.loads(SUMMARY.read_text())
    out = bench.evaluate(load_agree(MAFENGWO))
    ours = out["results"]["group_popularity"]["cleaned"]["ties_against"]
    theirs = committed["results"]["group_popularity"]["cleaned"]["ties_against"]
    assert ours["hr@5"] == theirs["hr@5"]
    assert round(ours["hr@5"], 3) == bench.REFERENCE["group_popularity"]["hr@5"]  # the issue's
    for name, by_lists in committed["results"].items():
        for lists, by_ties in by_lists.items():
            for ties in ("ties_against", "ties_as_hits"):
                assert out["results"][name][lists][ties] == pytest.approx(by_ties[ties])
    assert out["data"]["held_out_neighbour_items"] == pytest.approx(0.7407, abs=5e-5)
