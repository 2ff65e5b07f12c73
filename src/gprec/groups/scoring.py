"""Scoring groups with a per-user model: from the group's profile, or by aggregating members.

- `profile`: the group's user-side representation is the mean of its members' (`h_g =
  mean_m h_u(m)`), read by the model's own item side and head (`forward_from_user`). Models
  that expose `user_representation` / `forward_from_user` support it (DMTL); the group is then
  scored by one forward pass, like a user.
- `average`, `least_misery`, `most_pleasure`, `borda`: every member scores the candidates and
  `gprec.evaluation.aggregation.aggregate` combines them; works with any model.

Everything is batched: member rows of many cases go through the model at once, in chunks that
bound memory; no Python loop over groups, members or items.
"""

from __future__ import annotations

import numpy as np
import torch

from gprec.errors import ConfigError
from gprec.evaluation.aggregation import AGGREGATIONS, aggregate
from gprec.groups.data import GroupTables

METHODS: tuple[str, ...] = ("profile", *AGGREGATIONS)
CHUNK = 1 << 18  # (row, candidate) pairs per forward pass when scoring


def supports_profile(model: torch.nn.Module) -> bool:
    return hasattr(model, "user_representation") and hasattr(model, "forward_from_user")


def check_method(model: torch.nn.Module, method: str, key: str = "train.score") -> None:
    if method not in METHODS:
        raise ConfigError(f"{key}: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "profile" and not supports_profile(model):
        raise ConfigError(
            f"{key}: profile scoring needs a model with a user-side representation (dmtl); "
            f"{type(model).__name__} has none: use an aggregation "
            f"({', '.join(AGGREGATIONS)})"
        )


def group_profile(model: torch.nn.Module, tables: GroupTables, groups: np.ndarray) -> torch.Tensor:
    """`h_g` `(len(groups), width)`: the mean of the members' `h_u` (0 for a memberless group)."""
    users, case = tables.members(groups)
    h_u = model.user_representation(tables.user_x[torch.from_numpy(users)])
    index = torch.from_numpy(case)
    h = torch.zeros(len(groups), h_u.shape[1], dtype=h_u.dtype).index_add_(0, index, h_u)
    sizes = torch.bincount(index, minlength=len(groups)).clamp(min=1)
    return h / sizes.unsqueeze(1).to(h.dtype)


def item_rows(tables: GroupTables, items, groups=None) -> torch.Tensor:
    """Rows holding only the item (and the group label): what `forward_from_user` reads."""
    items = torch.as_tensor(items, dtype=torch.long)
    x = torch.zeros(len(items), len(tables.fields), dtype=torch.long)
    x[:, tables.item_col] = items + 1
    if tables.group_col is not None and groups is not None:
        x[:, tables.group_col] = torch.as_tensor(groups, dtype=torch.long) + 1
    return x


class GroupScorer:
    """Scores of (group, item) pairs by one method; `offset` is added to every output (the
    regression task's training mean; 0 for implicit feedback, whose scores are logits)."""

    def __init__(self, model, tables: GroupTables, method: str, offset: float = 0.0):
        check_method(model, method)
        self.model, self.tables, self.method, self.offset = model, tables, method, offset

    @torch.no_grad()
    def _users(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """`(len(users), C)` scores of each user for its row of `items` `(len(users), C)`."""
        n, c = items.shape
        out = np.empty((n, c))
        step = max(1, CHUNK // max(c, 1))
        for a in range(0, n, step):
            u, it = users[a : a + step], items[a : a + step]
            x = self.tables.rows(np.repeat(u, c), it.reshape(-1))
            out[a : a + step] = self.model(x).logit.double().reshape(len(u), c).numpy()
        return out + self.offset

    @torch.no_grad()
    def cases(self, groups: np.ndarray, candidates: np.ndarray, mask=None) -> np.ndarray:
        """`(n, C)` scores of each group `groups[k]` for its candidates `candidates[k]`.

        `mask` `(n, C)` (True: a real candidate) marks padding, which must not change the
        real candidates' scores: Borda ranks a member's scores over the row's columns, so
        padded columns get the member score -inf (they tie below every real candidate and
        add the same points to each). Their own output is meaningless: mask it out."""
        groups = np.asarray(groups, np.int64)
        candidates = np.array(candidates, np.int64)  # a writable copy: torch reads it
        n, c = candidates.shape
        pad = None if mask is None else ~np.asarray(mask, bool)
        if pad is not None and pad.shape != (n, c):
            raise ValueError(f"mask shape {pad.shape} differs from candidates {(n, c)}")
        out = np.empty((n, c))
        step = max(1, CHUNK // max(c, 1))
        for a in range(0, n, step):
            g, cand = groups[a : a + step], candidates[a : a + step]
            if self.method == "profile":
                h = group_profile(self.model, self.tables, g).repeat_interleave(c, dim=0)
                y = self.model.forward_from_user(h, item_rows(self.tables, cand.reshape(-1)))
                out[a : a + step] = y.logit.double().reshape(len(g), c).numpy() + self.offset
            else:
                users, case = self.tables.members(g)
                member = self._users(users, cand[case])
                if pad is not None:
                    member[pad[a : a + step][case]] = -np.inf
                out[a : a + step] = aggregate(member, self.method, case, len(g))
        return out

    @torch.no_grad()
    def user_matrix(self, users: np.ndarray | None = None) -> np.ndarray:
        """`(n_users, n_items)` every listed user's score of every item."""
        users = np.arange(self.tables.n_users) if users is None else np.asarray(users)
        items = np.broadcast_to(np.arange(self.tables.n_items), (len(users), self.tables.n_items))
        return self._users(users, items)

    def group_matrix(self, groups: np.ndarray | None = None, exclude=None) -> np.ndarray:
        """`(n_groups, n_items)` every listed group's score of every item. `exclude`
        `(n_groups, n_items)` (the group's training items) are no candidates: as padding in
        `cases`, they enter no member's Borda points (their own scores are meaningless)."""
        groups = np.arange(self.tables.n_groups) if groups is None else np.asarray(groups)
        items = np.broadcast_to(np.arange(self.tables.n_items), (len(groups), self.tables.n_items))
        if self.method == "profile":
            return self.cases(groups, items)
        users, case = self.tables.members(groups)
        distinct, back = np.unique(users, return_inverse=True)
        member = self.user_matrix(distinct)[back]
        if exclude is not None:
            member[np.asarray(exclude, bool)[case]] = -np.inf
        return aggregate(member, self.method, case, len(groups))
