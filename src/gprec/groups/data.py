"""The tensors a group recommender trains on, built from a `GroupData`, and its split.

Rows follow gprec's encoded layout (one column per field, code 0 = unseen), so every
registered CTR model trains on them unchanged: field `user` (the user code + 1), one field per
user feature (its value's code + 1; 0 for a user without features), `group` only for models
that classify groups (DMTL; a label, never an input), and `item` (the item code + 1).

Why a member-level layout: members shared between groups are what carries one group's choices
to another (on Mafengwo 74% of the held-out group items were chosen by a group sharing a
member), so a group is represented through its members, never as an opaque id.

The split, per seed. Implicit data in the AGREE layout keeps the dataset's own test file (one
held-out item per group with its published negatives, cleaned by the strict protocol); the
validation cases are carved from the group training file (`valid_ratio` of its rows, at most
one per group and only from groups keeping another row), each ranked against `eval_negatives`
items the group never chose in the training file, drawn with the seed. Explicit data without
a split (ITM-Rec) splits the group ratings at random into train / valid / test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from gprec.baselines.group_heuristics import sampled_candidates
from gprec.data.groups import GROUP, ITEM, RATING, USER, GroupData
from gprec.data.schema import EncodedField, Role
from gprec.errors import DataError

USER_FIELD, GROUP_FIELD, ITEM_FIELD = "user", "group", "item"


def csr(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`(offsets, values sorted by key)`: the values of key k are `out[offsets[k]:offsets[k+1]]`."""
    order = np.argsort(keys, kind="stable")
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=offsets[1:])
    return offsets, values[order]


@dataclass
class GroupTables:
    """Encoded fields, each user's row, memberships (CSR) and the catalogue size."""

    fields: list[EncodedField]
    user_x: torch.Tensor  # (n_users, n_fields): user code + 1, feature codes, group 0, item 0
    item_col: int
    group_col: int | None  # None when the model does not classify groups
    member_offsets: np.ndarray  # members of group g: member_users[off[g]:off[g + 1]]
    member_users: np.ndarray
    user_group_offsets: np.ndarray  # groups of user u: user_group_list[off[u]:off[u + 1]]
    user_group_list: np.ndarray
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.user_x)

    @property
    def n_groups(self) -> int:
        return len(self.member_offsets) - 1

    def members(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(users, case)`: every member of each listed group, and the position in `groups`
        of the group each member row belongs to (groups may repeat)."""
        groups = np.asarray(groups, np.int64)
        starts, stops = self.member_offsets[groups], self.member_offsets[groups + 1]
        sizes = stops - starts
        case = np.repeat(np.arange(len(groups)), sizes)
        within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return self.member_users[starts[case] + within], case

    def rows(self, users, items, groups=None) -> torch.Tensor:
        """Encoded rows of (user, item) pairs; `groups` (codes, -1 none) fills the group
        label where the model has one."""
        x = self.user_x[torch.as_tensor(users, dtype=torch.long)].clone()
        x[:, self.item_col] = torch.as_tensor(items, dtype=torch.long) + 1
        if self.group_col is not None and groups is not None:
            x[:, self.group_col] = torch.as_tensor(groups, dtype=torch.long) + 1
        return x


def encode_tables(data: GroupData, group_field: bool) -> GroupTables:
    """Fields and per-user rows of `data`; `group_field` adds the group label column."""
    names = [USER_FIELD]
    columns = [np.arange(data.n_users, dtype=np.int64) + 1]
    cards = [data.n_users + 1]
    if data.user_features is not None:
        feats = data.user_features
        for name in feats.columns:
            if name == USER:
                continue
            values = feats[name].cast(pl.String)
            vocab = values.drop_nulls().unique().sort()
            codes = np.zeros(data.n_users, np.int64)
            known = values.is_not_null().to_numpy()
            index = values.replace_strict(vocab, pl.int_range(len(vocab), eager=True), default=None)
            codes[feats[USER].to_numpy()[known]] = index.to_numpy()[known].astype(np.int64) + 1
            names.append(f"user_{name}")
            columns.append(codes)
            cards.append(len(vocab) + 1)
    roles = [Role.USER] * len(names)
    group_col = None
    if group_field:
        group_col = len(names)
        names.append(GROUP_FIELD)
        roles.append(Role.USER)
        columns.append(np.zeros(data.n_users, np.int64))
        cards.append(data.n_groups + 1)
    item_col = len(names)
    names.append(ITEM_FIELD)
    roles.append(Role.ITEM)
    columns.append(np.zeros(data.n_users, np.int64))
    cards.append(data.n_items + 1)
    fields = [EncodedField(n, r, c) for n, r, c in zip(names, roles, cards, strict=True)]
    m_off, m_users = data.group_members()
    u_off, u_groups = data.user_groups()
    return GroupTables(
        fields=fields,
        user_x=torch.from_numpy(np.stack(columns, axis=1)),
        item_col=item_col,
        group_col=group_col,
        member_offsets=m_off,
        member_users=m_users,
        user_group_offsets=u_off,
        user_group_list=u_groups,
        n_items=data.n_items,
    )


@dataclass
class Cases:
    """Group evaluation cases: `group[k]` with target item `item[k]`; explicit data has a
    `rating`, sampled-ranking data per-case `negatives` with their `mask` (padding False)."""

    group: np.ndarray
    item: np.ndarray
    rating: np.ndarray | None = None
    negatives: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.group)

    def candidates(self) -> np.ndarray:
        """(n, 1 + m): the target item first, then its negatives (padding repeats item 0)."""
        if self.negatives is None:
            return self.item[:, None]
        return np.concatenate([self.item[:, None], self.negatives], axis=1)

    def candidate_mask(self) -> np.ndarray | None:
        """(n, 1 + m) bool, `candidates()`' real entries (the target, then `mask`); None: all."""
        if self.mask is None:
            return None
        return np.concatenate([np.ones((len(self), 1), bool), self.mask], axis=1)


@dataclass
class GroupSplit:
    """Training group rows (and their ratings), validation and test cases, and per group the
    items of the training file (train + valid rows: never recommended, never negatives)."""

    train_group: np.ndarray
    train_item: np.ndarray
    train_rating: np.ndarray | None
    valid: Cases
    test: Cases
    seen: np.ndarray  # (n_groups, n_items) bool


def _sample_negatives(seen: np.ndarray, groups: np.ndarray, n: int, rng) -> np.ndarray:
    """`n` distinct items per case that its group never chose in the training file: a random
    key per (case, item), the chosen items pushed last, the first n taken."""
    keys = rng.random((len(groups), seen.shape[1]))
    keys[seen[groups]] = np.inf
    available = (~seen[groups]).sum(axis=1).min(initial=seen.shape[1])
    if available < n:
        raise DataError(
            f"data.eval_negatives is {n}, but a group has only {available} items it never chose"
        )
    return np.argsort(keys, axis=1)[:, :n]


def split_groups(
    data: GroupData, seed: int, valid_ratio: float, test_ratio: float, eval_negatives: int
) -> GroupSplit:
    """The seed's split of the group interactions (see the module docstring)."""
    rng = np.random.default_rng(seed)
    gi = data.group_interactions
    group = gi[GROUP].to_numpy().astype(np.int64)
    item = gi[ITEM].to_numpy().astype(np.int64)
    explicit = data.feedback == "explicit"
    rating = gi[RATING].to_numpy().astype(np.float64) if explicit else None
    n = len(group)
    if data.group_test is not None:
        # Valid: at most one row per group, from groups keeping at least one training row.
        counts = np.bincount(group, minlength=data.n_groups)
        order = rng.permutation(n)
        first = np.zeros(n, bool)
        _, where = np.unique(group[order], return_index=True)
        first[order[where]] = True
        eligible = np.flatnonzero(first & (counts[group] >= 2))
        n_valid = min(len(eligible), round(valid_ratio * n))
        if n_valid == 0:
            raise DataError(
                f"{data.name}: data.valid_ratio {valid_ratio} of {n} group training rows "
                f"({len(eligible)} groups with two or more) leaves no validation case to choose "
                "the epoch on: raise data.valid_ratio"
            )
        valid_rows = rng.choice(eligible, n_valid, replace=False)
        test = None
    else:
        if not 0 < test_ratio < 1:
            raise DataError(
                f"{data.name}: no test split in the data: set data.test_ratio in (0, 1)"
            )
        order = rng.permutation(n)
        n_test = round(test_ratio * n)
        n_valid = round(valid_ratio * n)
        if n_test == 0 or n_valid == 0:
            raise DataError(
                f"{data.name}: data.test_ratio {test_ratio} and data.valid_ratio {valid_ratio} "
                f"of {n} group rows leave {n_test} test and {n_valid} validation rows: each "
                "needs at least one"
            )
        test_rows = order[:n_test]
        valid_rows = order[n_test : n_test + n_valid]
        test = Cases(
            group[test_rows], item[test_rows], None if rating is None else rating[test_rows]
        )
    seen = np.zeros((data.n_groups, data.n_items), bool)
    if test is None:
        seen[group, item] = True
    else:
        keep = np.ones(n, bool)
        keep[test_rows] = False
        seen[group[keep], item[keep]] = True
    in_valid = np.zeros(n, bool)
    in_valid[valid_rows] = True
    valid = Cases(group[in_valid], item[in_valid], None if rating is None else rating[in_valid])
    train = ~in_valid
    if test is not None:
        train[test_rows] = False
    if not explicit:
        valid.negatives = _sample_negatives(seen, valid.group, eval_negatives, rng)
        valid.mask = np.ones(valid.negatives.shape, bool)
        entity, held_out, negatives, mask = sampled_candidates(data.group_test)
        test = Cases(entity, held_out, negatives=negatives, mask=mask)
        leaked = int(seen[test.group, test.item].sum())
        if leaked:  # scored on what it was trained on (the agree source refuses it too)
            raise DataError(
                f"{data.name}: {leaked} held-out (group, item) pairs of the test file are also "
                "rows of the group training file: the split leaks"
            )
    return GroupSplit(
        train_group=group[train],
        train_item=item[train],
        train_rating=None if rating is None else rating[train],
        valid=valid,
        test=test,
        seen=seen,
    )


def user_rows(data: GroupData) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The members' own training interactions: `(user, item, rating or None)`."""
    ui = data.user_interactions
    rating = ui[RATING].to_numpy().astype(np.float64) if data.feedback == "explicit" else None
    return ui[USER].to_numpy().astype(np.int64), ui[ITEM].to_numpy().astype(np.int64), rating
