"""Groups for data without them: KMeans over the users' encoded features (the DMTL paper's
groups, 20 on MovieLens), added to the dataset as a user field `group`.

The clusters are fitted on the distinct user-feature rows of the training split (users with
identical features count once), each a one-hot vector of the user-role fields (not the id,
which would make every user its own group); then every row of every split gets the cluster of
its user features: `group` = cluster + 1 (KMeans assigns every row one, so index 0, the
"unseen" value every field reserves, does not occur). A model may read `group` like any user field (it is a
function of the user fields) or, as DMTL does, predict it.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError

GROUP_FIELD = "group"


def _one_hot(rows: np.ndarray, cards: list[int]) -> sparse.csr_matrix:
    """Rows of field indices as a sparse one-hot matrix (one block of columns per field)."""
    offsets = np.concatenate([[0], np.cumsum(cards)[:-1]])
    n, k = rows.shape
    cols = (rows + offsets).ravel()
    data = np.ones(n * k, dtype=np.float64)
    return sparse.csr_matrix((data, (np.repeat(np.arange(n), k), cols)), shape=(n, sum(cards)))


def add_kmeans_groups(
    X: dict[str, np.ndarray], fields: list[EncodedField], n_groups: int, seed: int
) -> tuple[dict[str, np.ndarray], list[EncodedField], dict]:
    """`X` and `fields` with the `group` column appended, and a summary of the clustering."""
    from sklearn.cluster import KMeans  # scikit-learn is heavy: only when groups are asked for

    if any(f.name == GROUP_FIELD for f in fields):
        raise ConfigError(f"data.user_groups: the data already has a field named '{GROUP_FIELD}'")
    cols = [i for i, f in enumerate(fields) if f.role == Role.USER]
    if not cols:
        raise ConfigError(
            "data.user_groups: KMeans needs user features (fields with role 'user'); this data "
            "has none"
        )
    cards = [fields[i].cardinality for i in cols]
    users = np.unique(X["train"][:, cols], axis=0)  # distinct user-feature rows of training
    if len(users) < n_groups:
        raise ConfigError(
            f"data.user_groups: {n_groups} groups, but the training split has only "
            f"{len(users)} distinct user-feature rows"
        )
    km = KMeans(n_clusters=n_groups, n_init=10, random_state=seed % 2**32)
    km.fit(_one_hot(users, cards))
    out = {
        s: np.concatenate([x, km.predict(_one_hot(x[:, cols], cards))[:, None] + 1], axis=1)
        for s, x in X.items()
    }
    sizes = np.bincount(out["train"][:, -1], minlength=n_groups + 1)[1:]
    summary = {"n_groups": n_groups, "train_rows_per_group": sizes.tolist()}
    return out, [*fields, EncodedField(GROUP_FIELD, Role.USER, n_groups + 1)], summary
