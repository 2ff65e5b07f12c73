"""How well learned groups recover planted ones.

Both sides are membership matrices over the same users, `(n_users, groups)` of bools; a user may
be in several groups on either side (the synthetic generator plants 1 to 3 groups per user, and
GPRec's masks are independent per group).

- `best_match_jaccard`: for every planted group, the largest Jaccard index |A & B| / |A | B|
  between it and any learned group, averaged over the planted groups (1: each planted group is
  exactly some learned group). Two empty sets count as 0.
- `adjusted_mutual_info`: scikit-learn's AMI between two clusterings, where each user's cluster
  is the *set* of groups they are in (a user in planted groups {1, 4} is in cluster "1+4"; under
  argmax membership each learned set has one group). 0 is chance level, 1 identical clusterings.

Planted groups come from the built-in generator (`data.source: synthetic`): the same
`SynthConfig` gives the same users and memberships, so the truth is regenerated, not stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def jaccard_matrix(planted: np.ndarray, learned: np.ndarray) -> np.ndarray:
    """`J[k, g]` = Jaccard index of planted group k and learned group g (0 when both empty)."""
    a = np.asarray(planted, dtype=np.float64)
    b = np.asarray(learned, dtype=np.float64)
    inter = a.T @ b
    union = a.sum(0)[:, None] + b.sum(0)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def best_match_jaccard(planted: np.ndarray, learned: np.ndarray) -> dict[str, Any]:
    """The mean over planted groups of their best Jaccard index, with each one's best match."""
    J = jaccard_matrix(planted, learned)
    best = J.argmax(1)
    per = [{"planted": k, "learned": int(g), "jaccard": float(J[k, g])} for k, g in enumerate(best)]
    return {"mean": float(J.max(1).mean()) if len(J) else 0.0, "per_planted": per}


def set_labels(membership: np.ndarray) -> np.ndarray:
    """One cluster label per user: users with the same set of groups share a label."""
    m = np.asarray(membership, dtype=bool)
    return np.unique(m, axis=0, return_inverse=True)[1].reshape(-1)


def adjusted_mutual_info(planted: np.ndarray, learned: np.ndarray) -> float:
    from sklearn.metrics import adjusted_mutual_info_score

    return float(adjusted_mutual_info_score(set_labels(planted), set_labels(learned)))


def recovery(planted: np.ndarray, learned: np.ndarray) -> dict[str, Any]:
    """AMI and best-match Jaccard of `learned` against `planted` (same users, same order)."""
    if len(planted) != len(learned):
        raise ValueError(f"{len(planted)} planted rows vs {len(learned)} learned rows")
    match = best_match_jaccard(planted, learned)
    return {
        "ami": adjusted_mutual_info(planted, learned),
        "best_match_jaccard": match["mean"],
        "per_planted": match["per_planted"],
        # 1: every user has the same groups (AMI is then 0 by construction)
        "distinct_sets": int(len(np.unique(np.asarray(learned, dtype=bool), axis=0))),
    }


def shuffled(membership: np.ndarray, seed: int = 0) -> np.ndarray:
    """The memberships dealt to users at random (rows permuted): the same group sizes and
    overlaps, no relation to who the users are; chance level for the measures above."""
    rng = np.random.default_rng(seed)
    return np.asarray(membership)[rng.permutation(len(membership))]


def planted_membership(config, personal_values: list[str]) -> np.ndarray | None:
    """The planted groups `(n, n_planted)` of the users whose personal field (the user id) has
    the given raw values, for a run on the built-in synthetic data; None for any other source.

    `config` is the run's `RunConfig`. A user id the generator does not know is an error (the
    run was not trained on this data)."""
    if config.data.source != "synthetic":
        return None
    from gprec.data.synth import FIELDS, SynthConfig, generate_with_truth
    from gprec.errors import ConfigError

    raw, truth = generate_with_truth(SynthConfig(**config.data.synthetic.model_dump()))
    personal = next(f.name for f in FIELDS if f.role.value == "personal")
    index = dict(zip(raw.table[personal].to_list(), truth.user.tolist(), strict=True))
    missing = [v for v in personal_values if v not in index]
    if missing:
        raise ConfigError(
            f"user {missing[0]!r} is not one of the synthetic generator's users: the run's "
            "data is not the synthetic data its config describes"
        )
    return truth.membership[[index[v] for v in personal_values]]
