"""Ranking metrics that a constant or saturated scorer cannot game, each beside its bounds.

Why this module exists: most published group-recommendation numbers (Mafengwo,
AGREE/ConsRec code) put the held-out item first and sort stably, so every tie
counts as a hit and a model that outputs one constant scores HR@k = 1.0 (see
``../shared/data/README.md``). Here every tie is counted *against* the
relevant item: its rank is the worst position it could take among the items it
ties with. The optimistic count is computed only to show the gap, and always
under a label that says so.

Every report also carries, computed on the very same cases, what a *perfect*
ranker and a *random* ranker would score. On short candidate lists (100
negatives, or a user's 20 test ratings) those bounds decide a number more than
the model does, so a number printed without them cannot be judged.

Four protocols:

- sampled ranking (the held-out item against its own negatives): HR@k, NDCG@k;
- full ranking over every item the user has not seen in training: P@k, R@k, NDCG@k;
- the DMTL paper's per-user P@10 / R@10 over each user's rated test items
  (the Surprise FAQ's ``precision_recall_at_k``, ties made strict);
- profiling precision / recall / F1 of the group classifier (scikit-learn).

Everything is vectorised over cases/users in numpy; torch tensors are accepted
and moved to numpy. The only Python loops are over the few ``k`` values, over
user chunks in the full ranking (to bound memory at ``chunk_size`` x n_items),
and over the seeded random draws of the profiling bound (scikit-learn per draw).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

__all__ = [
    "MetricReport",
    "as_numpy",
    "clean_negatives",
    "dmtl_precision_recall",
    "full_ranking_per_user",
    "full_ranking_report",
    "items_to_mask",
    "profiling_report",
    "rank_metrics",
    "random_sampled_expectation",
    "sampled_ranking_report",
    "sampled_ranks",
]


def as_numpy(x, dtype=None) -> np.ndarray:
    """A numpy view of ``x`` (numpy array, list, or a torch tensor on any device).

    torch is not imported here: a tensor is recognised by its ``detach`` method,
    so this module works without torch and costs nothing when it is absent.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    return ks


def _discounts(n: int) -> np.ndarray:
    """``1 / log2(position + 1)`` for positions 1..n (index 0 is position 1)."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


@dataclass(frozen=True)
class MetricReport:
    """A model's numbers with the perfect and random rankers' numbers on the same cases.

    ``metrics``, ``perfect`` and ``random`` share their keys (``"hr@5"``, ...).
    ``optimistic`` (sampled ranking only) holds the ties-as-hits count that
    most published code reports; it is there to show how much ties inflate a
    number and must never be quoted as the result. ``counts`` says how many
    cases were scored and how many were set aside, ``notes`` how the bounds
    were obtained and which conventions apply.
    """

    metrics: dict[str, float]
    perfect: dict[str, float]
    random: dict[str, float]
    optimistic: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    notes: str = ""

    def to_dict(self) -> dict[str, float | int]:
        """Flat, JSON-ready: ``hr@5``, ``hr@5_perfect``, ``hr@5_random``,
        ``hr@5_optimistic_ties_as_hits`` and the counts."""
        out: dict[str, float | int] = {}
        for name, value in self.metrics.items():
            out[name] = value
            out[f"{name}_perfect"] = self.perfect[name]
            out[f"{name}_random"] = self.random[name]
            if name in self.optimistic:
                out[f"{name}_optimistic_ties_as_hits"] = self.optimistic[name]
        out.update(self.counts)
        return out

    def format(self, digits: int = 4) -> str:
        """A small table: every number beside its perfect and random bound."""
        header = ["metric", "model", "perfect", "random"]
        if self.optimistic:
            header.append("ties-as-hits (NOT the result)")
        rows = [header]
        for name, value in self.metrics.items():
            row = [name] + [
                f"{v:.{digits}f}" for v in (value, self.perfect[name], self.random[name])
            ]
            if self.optimistic:
                row.append(f"{self.optimistic[name]:.{digits}f}")
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        if self.counts:
            lines.append(", ".join(f"{k}={v}" for k, v in self.counts.items()))
        if self.notes:
            lines.append(self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# --------------------------------------------------------------------------- sampled ranking


def clean_negatives(pos_items, neg_items, neg_mask=None) -> np.ndarray:
    """Mask of the negatives to keep: drop the held-out item itself and repeats.

    Mafengwo's negative lists were sampled with replacement: some entries repeat
    and 33 group lists contain the test positive itself. A copy of the positive
    always ties with it (ties count against it, so it costs a rank for nothing),
    and a repeated negative is counted twice. Both are removed here; the first
    occurrence of a repeated item is kept. Vectorised: each row is sorted once
    and equal neighbours are marked.

    Args:
        pos_items: (n,) item id of each case's held-out item.
        neg_items: (n, m) item ids of its negatives (any padding value where
            ``neg_mask`` is False).
        neg_mask: (n, m) bool, True where an entry is real; None = all real.

    Returns:
        (n, m) bool: True for entries to score.
    """
    pos_items = as_numpy(pos_items)
    neg_items = as_numpy(neg_items)
    if neg_items.ndim != 2 or pos_items.shape != (neg_items.shape[0],):
        raise ValueError("pos_items must be (n,) and neg_items (n, m)")
    keep = np.ones(neg_items.shape, bool) if neg_mask is None else as_numpy(neg_mask, bool).copy()
    keep &= neg_items != pos_items[:, None]
    # Sort the kept entries of each row (masked ones pushed to the end by a
    # leading key), then mark an entry a repeat when it equals its predecessor.
    order = np.lexsort(
        (np.arange(neg_items.shape[1])[None, :].repeat(len(neg_items), 0), neg_items, ~keep),
        axis=-1,
    )
    sorted_items = np.take_along_axis(neg_items, order, axis=1)
    sorted_keep = np.take_along_axis(keep, order, axis=1)
    repeat = np.zeros_like(sorted_keep)
    repeat[:, 1:] = (sorted_items[:, 1:] == sorted_items[:, :-1]) & sorted_keep[:, :-1]
    np.put_along_axis(keep, order, sorted_keep & ~repeat, axis=1)
    return keep


def _refuse_nan(name: str, values: np.ndarray) -> None:
    if np.isnan(values).any():
        raise ValueError(
            f"{name} contains NaN: a NaN score has no rank; fix the model or mask the entry"
        )


def sampled_ranks(
    pos_scores,
    neg_scores,
    neg_mask=None,
    *,
    ties: Literal["against", "optimistic"] = "against",
) -> np.ndarray:
    """Rank of each held-out item among its negatives (1 = best).

    ``ties="against"`` (the default and the only one to report):
    ``rank = 1 + #{valid negatives with score >= the held-out item's}``, the
    worst place the item can take among those it ties with. A constant scorer
    gets ``rank = n_neg + 1`` and is never a hit unless ``k > n_neg``.

    ``ties="optimistic"``: ``rank = 1 + #{negatives with score > it}``, which
    is what "put the positive first, sort stably" code computes; only to show
    the gap.

    Args:
        pos_scores: (n,) score of each case's held-out item.
        neg_scores: (n, m) scores of its negatives, padded where lists are shorter.
        neg_mask: (n, m) bool, True for real entries (see ``clean_negatives``);
            padded entries may hold anything, NaN included.

    Returns:
        (n,) int64 ranks in ``1 .. n_valid_negatives + 1``.
    """
    pos = as_numpy(pos_scores, np.float64)
    neg = as_numpy(neg_scores, np.float64)
    if neg.ndim != 2 or pos.shape != (neg.shape[0],):
        raise ValueError(
            f"pos_scores must be (n,) and neg_scores (n, m); got {pos.shape}, {neg.shape}"
        )
    mask = np.ones(neg.shape, bool) if neg_mask is None else as_numpy(neg_mask, bool)
    if mask.shape != neg.shape:
        raise ValueError(f"neg_mask shape {mask.shape} differs from neg_scores {neg.shape}")
    _refuse_nan("pos_scores", pos)
    _refuse_nan("neg_scores (unmasked entries)", neg[mask])
    if ties == "against":
        beats = neg >= pos[:, None]
    elif ties == "optimistic":
        beats = neg > pos[:, None]
    else:
        raise ValueError(f"ties must be 'against' or 'optimistic', got {ties!r}")
    return 1 + (beats & mask).sum(axis=1, dtype=np.int64)


def rank_metrics(ranks, ks: Sequence[int] = (5, 10)) -> dict[str, np.ndarray]:
    """Per-case HR@k and NDCG@k of one relevant item at the given ranks.

    HR@k = [rank <= k]; NDCG@k = [rank <= k] / log2(rank + 1) (the ideal DCG of
    a single relevant item is 1). Per-case values are what paired tests between
    two models on the same cases need.
    """
    ranks = as_numpy(ranks, np.int64)
    out: dict[str, np.ndarray] = {}
    for k in _ks(ks):
        hit = ranks <= k
        out[f"hr@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
    return out


def random_sampled_expectation(n_candidates, ks: Sequence[int] = (5, 10)) -> dict[str, np.ndarray]:
    """Per-case expected HR@k and NDCG@k of a random ranker, in closed form.

    A random ranker puts the held-out item at a uniform position among its
    ``c = n_negatives + 1`` candidates, so
    ``E[HR@k] = min(k, c) / c`` and
    ``E[NDCG@k] = (1/c) * sum_{r=1}^{min(k, c)} 1 / log2(r + 1)``.
    """
    c = as_numpy(n_candidates, np.int64)
    if (c < 1).any():
        raise ValueError("every case needs at least one candidate (the held-out item)")
    ks = _ks(ks)
    cum = np.concatenate([[0.0], np.cumsum(_discounts(max(ks)))])
    out: dict[str, np.ndarray] = {}
    for k in ks:
        top = np.minimum(k, c)
        out[f"hr@{k}"] = top / c
        out[f"ndcg@{k}"] = cum[top] / c
    return out


def sampled_ranking_report(
    pos_scores,
    neg_scores,
    neg_mask=None,
    ks: Sequence[int] = (5, 10),
) -> MetricReport:
    """HR@k and NDCG@k of the held-out items, ties against them, with bounds.

    Pass ``neg_mask`` from ``clean_negatives`` so the positive and repeated
    negatives are out of the lists. The report's ``optimistic`` field is the
    ties-as-hits count (NOT the result); ``counts["cases_with_ties"]`` says in
    how many cases a negative tied the held-out item, the cases where the two
    counts can differ. Perfect ranker: rank 1 in every case (1.0 everywhere).
    Random ranker: the closed form of ``random_sampled_expectation`` for each
    case's own list length, averaged over cases.
    """
    neg = as_numpy(neg_scores, np.float64)
    mask = np.ones(neg.shape, bool) if neg_mask is None else as_numpy(neg_mask, bool)
    strict = sampled_ranks(pos_scores, neg, mask, ties="against")
    loose = sampled_ranks(pos_scores, neg, mask, ties="optimistic")
    n_cand = mask.sum(axis=1) + 1
    if len(strict) == 0:
        raise ValueError("no cases to evaluate")
    strict_m = rank_metrics(strict, ks)
    loose_m = rank_metrics(loose, ks)
    perfect_m = rank_metrics(np.ones_like(strict), ks)
    random_m = random_sampled_expectation(n_cand, ks)

    def mean(d: dict[str, np.ndarray]) -> dict[str, float]:
        return {name: float(v.mean()) for name, v in d.items()}

    return MetricReport(
        metrics=mean(strict_m),
        perfect=mean(perfect_m),
        random=mean(random_m),
        optimistic=mean(loose_m),
        counts={
            "cases": int(len(strict)),
            "cases_with_ties": int((strict != loose).sum()),
            "min_candidates": int(n_cand.min()),
            "max_candidates": int(n_cand.max()),
        },
        notes=(
            "ties count against the held-out item (rank = 1 + #negatives scoring >= it); "
            "random = closed form, uniform position among each case's candidates"
        ),
    )


# --------------------------------------------------------------------------- full ranking


def items_to_mask(item_lists: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
    """(n_users, n_items) bool mask from one list of item ids per user.

    Ragged Python lists can only be walked list by list (to measure and
    concatenate them); the mask itself is filled in one vectorised assignment.
    """
    lens = np.fromiter((len(x) for x in item_lists), np.int64, count=len(item_lists))
    mask = np.zeros((len(item_lists), n_items), bool)
    if lens.sum():
        cols = np.concatenate([np.asarray(x, np.int64) for x in item_lists if len(x)])
        mask[np.repeat(np.arange(len(item_lists)), lens), cols] = True
    return mask


def _shape2(m) -> tuple[int, int]:
    shape = tuple(m.shape) if hasattr(m, "shape") else np.shape(m)
    if len(shape) != 2:
        raise ValueError(f"expected a (n_users, n_items) matrix, got shape {shape}")
    return int(shape[0]), int(shape[1])


def _dense_rows(m, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a dense array, a torch tensor or a scipy sparse matrix, as bool."""
    if hasattr(m, "tocsr"):
        return np.asarray(m.tocsr()[start:stop].toarray(), bool)
    return as_numpy(m[start:stop], bool)


def full_ranking_per_user(
    scores,
    seen,
    test,
    ks: Sequence[int] = (5, 10),
    chunk_size: int = 1024,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-user P@k, R@k, NDCG@k over every item not seen in training.

    Ranking: items seen in training are excluded; the others are ordered by
    score, descending, and **among equal scores every non-relevant item comes
    before every relevant one** (the relevant items take the worst positions
    they could, the same principle as ties-against in the sampled protocol).
    A constant scorer therefore puts all relevant items last.

    Relevant items are the test items not seen in training (a test item also
    in training cannot be recommended; how many were dropped is returned).

    Definitions, R relevant items, N unseen items, hits = relevant items in the
    first min(k, N) positions: P@k = hits / k (the slots beyond N count as
    misses); R@k = hits / R; NDCG@k = DCG / IDCG with binary gains,
    DCG = sum over hit positions p of 1/log2(p+1), IDCG = sum_{p=1}^{min(k,R)}
    1/log2(p+1). Users with no relevant item get NaN (undefined, not zero).

    Args:
        scores: (n_users, n_items) scores over the whole catalogue.
        seen: (n_users, n_items) bool (dense or scipy sparse), items seen in training.
        test: (n_users, n_items) bool (dense or scipy sparse), the user's test items.
        chunk_size: users sorted at once (memory is about 3 x chunk x n_items x 8 bytes).

    Returns:
        (per-user metric arrays, R per user, test items dropped per user for being seen).
    """
    ks = _ks(ks)
    n_users, n_items = _shape2(scores)
    out = {
        f"{m}@{k}": np.full(n_users, np.nan) for k in ks for m in ("precision", "recall", "ndcg")
    }
    n_rel = np.zeros(n_users, np.int64)
    dropped = np.zeros(n_users, np.int64)
    kmax = max(ks)
    disc = _discounts(kmax)
    cum = np.concatenate([[0.0], np.cumsum(disc)])
    # Python loop over user chunks only: bounds the (chunk x n_items) sort buffers.
    for start in range(0, n_users, chunk_size):
        stop = min(start + chunk_size, n_users)
        s = as_numpy(scores[start:stop], np.float64)
        sn = _dense_rows(seen, start, stop)
        te = _dense_rows(test, start, stop)
        if s.shape != sn.shape or s.shape != te.shape:
            raise ValueError(
                f"scores, seen and test must share a shape; got {s.shape}, {sn.shape}, {te.shape}"
            )
        _refuse_nan("scores", s[~sn])
        rel = te & ~sn
        dropped[start:stop] = (te & sn).sum(axis=1)
        r = rel.sum(axis=1)
        n_rel[start:stop] = r
        # Primary key: -score, seen items at +inf (after every unseen item);
        # secondary: 0 = unseen non-relevant, 1 = relevant, 2 = seen, so ties
        # go against the relevant items and an unseen item scored -inf still
        # precedes the seen ones.
        with np.errstate(invalid="ignore"):
            primary = np.where(sn, np.inf, -s)
        category = np.where(sn, 2, rel.astype(np.int8))
        order = np.lexsort((category, primary), axis=-1)[:, :kmax]
        hits = np.take_along_axis(
            rel, order, axis=1
        )  # positions >= N hold seen items: never relevant
        cum_hits = np.cumsum(hits, axis=1)
        cum_dcg = np.cumsum(hits * disc[: hits.shape[1]], axis=1)
        has = r > 0
        for k in ks:
            kk = min(k, n_items)
            h = cum_hits[:, kk - 1] if kk else np.zeros(len(r))
            dcg = cum_dcg[:, kk - 1] if kk else np.zeros(len(r))
            idcg = cum[np.minimum(k, r)]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"precision@{k}"][start:stop] = np.where(has, h / k, np.nan)
                out[f"recall@{k}"][start:stop] = np.where(has, h / r, np.nan)
                out[f"ndcg@{k}"][start:stop] = np.where(has, dcg / idcg, np.nan)
    return out, n_rel, dropped


def full_ranking_report(
    scores,
    seen,
    test,
    ks: Sequence[int] = (5, 10),
    chunk_size: int = 1024,
) -> MetricReport:
    """P@k, R@k, NDCG@k over all unseen items (ties against relevant items), with bounds.

    Averaged over users that have at least one relevant (unseen) test item;
    the others are counted in ``counts["users_without_relevant"]`` and left
    out (their metrics are undefined). See ``full_ranking_per_user`` for the
    definitions and the tie rule.

    Bounds, in closed form on the same users (R relevant among N unseen):
    perfect: P@k = min(k, R)/k, R@k = min(k, R)/R, NDCG@k = 1 (P@k < 1 is the
    best possible when R < k). Random (uniform order of the N unseen items, so
    each of the first k' = min(k, N) positions is relevant with probability
    R/N): E[P@k] = k' R / (N k), E[R@k] = k'/N,
    E[NDCG@k] = (R/N) * sum_{p<=k'} 1/log2(p+1) / IDCG.
    """
    ks = _ks(ks)
    per_user, r, dropped = full_ranking_per_user(scores, seen, test, ks, chunk_size)
    n_users = len(r)
    # N (unseen items) per user, chunked like the metrics.
    n_unseen = np.zeros(n_users, np.int64)
    n_items = _shape2(scores)[1]
    for start in range(0, n_users, chunk_size):
        stop = min(start + chunk_size, n_users)
        n_unseen[start:stop] = n_items - _dense_rows(seen, start, stop).sum(axis=1)
    has = r > 0
    if not has.any():
        raise ValueError("no user has a relevant (unseen) test item")
    r, n = r[has].astype(np.float64), n_unseen[has].astype(np.float64)
    cum = np.concatenate([[0.0], np.cumsum(_discounts(max(ks)))])
    metrics, perfect, random = {}, {}, {}
    for k in ks:
        kp = np.minimum(k, n)
        idcg = cum[np.minimum(k, r).astype(np.int64)]
        for name, p_val, r_val in (
            (f"precision@{k}", np.minimum(k, r) / k, kp * r / (n * k)),
            (f"recall@{k}", np.minimum(k, r) / r, kp / n),
            (f"ndcg@{k}", np.ones_like(r), (r / n) * cum[kp.astype(np.int64)] / idcg),
        ):
            metrics[name] = float(per_user[name][has].mean())
            perfect[name] = float(p_val.mean())
            random[name] = float(r_val.mean())
    # Same order as per_user (precision, recall, ndcg per k).
    order = list(per_user)
    return MetricReport(
        metrics={m: metrics[m] for m in order},
        perfect={m: perfect[m] for m in order},
        random={m: random[m] for m in order},
        counts={
            "users": int(has.sum()),
            "users_without_relevant": int((~has).sum()),
            "test_items_dropped_as_seen": int(dropped.sum()),
        },
        notes=(
            "all unseen items ranked; ties put relevant items last; P@k divides by k; "
            "random = closed form (uniform order of the unseen items)"
        ),
    )


# --------------------------------------------------------------------------- DMTL P@10 / R@10

UndefinedPolicy = Literal["zero", "skip"]


def _dmtl_counts(users, ratings, predictions, k: int, threshold: float):
    """Per-user counts (n_items, n_relevant, n_recommended, n_hits) of the DMTL protocol."""
    order = np.lexsort((ratings >= threshold, -predictions, users))
    u = users[order]
    rel = (ratings >= threshold)[order]
    pred = predictions[order]
    _, starts, n_items = np.unique(u, return_index=True, return_counts=True)
    position = np.arange(len(u)) - np.repeat(starts, n_items)  # 0-based place within the user
    rec = (position < k) & (pred >= threshold)
    n_rel = np.add.reduceat(rel.astype(np.int64), starts)
    n_rec = np.add.reduceat(rec.astype(np.int64), starts)
    n_hit = np.add.reduceat((rec & rel).astype(np.int64), starts)
    return n_items, n_rel, n_rec, n_hit


def _dmtl_average(
    precision: np.ndarray,
    recall: np.ndarray,
    n_rel: np.ndarray,
    n_rec: np.ndarray,
    no_relevant: UndefinedPolicy,
    no_recommended: UndefinedPolicy,
) -> tuple[float, float]:
    keep_p = np.ones(len(n_rel), bool)
    keep_r = np.ones(len(n_rel), bool)
    if no_relevant == "skip":
        keep_p &= n_rel > 0
        keep_r &= n_rel > 0
    if no_recommended == "skip":
        keep_p &= n_rec > 0
    p = float(precision[keep_p].mean()) if keep_p.any() else float("nan")
    r = float(recall[keep_r].mean()) if keep_r.any() else float("nan")
    return p, r


def dmtl_precision_recall(
    users,
    ratings,
    predictions,
    k: int = 10,
    threshold: float = 3.5,
    no_relevant: UndefinedPolicy = "zero",
    no_recommended: UndefinedPolicy = "zero",
) -> MetricReport:
    """The DMTL paper's per-user Precision@k / Recall@k over each user's test ratings.

    For each user u with test ratings (the long arrays, one row per rating):
    relevant = test items with true rating >= ``threshold``; recommended = the
    top-k of u's test items by prediction, keeping only those predicted
    >= ``threshold``; P = |rec & rel| / |rec|, R = |rec & rel| / |rel|;
    averaged over users (macro). This is the Surprise FAQ's
    ``precision_recall_at_k``, which the paper's baselines come from, with one
    change: among equal predictions Surprise keeps the input order, here the
    non-relevant items go first (ties count against the model).

    Undefined cases (the options, defaults = Surprise's convention):

    - ``no_relevant`` (user has no test rating >= threshold, so R is 0/0):
      ``"zero"`` sets R = 0 and keeps the user in both averages (P is then 0
      or falls under ``no_recommended``); ``"skip"`` leaves the user out of
      both averages.
    - ``no_recommended`` (nothing in the top-k is predicted >= threshold, so P
      is 0/0): ``"zero"`` sets P = 0; ``"skip"`` leaves the user out of P's
      average only.

    Bounds on the same users: perfect = predictions equal to the true ratings
    (P = 1 wherever something is recommended, R = min(k, |rel|)/|rel|); random
    = a uniform order of the user's test items with every item recommended (no
    threshold knowledge), in closed form: E[P] = |rel| / n, E[R] = min(k, n) / n.
    With 20 test ratings per user and k = 10, random R is already 0.5: the
    bounds, not the model, set most of the scale.
    """
    users = as_numpy(users)
    ratings = as_numpy(ratings, np.float64)
    predictions = as_numpy(predictions, np.float64)
    if not (users.shape == ratings.shape == predictions.shape) or users.ndim != 1:
        raise ValueError("users, ratings and predictions must be 1-D arrays of one length")
    if len(users) == 0:
        raise ValueError("no ratings to evaluate")
    for policy in (no_relevant, no_recommended):
        if policy not in ("zero", "skip"):
            raise ValueError(f"policy must be 'zero' or 'skip', got {policy!r}")
    _refuse_nan("predictions", predictions)

    def scored(preds):
        n, n_rel, n_rec, n_hit = _dmtl_counts(users, ratings, preds, k, threshold)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(n_rec > 0, n_hit / n_rec, 0.0)
            r = np.where(n_rel > 0, n_hit / n_rel, 0.0)
        return n, n_rel, n_rec, _dmtl_average(p, r, n_rel, n_rec, no_relevant, no_recommended)

    n, n_rel, n_rec, (p_model, r_model) = scored(predictions)
    _, _, _, (p_perfect, r_perfect) = scored(ratings)
    rand_p = n_rel / n
    rand_r = np.where(n_rel > 0, np.minimum(k, n) / n, 0.0)
    p_random, r_random = _dmtl_average(
        rand_p, rand_r, n_rel, np.minimum(k, n), no_relevant, no_recommended
    )
    pk, rk = f"precision@{k}", f"recall@{k}"
    return MetricReport(
        metrics={pk: p_model, rk: r_model},
        perfect={pk: p_perfect, rk: r_perfect},
        random={pk: p_random, rk: r_random},
        counts={
            "users": int(len(n)),
            "users_without_relevant": int((n_rel == 0).sum()),
            "users_without_recommended": int((n_rec == 0).sum()),
            "mean_test_items_per_user": float(n.mean()),
        },
        notes=(
            f"relevant = rating >= {threshold}; recommended = top-{k} by prediction with prediction >= "
            f"{threshold}; ties put non-relevant items first; no_relevant={no_relevant}, "
            f"no_recommended={no_recommended}; random = closed form, all test items recommended"
        ),
    )


# --------------------------------------------------------------------------- profiling


def profiling_report(
    y_true,
    y_pred,
    labels: Sequence | None = None,
    n_random: int = 200,
    seed: int = 0,
) -> MetricReport:
    """Group-classification precision / recall / F1, macro and micro, with bounds.

    scikit-learn computes them (``zero_division=0``: a class never predicted
    has precision 0). For single-label multi-class data micro P = R = F1 =
    accuracy; macro weighs every group equally, which is what shows whether
    small groups are recognised. ``labels`` fixes the class set (default: the
    classes in ``y_true`` and ``y_pred``).

    Bounds: perfect = predicting ``y_true`` (1.0 on every metric, except that
    a class in ``labels`` but absent from ``y_true`` scores 0 in the macro
    averages for every classifier, the perfect one included); random =
    labels drawn uniformly from the class set, a seeded Monte Carlo over
    ``n_random`` draws (the macro F1 of random labels has no simple closed
    form; micro's expectation is 1 / n_classes). The draws loop in Python, one
    scikit-learn call each: a few hundred calls on one label vector.
    """
    y_true = as_numpy(y_true)
    y_pred = as_numpy(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError("y_true and y_pred must be non-empty 1-D arrays of one length")
    classes = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)

    def score(pred) -> dict[str, float]:
        out = {}
        for avg in ("macro", "micro"):
            p, r, f, _ = precision_recall_fscore_support(
                y_true, pred, labels=classes, average=avg, zero_division=0
            )
            out.update(
                {f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)}
            )
        out["accuracy"] = float(accuracy_score(y_true, pred))
        return out

    rng = np.random.default_rng(seed)
    draws = [score(classes[rng.integers(0, len(classes), len(y_true))]) for _ in range(n_random)]
    random = {name: float(np.mean([d[name] for d in draws])) for name in draws[0]}
    return MetricReport(
        metrics=score(y_pred),
        perfect=score(y_true),
        random=random,
        counts={"samples": int(len(y_true)), "classes": int(len(classes))},
        notes=f"random = uniform labels, Monte Carlo, {n_random} draws, seed {seed}",
    )
