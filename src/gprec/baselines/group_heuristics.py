"""Two no-learning group recommenders that any trained group model has to beat.

Why: on the group-recommendation benchmarks (Mafengwo and the rest of the AGREE/ConsRec
layout) a group holds out one item and has only 2-7 training items, so most of what a
model can know about it comes from elsewhere: from what is popular among all groups, and
from what the *other* groups its members belong to chose. Both signals need no training,
so a learned model that does not clear them has learned nothing the data did not give
away. Issue 19 asks for both as the floor of its Mafengwo comparison.

- `group_popularity`: per item, the number of training group interactions with it.
- `neighbour_group_scores`: per (group g, item i), how many *other* groups that share
  at least one member with g chose i in training (or, with ``weight``, those groups
  weighted by how many members they share, or by the Jaccard overlap of the two member
  sets).
- `lexicographic`: orders by one score, and only among its ties by another (a
  tie-break, e.g. neighbour groups first, popularity among equal neighbour counts).

Both scorers are deterministic functions of the training tables: no seed, no
randomness, one answer per split. Everything is vectorised (scipy sparse products over
the membership and interaction matrices, numpy for the rest); nothing loops over groups.

`sampled_candidates` lays each held-out test case out as the fixed-width arrays that
`gprec.evaluation.ranking.sampled_ranks` and `sampled_ranking_report` score, either with
the listed negatives as given or with `gprec.data.groups.clean_negatives` applied.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import sparse

from gprec.data.groups import GROUP, ITEM, USER, GroupData, SampledTest, clean_negatives

__all__ = [
    "NeighbourWeight",
    "group_item_matrix",
    "group_popularity",
    "lexicographic",
    "neighbour_group_scores",
    "neighbour_matrix",
    "sampled_candidates",
    "score_cases",
]

NeighbourWeight = Literal["groups", "shared_members", "jaccard"]


def group_item_matrix(data: GroupData) -> sparse.csr_matrix:
    """(n_groups, n_items) 0/1: 1 where the group chose the item in training.

    Binary on purpose: a (group, item) pair listed twice in a training file is one
    choice, so a neighbour counts once per item however often it is listed. (On
    Mafengwo the 2,600 training rows are 2,600 distinct pairs, so this changes nothing
    there.)
    """
    gi = data.group_interactions
    rows, cols = gi[GROUP].to_numpy(), gi[ITEM].to_numpy()
    m = sparse.csr_matrix(
        (np.ones(len(rows), np.float64), (rows, cols)), shape=(data.n_groups, data.n_items)
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def group_popularity(data: GroupData) -> np.ndarray:
    """(n_items,) float64: the number of training group interactions with each item.

    All groups count, the group being scored included (its own training items are
    never its held-out item in the leave-one-out split, so this cannot leak the
    answer). Rows are counted as listed: a repeated (group, item) row counts twice,
    which is what "interactions" means; on Mafengwo rows equal distinct groups. Items
    no group chose score 0 and tie with each other, which under the strict count of
    `sampled_ranks` is a loss for a held-out item among them, as it should be.
    """
    items = data.group_interactions[ITEM].to_numpy()
    return np.bincount(items, minlength=data.n_items).astype(np.float64)


def neighbour_matrix(data: GroupData, weight: NeighbourWeight = "groups") -> sparse.csr_matrix:
    """(n_groups, n_groups) weights of g' for g: nonzero iff g' != g share a member.

    ``weight``:
    - ``"groups"``: 1 per neighbour group (the issue's wording: how many groups);
    - ``"shared_members"``: the number of members g and g' share;
    - ``"jaccard"``: |members(g) & members(g')| / |members(g) | members(g')|, so a
      large group that happens to share one member with g counts little.

    The diagonal is zero: a group is not its own neighbour, so its own training items
    get no credit from itself (they are never its held-out item, and counting them
    would only lift the 111 Mafengwo negatives that are a group's own training items).
    """
    if weight not in ("groups", "shared_members", "jaccard"):
        raise ValueError(f"weight must be 'groups', 'shared_members' or 'jaccard', not {weight!r}")
    g, u = data.members[GROUP].to_numpy(), data.members[USER].to_numpy()
    m = sparse.csr_matrix(
        (np.ones(len(g), np.float64), (g, u)), shape=(data.n_groups, data.n_users)
    )
    shared = (m @ m.T).tocoo()  # shared member counts; members are distinct pairs
    off = shared.row != shared.col
    rows, cols, values = shared.row[off], shared.col[off], shared.data[off]
    if weight == "groups":
        values = np.ones_like(values)
    elif weight == "jaccard":
        sizes = data.group_sizes().astype(np.float64)
        values = values / (sizes[rows] + sizes[cols] - values)
    return sparse.csr_matrix((values, (rows, cols)), shape=(data.n_groups, data.n_groups))


def neighbour_group_scores(data: GroupData, weight: NeighbourWeight = "groups") -> np.ndarray:
    """(n_groups, n_items) float64: for group g and item i, its neighbours that chose i.

    With the default ``weight="groups"`` the score is a count of *groups*, not of
    interactions: the number of distinct groups g' != g that share at least one member
    with g and have (g', i) among their training rows (a pair listed twice still counts
    one group once; see `group_item_matrix`). Only training rows count: no group's
    held-out item enters any score. ``weight`` (`neighbour_matrix`) replaces the 1 per
    neighbour with its shared-member count or its Jaccard overlap.

    Why it is strong on Mafengwo: 74% of the held-out items are chosen by at least one
    neighbour group, while the negatives are drawn from all 1,513 items (57.6% of the
    listed entries are items no group chose in train or test). Its weakness is ties: most candidates score 0, and many
    held-out items tie with a negative at a small count, so pair it with a tie-break
    (`lexicographic` with `group_popularity`) to see what the signal is worth.
    """
    return np.asarray((neighbour_matrix(data, weight) @ group_item_matrix(data)).todense())


def lexicographic(primary, secondary, decimals: int = 12) -> np.ndarray:
    """Scores that order by ``primary``, and by ``secondary`` only among equal primaries.

    Returns float64 keys of the shape of ``primary`` (``secondary`` broadcasts to it):
    the dense rank of ``primary`` times the number of distinct secondary values plus
    the dense rank of ``secondary``. Ranks make the tie-break exact, where adding a
    multiple of ``secondary`` lets it outweigh any primary gap smaller than that
    multiple (Jaccard sums are fractions, some gaps tiny). ``primary`` is rounded to ``decimals`` first, so two
    sums of the same terms added in another order (which can differ in the last bit)
    still tie. Items equal on both keys still tie, and a strict count ranks them against
    the held-out item.
    """
    p = np.round(np.asarray(primary, np.float64), decimals)
    s = np.broadcast_to(np.asarray(secondary, np.float64), p.shape)
    _, p_rank = np.unique(p, return_inverse=True)
    s_levels, s_rank = np.unique(s, return_inverse=True)
    n_keys = (int(p_rank.max(initial=0)) + 1) * len(s_levels)
    if n_keys >= 2**53:
        raise ValueError("too many distinct (primary, secondary) pairs for exact float64 keys")
    key = p_rank.astype(np.float64) * len(s_levels) + s_rank
    return key.reshape(p.shape)


def sampled_candidates(
    test: SampledTest, clean: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each test case's group, held-out item and negatives as padded arrays.

    Returns ``(entity, held_out, negatives, mask)``: ``negatives`` is (n_cases,
    longest list) with 0 where a list is shorter and ``mask`` True on real entries.
    ``clean=True`` applies `gprec.data.groups.clean_negatives` (the held-out item and
    repeats removed from its own list: the strict protocol); ``clean=False`` keeps the
    lists as published, so that the effect of the cleaning can be measured.
    """
    if clean:
        cleaned = clean_negatives(test)
        offsets, items = cleaned.offsets, cleaned.items
    else:
        offsets, items = test.neg_offsets, test.neg_items
    counts = np.diff(offsets)
    width = int(counts.max(initial=0))
    mask = np.arange(width)[None, :] < counts[:, None]
    negatives = np.zeros(mask.shape, np.int64)
    negatives[mask] = items  # row-major fill follows the CSR order
    return test.entity.astype(np.int64), test.held_out.astype(np.int64), negatives, mask


def score_cases(
    scores: np.ndarray, entity: np.ndarray, held_out: np.ndarray, negatives: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The held-out item's and the negatives' scores per case, for `sampled_ranks`.

    ``scores`` is either per item, (n_items,), the same for every group (popularity),
    or per group and item, (n_groups, n_items), looked up at the case's group.
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim == 1:
        return scores[held_out], scores[negatives]
    if scores.ndim == 2:
        return scores[entity, held_out], scores[entity[:, None], negatives]
    raise ValueError(f"scores must be (n_items,) or (n_groups, n_items), got {scores.shape}")
