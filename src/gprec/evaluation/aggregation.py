"""Group scores from member scores, and how satisfied each member is with the group's list.

Why: any trained per-user model becomes a group recommender by aggregating its
member scores, and the classic strategies encode different social choices:
the average maximises total welfare, least misery (min) protects the least
happy member, most pleasure (max) follows the most enthusiastic one, Borda
count aggregates ranks so that members whose scores live on different scales
weigh the same. Accuracy against the group's held-out choice does not say
whether every member is served, so the per-member satisfaction of the list
(mean and minimum over members) is reported beside it.

Shapes. One group: ``member_scores`` is (n_members, n_items) and the result
is (n_items,). A batch: ``member_scores`` is (n_rows, n_items), one row per
membership, with ``group_index`` (n_rows,) saying whose row it is; the result
is (n_groups, n_items). Memberships are many-to-many: build the rows as
``user_scores[member_user]`` with ``group_index = member_group`` from the
(group, user) pairs, a user in three groups gives three rows. Everything is
vectorised: rows are sorted by group once and reduced with ``ufunc.reduceat``.
Scores must not be NaN (a NaN would silently win or lose every min/max).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import rankdata

from gprec.evaluation.ranking import as_numpy

__all__ = [
    "AGGREGATIONS",
    "Satisfaction",
    "aggregate",
    "borda_points",
    "member_satisfaction",
    "top_k",
]

Aggregation = Literal["average", "least_misery", "most_pleasure", "borda"]
AGGREGATIONS: tuple[str, ...] = ("average", "least_misery", "most_pleasure", "borda")


def _rows(member_scores) -> np.ndarray:
    s = as_numpy(member_scores, np.float64)
    if s.ndim != 2:
        raise ValueError(f"member_scores must be (n_rows, n_items), got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("member_scores contains NaN")
    return s


def _groups(group_index, n_rows: int, n_groups: int | None) -> tuple[np.ndarray, int]:
    if group_index is None:
        return np.zeros(n_rows, np.int64), 1
    g = as_numpy(group_index, np.int64)
    if g.shape != (n_rows,):
        raise ValueError(f"group_index must be ({n_rows},), got {g.shape}")
    if n_rows and g.min() < 0:
        raise ValueError("group_index must be non-negative")
    n = int(g.max()) + 1 if n_groups is None else int(n_groups)
    if n_rows and g.max() >= n:
        raise ValueError(f"group_index holds {int(g.max())}, not below n_groups={n}")
    return g, n


def _segments(g: np.ndarray):
    """Stable order of the rows by group, the groups present, and where each segment starts."""
    order = np.argsort(g, kind="stable")
    present, starts, counts = np.unique(g[order], return_index=True, return_counts=True)
    return order, present, starts, counts


def borda_points(member_scores) -> np.ndarray:
    """Each member's Borda points per item: ascending rank - 1, ties share the average rank.

    A member's worst item gets 0 points, their best ``n_items - 1``; items with
    equal scores share the mean of the ranks they span (scores 1, 4, 4, 5 ->
    points 0, 1.5, 1.5, 3), so no tie-breaking order favours any item. Points
    only depend on each member's order, not on the scale of their scores.
    The ranks are over the columns given: pass the group's candidate items
    only, since adding items changes the points.
    """
    return rankdata(_rows(member_scores), method="average", axis=1) - 1.0


def aggregate(
    member_scores,
    method: Aggregation,
    group_index=None,
    n_groups: int | None = None,
) -> np.ndarray:
    """The group's score of every item from its members' scores.

    - ``"average"``: mean of the members' scores;
    - ``"least_misery"``: minimum over members;
    - ``"most_pleasure"``: maximum over members;
    - ``"borda"``: sum over members of ``borda_points`` (within a group this
      orders items like the mean rank; sums are not comparable across groups
      of different sizes, and need not be).

    Args:
        member_scores: (n_members, n_items) for one group, or (n_rows, n_items)
            membership rows with ``group_index``.
        group_index: (n_rows,) group of each row, or None for a single group.
        n_groups: number of groups in the output (default: max index + 1);
            groups without any row get NaN scores.

    Returns:
        (n_items,) for a single group, else (n_groups, n_items).
    """
    s = _rows(member_scores)
    if len(s) == 0:
        raise ValueError("no member rows")
    single = group_index is None
    g, n = _groups(group_index, len(s), n_groups)
    if method == "borda":
        s = borda_points(s)
        reduce = np.add.reduceat
    elif method == "average":
        reduce = np.add.reduceat
    elif method == "least_misery":
        reduce = np.minimum.reduceat
    elif method == "most_pleasure":
        reduce = np.maximum.reduceat
    else:
        raise ValueError(f"unknown aggregation {method!r}; choose one of {AGGREGATIONS}")
    order, present, starts, counts = _segments(g)
    reduced = reduce(s[order], starts, axis=0)
    if method == "average":
        reduced = reduced / counts[:, None]
    out = np.full((n, s.shape[1]), np.nan)
    out[present] = reduced
    return out[0] if single else out


def top_k(scores, k: int, exclude=None) -> np.ndarray:
    """Indices of the k highest-scored items per row, best first.

    Ties are broken by the lower item index (deterministic, and independent of
    the sort algorithm). Items in ``exclude`` (same shape as ``scores``, e.g.
    items the group already chose in training) are never returned; when fewer
    than k items remain the list is padded with -1.
    """
    s = as_numpy(scores, np.float64)
    single = s.ndim == 1
    s = np.atleast_2d(s)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    ex = np.zeros(s.shape, bool) if exclude is None else np.atleast_2d(as_numpy(exclude, bool))
    if ex.shape != s.shape:
        raise ValueError(f"exclude shape {ex.shape} differs from scores {s.shape}")
    k = int(k)
    if k < 1:
        raise ValueError("k must be at least 1")
    idx = np.broadcast_to(np.arange(s.shape[1]), s.shape)
    # Primary key -score (excluded last), then the excluded flag (an unexcluded
    # item scored -inf still precedes them), then the item index.
    with np.errstate(invalid="ignore"):
        primary = np.where(ex, np.inf, -s)
    order = np.lexsort((idx, ex, primary), axis=-1)[:, :k]
    order = np.where(np.take_along_axis(ex, order, axis=1), -1, order)
    if order.shape[1] < k:
        order = np.pad(order, ((0, 0), (0, k - order.shape[1])), constant_values=-1)
    return order[0] if single else order


@dataclass(frozen=True)
class Satisfaction:
    """Per-member satisfaction of group lists, and its mean and minimum within each group.

    ``per_member`` follows the input rows; ``group_mean`` / ``group_min`` are
    (n_groups,) (NaN for a group without rows); ``mean`` is the average over
    groups of ``group_mean`` and ``min`` the average over groups of
    ``group_min`` (the typical least-served member, not the single worst
    member of the whole batch).
    """

    per_member: np.ndarray
    group_mean: np.ndarray
    group_min: np.ndarray
    mean: float
    min: float


def member_satisfaction(
    member_scores,
    group_lists,
    group_index=None,
    exclude=None,
    baseline: Literal["min", "none"] = "min",
) -> Satisfaction:
    """How close the group's top-k list comes to each member's own best top-k.

    Definition, for member m with scores s_m over the candidate items C (all
    columns, minus the group's ``exclude`` items) and the group's list L of k
    distinct candidates::

        g_m(i)  = s_m(i) - min_{j in C} s_m(j)          (baseline="min")
                  s_m(i)                                (baseline="none", needs s >= 0)
        sat_m(L) = sum_{i in L} g_m(i) / max_{L' subset C, |L'| = k} sum_{i in L'} g_m(i)

    The denominator is the sum of m's own k largest gains, so sat_m is in
    [0, 1]: 1 when the list is as good for m as m's own top-k, 0 when every
    listed item is m's worst. A member whose k best gains are all 0 (they rate
    every candidate alike) is indifferent and gets 1. Subtracting the member's
    minimum makes the measure independent of the member's offset and scale
    (logits or ratings give the same value), at the price of measuring from the
    member's worst candidate; ``baseline="none"`` uses raw non-negative scores
    (ratings, probabilities), as in the "sum of ratings over the best sum"
    definitions of the group-recommendation literature.

    Args:
        member_scores: (n_members, n_items), or (n_rows, n_items) with ``group_index``.
        group_lists: (k,) item indices for one group, or (n_groups, k) for a batch
            (all entries valid and distinct: drop -1 padding first).
        group_index: (n_rows,) group of each row; None for a single group.
        exclude: (n_items,) or (n_groups, n_items) bool, items outside the candidates.

    Returns:
        ``Satisfaction`` with per-member values and mean/min per group and overall.
    """
    s = _rows(member_scores)
    lists = np.atleast_2d(as_numpy(group_lists, np.int64))
    g, n = _groups(group_index, len(s), None if group_index is None else len(lists))
    if len(lists) != n:
        raise ValueError(f"{len(lists)} group lists for {n} groups")
    k = lists.shape[1]
    n_items = s.shape[1]
    if k < 1 or lists.min() < 0 or lists.max() >= n_items:
        raise ValueError("group lists must hold at least one valid item index (no -1 padding)")
    sorted_lists = np.sort(lists, axis=1)
    if (sorted_lists[:, 1:] == sorted_lists[:, :-1]).any():
        raise ValueError("a group list repeats an item")
    ex = np.zeros((n, n_items), bool) if exclude is None else as_numpy(exclude, bool)
    ex = np.broadcast_to(ex, (n, n_items))
    if np.take_along_axis(ex, lists, axis=1).any():
        raise ValueError("a group list holds an excluded item")
    if ((~ex).sum(axis=1) < k).any():
        raise ValueError("a group has fewer candidate items than its list length")
    row_ex = ex[g]
    if baseline == "min":
        gain = s - np.where(row_ex, np.inf, s).min(axis=1, keepdims=True)
    elif baseline == "none":
        if (s[~row_ex] < 0).any():
            raise ValueError("baseline='none' needs non-negative scores")
        gain = s
    else:
        raise ValueError(f"baseline must be 'min' or 'none', got {baseline!r}")
    got = np.take_along_axis(gain, lists[g], axis=1).sum(axis=1)
    candidates = np.where(row_ex, -np.inf, gain)
    best = -np.partition(-candidates, k - 1, axis=1)[:, :k]
    best = best.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_member = np.where(best > 0, got / best, 1.0)
    order, present, starts, counts = _segments(g)
    group_mean = np.full(n, np.nan)
    group_min = np.full(n, np.nan)
    group_mean[present] = np.add.reduceat(per_member[order], starts) / counts
    group_min[present] = np.minimum.reduceat(per_member[order], starts)
    return Satisfaction(
        per_member=per_member,
        group_mean=group_mean,
        group_min=group_min,
        mean=float(np.nanmean(group_mean)),
        min=float(np.nanmean(group_min)),
    )
