"""Classic CF baselines (scikit-surprise) and three non-learned predictors, on gprec's split.

Why this module exists: a rating model's RMSE, or its P@10, means little until it sits beside
what SVD, SVD++, NMF and the k-NN family score on *the very same rows*. The published numbers
those baselines come with used their own splits (Surprise's 5-fold cross-validation, a paper's
own 80/20), so they cannot be compared row for row. Here every baseline is fitted on the
training rows of the split gprec itself trains on (`RatingSplit.from_config` goes through
`gprec.data.dataset.load_dataset`, the loader `gprec train` uses, with the same seed) and is
scored on the same valid/test rows.

Models (each with Surprise's default hyper-parameters; those that draw random numbers take the
run's seed as ``random_state``): SVD, SVD++, NMF, KNNBasic, KNNWithMeans, KNNBaseline. Beside
them three predictors that learn nothing and bracket every number:

- ``popularity``: the item's training rating count as a ranking score, its training mean as a
  rating (the paper's per-user protocol ranks and thresholds by the predicted rating, so it
  sees the mean; the full ranking ranks by the count);
- ``random``: Surprise's NormalPredictor rule, N(mean, std) of the training ratings, as a fixed
  seeded function of (user, item) so a pair scores the same in every protocol and call;
- ``perfect``: the true ratings; the ceiling.

Ids. gprec encodes every field with a vocabulary fitted on the training rows and gives index 0
to values absent from it, so a valid/test row of a user or item never seen in training carries
index 0 (all such users, or items, share it). The encoded index is handed to Surprise as the
raw id; index 0 never occurs in training, so Surprise sees it as unknown and applies its own
rule, which this module reproduces exactly:

- SVD, SVD++ (biased): an unknown user drops b_u and the factor term (mu + b_i); an unknown item
  drops b_i and the factor term (mu + b_u); both unknown: mu;
- NMF (unbiased by default): either unknown -> the global training mean;
- KNNBasic: either unknown -> the global mean; also when no neighbour with a positive
  similarity rated the item (fewer than ``min_k``);
- KNNWithMeans: either unknown -> the global mean; no positive-similarity neighbour -> the
  user's own mean;
- KNNBaseline: unknown user or item -> the baseline mu + b_u + b_i with the unknown side's bias
  dropped; no neighbour -> the baseline;
- popularity: an unknown item -> the global mean as a rating, count 0 as a score;
- random and perfect do not depend on ids (perfect reads the truth of the rows it is asked).

Vectorised. Surprise predicts one pair at a time in Python (``algo.predict``). Here each
fitted model's *own* parameters are read back (factors and biases; for the k-NN models the
similarity matrix, the neighbour lists ``yr`` in Surprise's order and the means or baselines)
and its ``estimate`` is evaluated in numpy: factor models by a gather or a matmul, the k-NN
models grouped by item (each item's neighbour list once, a stable sort for the top-k so ties
keep Surprise's ``heapq.nlargest`` order). ``predict_surprise`` is Surprise's own loop, kept as
the reference; the tests check the two agree on every pair. Rating predictions are clipped to
the training rating scale as Surprise's ``predict`` does; ranking scores are the unclipped
estimates (clipping is monotone, so it would only add ties at the scale's ends, and ties count
against the relevant items in `gprec.evaluation.ranking`).

scikit-surprise is optional and imported only inside ``SurpriseModel.fit``: ``import gprec``,
``gprec --help`` and training never load it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gprec.data.schema import Role

SPLITS = ("train", "valid", "test")

# key -> (Surprise class name, display name, takes random_state)
SURPRISE_MODELS: dict[str, tuple[str, str, bool]] = {
    "svd": ("SVD", "SVD", True),
    "svdpp": ("SVDpp", "SVD++", True),
    "nmf": ("NMF", "NMF", True),
    "knnbasic": ("KNNBasic", "KNNBasic", False),
    "knnwithmeans": ("KNNWithMeans", "KNNWithMeans", False),
    "knnbaseline": ("KNNBaseline", "KNNBaseline", False),
}
NON_LEARNED = ("popularity", "random", "perfect")
BASELINES = (*SURPRISE_MODELS, *NON_LEARNED)

_PAIR_CHUNK = 1 << 16  # pairs gathered at once by the factor models (bounds n x factors memory)
_KNN_BLOCK = 1 << 22  # similarity entries sorted at once by the k-NN models


# --------------------------------------------------------------------------- the split


@dataclass(frozen=True)
class RatingSplit:
    """gprec's train/valid/test rows reduced to (user index, item index, rating).

    ``users[s]``, ``items[s]`` and ``ratings[s]`` hold one entry per row of split ``s``, in
    the dataset's row order, so predictions line up with ``EncodedDataset.y[s]`` and with any
    gprec model's predictions on ``X[s]``. Indices are gprec's encodings: 1.. for values seen
    in training, 0 for unseen ones; ``n_users`` / ``n_items`` are the fields' cardinalities
    (index 0 included).
    """

    users: dict[str, np.ndarray]
    items: dict[str, np.ndarray]
    ratings: dict[str, np.ndarray]
    n_users: int
    n_items: int
    user_field: str = "user_id"
    item_field: str = "item_id"

    @classmethod
    def from_dataset(cls, data, user_field: str | None = None, item_field: str | None = None):
        """The pairs of an `EncodedDataset` whose labels are ratings (``data.target: value``).

        Default fields: the first PERSONAL field is the user, the first ITEM field the item
        (MovieLens: ``user_id`` and ``item_id``), the roles gprec's loaders give them.
        """
        names = [f.name for f in data.fields]

        def pick(name: str | None, role: Role) -> int:
            if name is not None:
                if name not in names:
                    raise ValueError(f"no field named {name!r}; the fields are {names}")
                return names.index(name)
            for k, f in enumerate(data.fields):
                if f.role == role:
                    return k
            raise ValueError(f"the data has no field with role {role.value!r}")

        u, i = pick(user_field, Role.PERSONAL), pick(item_field, Role.ITEM)
        return cls(
            users={s: np.ascontiguousarray(data.X[s][:, u], np.int64) for s in SPLITS},
            items={s: np.ascontiguousarray(data.X[s][:, i], np.int64) for s in SPLITS},
            ratings={s: np.asarray(data.y[s], np.float64) for s in SPLITS},
            n_users=int(data.fields[u].cardinality),
            n_items=int(data.fields[i].cardinality),
            user_field=names[u],
            item_field=names[i],
        )

    @classmethod
    def from_config(
        cls,
        paths: str | Path | Sequence[str | Path],
        overrides: Sequence[str] = (),
        use_cache: bool = True,
    ):
        """``(RatingSplit, EncodedDataset)`` of a gprec config, through gprec's own loader.

        The split seed is the config's (``data.split_seed``, else ``train.seed``), so a config
        and ``--set`` overrides that `gprec train` ran give that run's rows exactly. The config
        must ask for ratings (``data.target: value``): with 0/1 labels there is nothing for a
        rating model to fit.
        """
        from gprec.config import load_config
        from gprec.data.dataset import load_dataset
        from gprec.errors import ConfigError

        cfg = load_config(paths, list(overrides))
        if cfg.data.target != "value":
            raise ConfigError(
                "the baselines fit ratings: set data.target=value (and train.task=regression)"
            )
        data = load_dataset(cfg.data, cfg.split_seed(), use_cache=use_cache)
        return cls.from_dataset(data), data

    @property
    def rating_scale(self) -> tuple[float, float]:
        """(lowest, highest) training rating: the range predictions are clipped to."""
        r = self.ratings["train"]
        return float(r.min()), float(r.max())

    @property
    def global_mean(self) -> float:
        return float(self.ratings["train"].mean())

    def unseen(self, split: str) -> dict[str, int]:
        """How many rows of ``split`` have a user, an item, or either unseen in training."""
        u, i = self.users[split] == 0, self.items[split] == 0
        return {
            "unseen_user": int(u.sum()),
            "unseen_item": int(i.sum()),
            "either": int((u | i).sum()),
        }


def _pairs(users, items) -> tuple[np.ndarray, np.ndarray]:
    users = np.asarray(users, np.int64).ravel()
    items = np.asarray(items, np.int64).ravel()
    if users.shape != items.shape:
        raise ValueError(f"users and items differ in length: {users.shape} vs {items.shape}")
    return users, items


# --------------------------------------------------------------------------- the interface


class RatingModel:
    """What every baseline offers: fit on a split, then ratings and ranking scores of pairs.

    ``predict`` gives ratings (RMSE/MAE, the paper's thresholded P@10); ``scores`` gives
    what the model ranks by (the full ranking); ``grid`` the scores of every user x item;
    ``predict_split`` the ratings of a split's own rows. ``fit_seconds`` is the time of the
    last fit.
    """

    key: str = ""
    name: str = ""
    fit_seconds: float = 0.0

    def fit(self, split: RatingSplit) -> RatingModel:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, users, items) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def scores(self, users, items) -> np.ndarray:
        return self.predict(users, items)

    def predict_split(self, split: str) -> np.ndarray:
        return self.predict(self.split.users[split], self.split.items[split])

    def grid(self, users, items) -> np.ndarray:
        """(len(users), len(items)) ranking scores, built from pairs in blocks of rows."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        out = np.empty((len(users), len(items)))
        rows = max(1, (1 << 20) // max(len(items), 1))
        for start in range(0, len(users), rows):
            u = users[start : start + rows]
            out[start : start + len(u)] = self.scores(
                np.repeat(u, len(items)), np.tile(items, len(u))
            ).reshape(len(u), len(items))
        return out

    def _check(self, users: np.ndarray, items: np.ndarray) -> None:
        for what, idx, n in (
            ("user", users, self.split.n_users),
            ("item", items, self.split.n_items),
        ):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"{what} index out of range 0..{n - 1} (0 = unseen)")


# --------------------------------------------------------------------------- non-learned


class PopularityPredictor(RatingModel):
    """Scores an item by its training rating count; predicts its training mean rating.

    Needs no user: every user gets the same list, the floor any personalised model must
    clear in the full ranking. An item unseen in training has count 0 and the global mean.
    """

    key = name = "popularity"

    def fit(self, split: RatingSplit) -> PopularityPredictor:
        t0 = time.perf_counter()
        self.split = split
        items, r = split.items["train"], split.ratings["train"]
        self.count = np.bincount(items, minlength=split.n_items).astype(np.float64)
        total = np.bincount(items, weights=r, minlength=split.n_items)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mean = np.where(self.count > 0, total / self.count, split.global_mean)
        self.count[0] = 0.0  # index 0 pools every unseen item: it has no count of its own
        self.mean[0] = split.global_mean
        self.fit_seconds = time.perf_counter() - t0
        return self

    def predict(self, users, items):
        users, items = _pairs(users, items)
        self._check(users, items)
        return self.mean[items]

    def scores(self, users, items):
        users, items = _pairs(users, items)
        self._check(users, items)
        return self.count[items]


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """A fixed 64-bit mixing function (SplitMix64's finaliser): pair keys to random bits."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class RandomPredictor(RatingModel):
    """Surprise's NormalPredictor rule, N(mean, std) of the training ratings, seeded.

    Each (user, item) pair's draw is a fixed function of the pair and the seed (a hash, not a
    generator's stream), so a pair scores the same in the rating metrics, the per-user
    protocol and the full ranking, whatever the order of the calls. Ratings are clipped to
    the scale; scores are the unclipped draws (continuous: no ties).
    """

    key = name = "random"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def fit(self, split: RatingSplit) -> RandomPredictor:
        self.split = split
        r = split.ratings["train"]
        self.mu, self.sigma = float(r.mean()), float(r.std())  # Surprise: the MLE std
        self._salt = np.random.SeedSequence(self.seed).generate_state(1, np.uint64)[0]
        self.fit_seconds = 0.0
        return self

    def scores(self, users, items):
        from scipy.special import ndtri

        users, items = _pairs(users, items)
        self._check(users, items)
        key = users.astype(np.uint64) * np.uint64(self.split.n_items) + items.astype(np.uint64)
        bits = _splitmix64(key ^ self._salt)
        uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
        return self.mu + self.sigma * ndtri(uniform)

    def predict(self, users, items):
        return np.clip(self.scores(users, items), *self.split.rating_scale)


class PerfectPredictor(RatingModel):
    """The true ratings: the ceiling of every metric (RMSE 0).

    ``predict_split`` returns a split's own labels, row for row (exact even where several
    unseen users or items share index 0). ``predict`` looks a pair up among the rated rows
    of all splits (the last row wins if a pair was rated twice) and gives NaN for a pair no
    one rated. ``scores`` gives the pair's valid/test rating and 0 (below every rating) to a
    pair without one, so in the full ranking the held-out items come first, the liked ones
    before the rest.
    """

    key = name = "perfect"

    def fit(self, split: RatingSplit) -> PerfectPredictor:
        self.split = split
        self._all = self._table(SPLITS)
        self._held_out = self._table(("valid", "test"))
        self.fit_seconds = 0.0
        return self

    def _table(self, splits) -> tuple[np.ndarray, np.ndarray]:
        s = self.split
        keys = np.concatenate([s.users[x] * s.n_items + s.items[x] for x in splits])
        vals = np.concatenate([s.ratings[x] for x in splits])
        # Last occurrence wins: unique over the reversed arrays keeps the first of those.
        uniq, first = np.unique(keys[::-1], return_index=True)
        return uniq, vals[::-1][first]

    @staticmethod
    def _lookup(table, keys, missing: float) -> np.ndarray:
        uniq, vals = table
        pos = np.clip(np.searchsorted(uniq, keys), 0, max(len(uniq) - 1, 0))
        found = (uniq[pos] == keys) if len(uniq) else np.zeros(len(keys), bool)
        return np.where(found, vals[pos] if len(uniq) else missing, missing)

    def predict(self, users, items):
        users, items = _pairs(users, items)
        self._check(users, items)
        return self._lookup(self._all, users * self.split.n_items + items, np.nan)

    def scores(self, users, items):
        users, items = _pairs(users, items)
        self._check(users, items)
        return self._lookup(self._held_out, users * self.split.n_items + items, 0.0)

    def predict_split(self, split: str) -> np.ndarray:
        return self.split.ratings[split].copy()


# --------------------------------------------------------------------------- Surprise


def _padded(a: np.ndarray) -> np.ndarray:
    """``a`` with a zero row appended, so inner id -1 (unknown) reads zeros."""
    a = np.asarray(a, np.float64)
    return np.concatenate([a, np.zeros((1, *a.shape[1:]))])


class SurpriseModel(RatingModel):
    """One scikit-surprise algorithm fitted on a `RatingSplit`'s training rows.

    ``key`` is one of `SURPRISE_MODELS`; ``options`` go to the Surprise class (none: its
    defaults); ``seed`` becomes ``random_state`` for the models that draw random numbers.
    ``algo`` is the fitted Surprise object, ``trainset`` its Trainset.
    """

    def __init__(self, key: str, seed: int = 0, **options):
        if key not in SURPRISE_MODELS:
            raise ValueError(f"unknown Surprise model {key!r}; choose from {list(SURPRISE_MODELS)}")
        self.key = key
        self.class_name, self.name, seeded = SURPRISE_MODELS[key]
        self.seed = int(seed)
        self.options = dict(options)
        if seeded:
            self.options.setdefault("random_state", self.seed % 2**32)
        elif key.startswith("knn"):
            self.options.setdefault("verbose", False)  # only silences "Computing ..." messages

    # -- fitting

    def fit(self, split: RatingSplit) -> SurpriseModel:
        import surprise  # optional dependency: only here
        from surprise import Dataset, Reader

        self.split = split
        s = split
        raw = list(
            zip(
                s.users["train"].tolist(),
                s.items["train"].tolist(),
                s.ratings["train"].tolist(),
                [None] * len(s.ratings["train"]),
                strict=True,
            )
        )
        # Surprise's own constructor of a Trainset from (raw user, raw item, rating, time)
        # rows: the encoded indices are the raw ids, so inner ids follow first appearance.
        self.trainset = Dataset(Reader(rating_scale=s.rating_scale)).construct_trainset(raw)
        self.algo = getattr(surprise, self.class_name)(**self.options)
        t0 = time.perf_counter()
        self.algo.fit(self.trainset)
        self.fit_seconds = time.perf_counter() - t0
        ts = self.trainset
        self._inner_u = np.full(s.n_users, -1, np.int64)
        self._inner_i = np.full(s.n_items, -1, np.int64)
        for raw_id in np.unique(s.users["train"]).tolist():
            self._inner_u[raw_id] = ts.to_inner_uid(raw_id)
        for raw_id in np.unique(s.items["train"]).tolist():
            self._inner_i[raw_id] = ts.to_inner_iid(raw_id)
        self._mu = float(ts.global_mean)
        self._prepare()
        return self

    def _prepare(self) -> None:
        """Read the fitted parameters back into arrays for the vectorised estimate."""
        a, ts = self.algo, self.trainset
        if self.key in ("svd", "nmf", "svdpp"):
            self._biased = bool(getattr(a, "biased", True))
            self._pu, self._qi = _padded(a.pu), _padded(a.qi)
            if self._biased:
                self._bu, self._bi = _padded(a.bu), _padded(a.bi)
            if self.key == "svdpp":
                # |I_u|^-1/2 * sum of y_j over the items u rated: a fixed per-user vector.
                u, j = np.array([(u, j) for u in ts.ur for (j, _) in ts.ur[u]], np.int64).T
                implicit = np.zeros_like(np.asarray(a.pu, np.float64))
                np.add.at(implicit, u, np.asarray(a.yj, np.float64)[j])
                counts = np.bincount(u, minlength=ts.n_users).astype(np.float64)
                self._pu = _padded(np.asarray(a.pu) + implicit / np.sqrt(counts)[:, None])
            return
        # k-NN: x is the side whose similarities are used (users unless user_based=False).
        self._user_based = bool(a.sim_options.get("user_based", True))
        self._sim = np.asarray(a.sim, np.float64)
        n_y = ts.n_items if self._user_based else ts.n_users
        lengths = np.array([len(a.yr[y]) for y in range(n_y)], np.int64)
        self._indptr = np.concatenate([[0], np.cumsum(lengths)])
        flat = [pair for y in range(n_y) for pair in a.yr[y]]  # Surprise's order, kept
        self._nb = np.array([x2 for x2, _ in flat], np.int64)
        self._nr = np.array([r for _, r in flat], np.float64)
        if self.key == "knnwithmeans":
            self._means = np.asarray(a.means, np.float64)
        if self.key == "knnbaseline":
            self._bu, self._bi = _padded(a.bu), _padded(a.bi)
            self._bx, self._by = np.asarray(a.bx, np.float64), np.asarray(a.by, np.float64)

    # -- prediction

    def predict(self, users, items, clip: bool = True) -> np.ndarray:
        """Ratings of (user, item) pairs of encoded indices, as Surprise's ``predict`` gives
        them: its estimate, the global mean where that is impossible, clipped to the scale."""
        users, items = _pairs(users, items)
        self._check(users, items)
        u, i = self._inner_u[users], self._inner_i[items]
        est = np.empty(len(u))
        for start in range(0, len(u), _PAIR_CHUNK):
            sl = slice(start, start + _PAIR_CHUNK)
            e, impossible = self._estimate(u[sl], i[sl])
            est[sl] = np.where(impossible, self._mu, e)
        return np.clip(est, *self.split.rating_scale) if clip else est

    def scores(self, users, items):
        """Unclipped estimates: clipping would only add ties at the scale's ends."""
        return self.predict(users, items, clip=False)

    def predict_surprise(self, users, items, clip: bool = True) -> np.ndarray:
        """Surprise's own ``algo.predict``, one pair at a time: the reference, slow."""
        users, items = _pairs(users, items)
        return np.array(
            [
                self.algo.predict(u, i, clip=clip).est
                for u, i in zip(users.tolist(), items.tolist(), strict=True)
            ],
            np.float64,
        )

    def grid(self, users, items) -> np.ndarray:
        """Scores of every user x item; the factor models by one matmul per block."""
        if self.key not in ("svd", "svdpp", "nmf"):
            return super().grid(users, items)
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        self._check(users, items)
        u, i = self._inner_u[users], self._inner_i[items]
        dot = self._pu[u] @ self._qi[i].T
        if self._biased:
            return self._mu + self._bu[u][:, None] + self._bi[i][None, :] + dot
        both = (u >= 0)[:, None] & (i >= 0)[None, :]
        return np.where(both, dot, self._mu)

    def _estimate(self, u: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Surprise's ``estimate`` on inner ids (-1 = unknown): (estimate, impossible)."""
        known_u, known_i = u >= 0, i >= 0
        both = known_u & known_i
        if self.key in ("svd", "svdpp", "nmf"):
            dot = np.einsum("nf,nf->n", self._pu[u], self._qi[i])  # zero rows where unknown
            if self._biased:
                return self._mu + self._bu[u] + self._bi[i] + dot, np.zeros(len(u), bool)
            return dot, ~both
        x, y = (u, i) if self._user_based else (i, u)
        est = np.zeros(len(u))
        impossible = ~both
        if self.key == "knnbaseline":
            est = self._mu + self._bu[u] + self._bi[i]  # the baseline, unknown sides dropped
            impossible = np.zeros(len(u), bool)
        elif self.key == "knnwithmeans":
            est[both] = self._means[x[both]]
        idx = np.flatnonzero(both)
        if len(idx):
            agg, ok = self._neighbour_terms(x[idx], y[idx])
            if self.key == "knnbasic":
                est[idx] = agg
                impossible[idx] = ~ok
            else:
                est[idx] += np.where(ok, agg, 0.0)
        return est, impossible

    def _neighbour_terms(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The k-NN aggregate of each (x, y): sum(sim * term) / sum(sim) over the top-k
        neighbours of x among those who rated y, counting only positive similarities, and
        whether at least ``min_k`` (and one) of them were positive.

        term: the rating (KNNBasic), its deviation from the neighbour's mean (KNNWithMeans)
        or from the neighbour's baseline (KNNBaseline). Grouped by y so each neighbour list
        is read once; the top-k is a stable sort on -similarity, which keeps
        ``heapq.nlargest``'s order among equal similarities.
        """
        k, min_k = int(self.algo.k), max(int(self.algo.min_k), 1)
        out, ok = np.zeros(len(x)), np.zeros(len(x), bool)
        order = np.argsort(y, kind="stable")
        ys = y[order]
        starts = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]])
        ends = np.r_[starts[1:], len(ys)]
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            yy = int(ys[s])
            lo, hi = self._indptr[yy], self._indptr[yy + 1]
            nb, nr = self._nb[lo:hi], self._nr[lo:hi]
            if self.key == "knnwithmeans":
                term = nr - self._means[nb]
            elif self.key == "knnbaseline":
                term = nr - (self._mu + self._bx[nb] + self._by[yy])
            else:
                term = nr
            rows = max(1, _KNN_BLOCK // max(len(nb), 1))
            for b in range(s, e, rows):
                q = order[b : min(b + rows, e)]
                sim = self._sim[np.ix_(x[q], nb)]
                t = np.broadcast_to(term, sim.shape)
                if len(nb) > k:
                    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
                    sim = np.take_along_axis(sim, top, axis=1)
                    t = term[top]
                w = np.where(sim > 0, sim, 0.0)
                actual_k = (sim > 0).sum(axis=1)
                total = w.sum(axis=1)
                good = actual_k >= min_k
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[q] = np.where(good, (w * t).sum(axis=1) / total, 0.0)
                ok[q] = good
        return out, ok


# --------------------------------------------------------------------------- factory


def make_baseline(key: str, seed: int = 0, **options) -> RatingModel:
    """A fresh, unfitted baseline by key (`BASELINES`); ``seed`` feeds the random ones."""
    if key in SURPRISE_MODELS:
        return SurpriseModel(key, seed, **options)
    if options:
        raise ValueError(f"{key} takes no options, got {sorted(options)}")
    if key == "popularity":
        return PopularityPredictor()
    if key == "random":
        return RandomPredictor(seed)
    if key == "perfect":
        return PerfectPredictor()
    raise ValueError(f"unknown baseline {key!r}; choose from {list(BASELINES)}")
