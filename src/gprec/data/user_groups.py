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


def assign_groups(rows: np.ndarray, spec: dict) -> np.ndarray:
    """The `group` value (cluster + 1) of encoded rows with every field of the dataset before
    `group` was added, from a saved `spec` (`add_kmeans_groups`'s): the nearest centroid of
    each row's one-hot user fields, what KMeans.predict computes. New rows (prediction,
    serving) get their groups this way without scikit-learn's model object."""
    cols = spec["user_columns"]
    onehot = _one_hot(np.asarray(rows)[:, cols], spec["cardinalities"])
    centroids = np.asarray(spec["centroids"])
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every c
    d = -2 * (onehot @ centroids.T) + (centroids**2).sum(1)
    return np.asarray(d).argmin(1) + 1


def add_kmeans_groups(
    X: dict[str, np.ndarray], fields: list[EncodedField], n_groups: int, seed: int
) -> tuple[dict[str, np.ndarray], list[EncodedField], dict]:
    """`X` and `fields` with the `group` column appended, and the spec that reproduces it
    (`assign_groups`): the user columns, their cardinalities and the centroids."""
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
    spec = {
        "field": GROUP_FIELD,
        "n_groups": n_groups,
        "user_columns": cols,
        "user_fields": [fields[i].name for i in cols],
        "cardinalities": cards,
        "centroids": km.cluster_centers_.tolist(),
        "train_rows_per_group": sizes.tolist(),
    }
    return out, [*fields, EncodedField(GROUP_FIELD, Role.USER, n_groups + 1)], spec
