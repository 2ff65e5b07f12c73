"""The built-in synthetic dataset: CTR data with planted group and individual taste.

Real datasets cannot tell whether a model found user groups, because nobody
knows the true groups. Here they are planted: every user belongs to one or
more latent groups, each group has a taste over genres and release years, and
each user adds a small personal deviation. A model with an explicit group
layer (GPRec) has structure to find, a plain MLP over the same fields must
discover it implicitly, and an item-popularity predictor sees none of it, so
the three should rank in that order.

Group membership is a deterministic but non-trivial function of the
observable user fields (occupation x age interactions, region, gender) plus a
little unobservable jitter. No single field decides it, so concatenating field
embeddings is not enough to read groups off directly.

Everything is vectorised numpy and seeded: the same `SynthConfig` always gives
the same table, byte for byte.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from gprec.config import SEED_MAX
from gprec.data.schema import FieldSpec, RawTable, Role
from gprec.errors import ConfigError, DataError

AGE_BUCKETS = ("under18", "18-24", "25-34", "35-44", "45-49", "50-55", "56plus")
GENDERS = ("F", "M")
N_OCCUPATIONS = 20
N_REGIONS = 50
N_YEARS = 8  # release decades, 1950s .. 2020s

FIELDS = [
    FieldSpec("item_id", Role.ITEM),
    FieldSpec("genre", Role.ITEM),
    FieldSpec("year", Role.ITEM),
    FieldSpec("user_id", Role.PERSONAL),
    FieldSpec("age", Role.USER),
    FieldSpec("gender", Role.USER),
    FieldSpec("occupation", Role.USER),
    FieldSpec("region", Role.USER),
]

# Gauss-Hermite nodes for E[sigmoid(logit + noise)], noise ~ N(0, s^2): exact
# enough (error < 1e-6 for the noise levels used) and keeps labels consistent
# with the reported probability.
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(24)


@dataclass
class SynthConfig:
    """Size, structure and signal strengths of the synthetic world.

    The strengths are standard deviations on the logit scale. `noise` is
    per-interaction logit noise no model can predict; it caps the best
    achievable AUC. `positive_rate` is hit by shifting a global offset, so the
    label balance stays put whatever the other knobs are.
    """

    n_users: int = 2000
    n_items: int = 500
    n_interactions: int = 100_000
    n_groups: int = 8
    groups_per_user: int = 2  # mean group count; a user is in 1 .. groups_per_user + 1
    n_genres: int = 12
    group_strength: float = 1.1
    individual_strength: float = 0.5
    item_strength: float = 0.5
    year_strength: float = 0.5  # group taste over release years, relative to group_strength
    noise: float = 0.8
    membership_noise: float = 0.3  # unobservable jitter in the group scores
    popularity_skew: float = 1.0  # sigma of the log item-sampling weights
    activity_skew: float = 0.6  # sigma of the log user-activity weights
    positive_rate: float = 0.5
    seed: int = 0
    with_timestamp: bool = True

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_interactions", "n_groups", "n_genres"):
            if getattr(self, name) < 1:
                raise SynthConfigError(name, "must be at least 1")
        if self.groups_per_user < 1:
            raise SynthConfigError("groups_per_user", "must be at least 1")
        if self.groups_per_user > self.n_groups:
            # Blame the knob that was moved: the CLI and configs set only n_groups.
            if self.groups_per_user != SynthConfig.groups_per_user:
                raise SynthConfigError(
                    "groups_per_user", f"must be at most {{n_groups}} = {self.n_groups}"
                )
            raise SynthConfigError(
                "n_groups",
                f"must be at least {self.groups_per_user}, the mean number of groups a user is in",
            )
        if not 0.0 < self.positive_rate < 1.0:
            raise SynthConfigError("positive_rate", "must be strictly between 0 and 1")
        if not 0 <= self.seed <= SEED_MAX:
            raise SynthConfigError("seed", f"must be between 0 and {SEED_MAX}")
        # Without repeats a user can only see each item once; keep well clear of
        # a full user x item matrix so the rejection sampler stays fast.
        if self.n_interactions > self.n_users * self.n_items // 2:
            raise SynthConfigError(
                "n_interactions",
                "must be at most half of {n_users} x {n_items} = "
                f"{self.n_users * self.n_items // 2} (interactions are distinct user-item pairs)",
            )


class SynthConfigError(ConfigError):
    """A bad `SynthConfig` value. `field` names it, so a caller can name its own key or flag.

    `problem` may refer to other fields as `{n_users}`; `message(name)` fills
    them in with the caller's names (e.g. `--users`, `data.synthetic.n_users`).
    """

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"SynthConfig.{field} {self.message(lambda f: f'SynthConfig.{f}')}")

    def message(self, name: Callable[[str], str]) -> str:
        """The problem without the field's own name, other fields named by `name`."""
        return self.problem.format_map({f.name: name(f.name) for f in fields(SynthConfig)})


@dataclass
class SynthTruth:
    """The planted ground truth, aligned with the rows of the generated table.

    `logit` is the part of the logit a model could learn from the fields (the
    best possible score); `probability` is the exact chance the label was 1,
    sigmoid(logit + noise) averaged over the unpredictable noise, and so
    ranks rows exactly as `logit` does.
    """

    membership: np.ndarray  # (n_users, n_groups) bool
    group_taste: np.ndarray  # (n_groups, n_genres) logit contribution
    user: np.ndarray  # (n,) user index of each row
    item: np.ndarray  # (n,) item index of each row
    logit: np.ndarray  # (n,)
    probability: np.ndarray  # (n,)
    label: np.ndarray  # (n,) int8, equals table target > 3
    item_popularity: np.ndarray  # (n_items,) sampling probability of each item


def generate(config: SynthConfig) -> RawTable:
    """The synthetic dataset as a RawTable (use `generate_with_truth` for the planted truth)."""
    return generate_with_truth(config)[0]


def generate_with_truth(config: SynthConfig) -> tuple[RawTable, SynthTruth]:
    """The dataset plus its planted truth, for tests and for reporting how close a model got."""
    raw, truth, _, _ = _build(config)
    return raw, truth


def _build(c: SynthConfig) -> tuple[RawTable, SynthTruth, pl.DataFrame, pl.DataFrame]:
    """Table, truth, and the full users and items tables (including never-drawn ones)."""
    # Independent streams, so e.g. more interactions do not reshuffle the users.
    world_rng, user_rng, item_rng, inter_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(c.seed).spawn(4)
    )
    age, gender, occupation, region = _sample_users(c, user_rng)
    membership = _membership(c, age, gender, occupation, region, world_rng, user_rng)

    group_taste = world_rng.normal(0.0, c.group_strength, (c.n_groups, c.n_genres))
    group_year = world_rng.normal(0.0, c.group_strength * c.year_strength, (c.n_groups, N_YEARS))
    personal_taste = user_rng.normal(0.0, c.individual_strength, (c.n_users, c.n_genres))

    genre = item_rng.integers(0, c.n_genres, c.n_items)
    year = item_rng.choice(N_YEARS, c.n_items, p=_skewed(N_YEARS, 0.4, item_rng))
    quality = item_rng.normal(0.0, 1.0, c.n_items)
    # Popular items are somewhat better liked, as in real logs, but popularity
    # alone explains only a small part of the labels.
    log_weight = c.popularity_skew * (0.6 * quality + 0.8 * item_rng.normal(0.0, 1.0, c.n_items))
    item_popularity = _normalise(np.exp(log_weight - log_weight.max()))

    activity = np.exp(user_rng.normal(0.0, c.activity_skew, c.n_users))
    user, item = _sample_pairs(c, _normalise(activity), item_popularity, inter_rng)

    member = membership.astype(np.float64)
    group_genre = member @ group_taste  # (n_users, n_genres)
    group_decade = member @ group_year  # (n_users, N_YEARS)
    logit = (
        c.item_strength * quality[item]
        + group_genre[user, genre[item]]
        + group_decade[user, year[item]]
        + personal_taste[user, genre[item]]
    )
    logit += _offset_for_rate(logit, c.noise, c.positive_rate)
    probability = _noisy_sigmoid(logit, c.noise)
    label = (inter_rng.random(len(logit)) < probability).astype(np.int8)
    rating = _ratings(label, probability, inter_rng)

    users = pl.DataFrame(
        [
            _labels("user_id", "u", c.n_users),
            pl.Series("age", AGE_BUCKETS).gather(age),
            pl.Series("gender", GENDERS).gather(gender),
            _labels("occupation", "occ", N_OCCUPATIONS).gather(occupation),
            _labels("region", "r", N_REGIONS).gather(region),
        ]
    )
    items = pl.DataFrame(
        [
            _labels("item_id", "i", c.n_items),
            _labels("genre", "g", c.n_genres).gather(genre),
            pl.Series("year", [f"{1950 + 10 * k}s" for k in range(N_YEARS)]).gather(year),
        ]
    )
    columns = [*items[item].get_columns(), *users[user].get_columns()]
    columns.append(pl.Series(RawTable.TARGET, rating, dtype=pl.Float64))
    order = np.arange(len(user))
    if c.with_timestamp:
        timestamp = _timestamps(user, c.n_users, inter_rng)
        columns.append(pl.Series(RawTable.TIMESTAMP, timestamp, dtype=pl.Int64))
        order = np.argsort(timestamp, kind="stable")  # rows as a time-ordered log
    table = pl.DataFrame(columns)[order].select([f.name for f in FIELDS] + _extra(c))
    truth = SynthTruth(
        membership=membership,
        group_taste=group_taste,
        user=user[order],
        item=item[order],
        logit=logit[order],
        probability=probability[order],
        label=label[order],
        item_popularity=item_popularity,
    )
    return RawTable(table, list(FIELDS)), truth, users, items


def _extra(c: SynthConfig) -> list[str]:
    return [RawTable.TARGET, RawTable.TIMESTAMP] if c.with_timestamp else [RawTable.TARGET]


def write_dataset(config: SynthConfig, out_dir: Path, overwrite: bool = False) -> Path:
    """Write the dataset as CSVs plus a generic `schema.yaml`; return the schema path.

    The files go into a temporary sibling first and are renamed into place, so
    an interrupted run never leaves a half-written dataset that a later run
    would take for a complete one.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError("exists and is not a directory", path=out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise DataError("directory is not empty; pass overwrite=True to replace it", path=out_dir)

    raw, _, users, items = _build(config)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a dataset is meant to be shared
        _write_files(raw, users, items, config, tmp)
        if out_dir.exists():
            # Move the old directory aside first: rename cannot replace a non-empty one.
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old / "data")
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "schema.yaml"


def _write_files(
    raw: RawTable, users: pl.DataFrame, items: pl.DataFrame, config: SynthConfig, directory: Path
) -> None:
    interaction_cols = [
        pl.col("user_id"),
        pl.col("item_id"),
        pl.col(RawTable.TARGET).cast(pl.Int64).alias("rating"),
    ]
    if config.with_timestamp:
        interaction_cols.append(pl.col(RawTable.TIMESTAMP))
    raw.table.select(interaction_cols).write_csv(directory / "interactions.csv")
    users.write_csv(directory / "users.csv")
    items.write_csv(directory / "items.csv")
    schema: dict = {
        "interactions": {"path": "interactions.csv"},
        "users": {"path": "users.csv", "key": "user_id"},
        "items": {"path": "items.csv", "key": "item_id"},
        "target": "rating",
    }
    if config.with_timestamp:
        schema["timestamp"] = RawTable.TIMESTAMP
    schema["fields"] = {f.name: str(f.role) for f in FIELDS}
    (directory / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))


def _sample_users(
    c: SynthConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Codes of age, gender, occupation and region, with uneven, realistic-looking marginals."""
    age = rng.choice(len(AGE_BUCKETS), c.n_users, p=_skewed(len(AGE_BUCKETS), 0.5, rng))
    gender = rng.choice(2, c.n_users, p=[0.4, 0.6])
    occupation = rng.choice(N_OCCUPATIONS, c.n_users, p=_skewed(N_OCCUPATIONS, 0.8, rng))
    region = rng.choice(N_REGIONS, c.n_users, p=_skewed(N_REGIONS, 1.0, rng))
    return age, gender, occupation, region


def _membership(
    c: SynthConfig,
    age: np.ndarray,
    gender: np.ndarray,
    occupation: np.ndarray,
    region: np.ndarray,
    world_rng: np.random.Generator,
    user_rng: np.random.Generator,
) -> np.ndarray:
    """Which groups each user is in: a thresholded score over field combinations.

    The occupation x age table carries as much weight as the main effects, so
    membership is an interaction that no single field's embedding encodes.
    """
    g = c.n_groups
    score = (
        0.8 * world_rng.normal(0.0, 1.0, (N_OCCUPATIONS, g))[occupation]
        + 0.6 * world_rng.normal(0.0, 1.0, (len(AGE_BUCKETS), g))[age]
        + 0.3 * world_rng.normal(0.0, 1.0, (2, g))[gender]
        + 0.7 * world_rng.normal(0.0, 1.0, (N_REGIONS, g))[region]
        + 1.0 * world_rng.normal(0.0, 1.0, (N_OCCUPATIONS, len(AGE_BUCKETS), g))[occupation, age]
        + c.membership_noise * user_rng.normal(0.0, 1.0, (c.n_users, g))
    )
    # Each user's best group always counts; beyond it, any group scoring above
    # a global quantile, up to groups_per_user + 1 in all.
    threshold = np.quantile(score, 1.0 - c.groups_per_user / g)
    rank = np.argsort(np.argsort(-score, axis=1), axis=1)
    return (rank == 0) | ((score >= threshold) & (rank <= c.groups_per_user))


def _sample_pairs(
    c: SynthConfig, user_p: np.ndarray, item_p: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs: users by activity, items by popularity.

    Per-user counts are capped at half the catalogue, then repeated pairs are
    redrawn until none is left, so rejection always converges quickly.
    """
    cap = -(-c.n_items // 2)  # ceil: n_users * cap always covers n_interactions
    counts = np.zeros(c.n_users, dtype=np.int64)
    missing = c.n_interactions
    while missing > 0:
        room = cap - counts
        p = np.where(room > 0, user_p, 0.0)
        counts += np.minimum(rng.multinomial(missing, p / p.sum()), room)
        missing = c.n_interactions - int(counts.sum())
    user = np.repeat(np.arange(c.n_users), counts)
    item = rng.choice(c.n_items, len(user), p=item_p)
    for _ in range(1000):
        code = user * c.n_items + item
        order = np.argsort(code, kind="stable")
        repeat_sorted = np.r_[False, code[order][1:] == code[order][:-1]]
        repeat = np.empty(len(code), dtype=bool)
        repeat[order] = repeat_sorted
        n_repeat = int(repeat.sum())
        if n_repeat == 0:
            return user, item
        item[repeat] = rng.choice(c.n_items, n_repeat, p=item_p)
    raise RuntimeError("could not draw distinct user-item pairs; lower popularity_skew")


def _timestamps(user: np.ndarray, n_users: int, rng: np.random.Generator) -> np.ndarray:
    """Unix seconds over two years, strictly increasing within each user.

    Strictness matters: a leave-last-out split should not depend on a tiebreak.
    """
    start = 1_577_836_800  # 2020-01-01
    t = start + rng.integers(0, 2 * 365 * 86_400, len(user))
    order = np.lexsort((t, user))
    sorted_user = user[order]
    first_of_user = np.searchsorted(sorted_user, np.arange(n_users))
    position = np.arange(len(user)) - first_of_user[sorted_user]
    # Adding the position within the user turns ties into strict increases
    # while keeping the sorted order.
    out = np.empty(len(user), dtype=np.int64)
    out[order] = t[order] + position
    return out


def _ratings(label: np.ndarray, probability: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ratings 1..5 whose `> 3` threshold gives back the label exactly.

    Within each side the rating leans with the probability, so ratings carry
    the same ordering a regression model could use.
    """
    positive = 4 + (rng.random(len(label)) < probability)
    negative = 1 + rng.binomial(2, probability)
    return np.where(label == 1, positive, negative).astype(np.float64)


def _noisy_sigmoid(logit: np.ndarray, noise: float) -> np.ndarray:
    """E[sigmoid(logit + e)] for e ~ N(0, noise^2), by Gauss-Hermite quadrature."""
    if noise <= 0:
        return 1.0 / (1.0 + np.exp(-logit))
    shifted = logit[:, None] + np.sqrt(2.0) * noise * _GH_NODES[None, :]
    return (1.0 / (1.0 + np.exp(-shifted))) @ _GH_WEIGHTS / np.sqrt(np.pi)


def _offset_for_rate(logit: np.ndarray, noise: float, rate: float) -> float:
    """The global shift that makes the mean label probability equal `rate` (bisection)."""
    lo, hi = -20.0 - logit.max(), 20.0 - logit.min()
    sample = logit[:: max(1, len(logit) // 20_000)]  # the mean is smooth; a subsample suffices
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _noisy_sigmoid(sample + mid, noise).mean() < rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _skewed(n: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return _normalise(np.exp(rng.normal(0.0, sigma, n)))


def _normalise(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


def _labels(name: str, prefix: str, n: int) -> pl.Series:
    width = len(str(n - 1))
    return pl.Series(name, [f"{prefix}{i:0{width}d}" for i in range(n)], dtype=pl.String)
