"""Top-k items for users of a finished run, from its catalogue alone (no data needed).

A user's candidates are every item of the run's catalogue (every item id the run's vocabulary
knows) but those the user interacted with in training (any label). Each user's row (its last
training row: its personal, user and context fields, `serving.catalogue`) is paired with every
item's fields, and the run's model scores that (1 x all items) matrix in one vectorised pass
(`Recommender.scores`), with the task's prediction (a probability, a rating or a ranking
score). The top k are ranked by score, ties by the item's index (its raw
id's place in the vocabulary), as `evaluation.aggregation.top_k` ranks.

`Recommender` is the reusable part; `read_user_ids` reads a batch file of user ids.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gprec.errors import ConfigError, DataError
from gprec.evaluation.aggregation import top_k
from gprec.serving.catalogue import Catalogue, catalogue_of

MAX_ROWS = 65536  # rows in one forward pass: LoadedRun.predict's default batch
USERS_PER_BLOCK = 256  # users whose top k are taken at once


@dataclass
class Recommendation:
    """One user's top k: raw item ids and their scores, best first."""

    user: str
    items: list[str]
    scores: list[float]
    excluded: int  # training items left out
    candidates: int  # items the list was chosen from

    def records(self) -> list[dict]:
        return [
            {"user": self.user, "rank": r + 1, "item": item, "score": score}
            for r, (item, score) in enumerate(zip(self.items, self.scores, strict=True))
        ]

    def to_dict(self) -> dict:
        return {
            "user": self.user,
            "items": [{k: v for k, v in r.items() if k != "user"} for r in self.records()],
            "excluded_training_items": self.excluded,
            "candidates": self.candidates,
        }


class Recommender:
    """A loaded run (`load_run`) and its catalogue, ready to rank its items for its users."""

    def __init__(self, run, catalogue: Catalogue, max_rows: int = MAX_ROWS):
        if catalogue.user_col is None or catalogue.item_col is None:
            raise ConfigError(
                f"{run.path}: recommending needs a user id field (role personal) and an item "
                "field in the run's data; it has "
                + ("no personal field" if catalogue.user_col is None else "no item field")
            )
        if catalogue.n_items == 0:
            raise ConfigError(f"{run.path}: the run's item catalogue is empty")
        self.run, self.catalogue, self.max_rows = run, catalogue, max_rows
        self.user_key = run.fields[catalogue.user_col].name
        self.item_key = run.fields[catalogue.item_col].name
        self.user_ids = list(run.vocab.values[self.user_key])  # code c has id user_ids[c - 1]
        self.item_ids = np.array(run.vocab.values[self.item_key], dtype=object)
        self._code = {u: c for c, u in enumerate(self.user_ids, start=1)}
        self._known = catalogue.known_users()
        self._template: np.ndarray | None = None  # every item's fields, user fields 0

    @classmethod
    def open(cls, run_dir: str | Path, rebuild_catalogue: bool = False) -> Recommender:
        from gprec.training.load import load_run

        run = load_run(run_dir)
        return cls(run, catalogue_of(run, rebuild_catalogue))

    def item_features(self, items: Sequence[str]) -> dict[str, list[str]]:
        """The other item fields' raw values (e.g. genres, year) of raw item ids, for display;
        "?" where the run has none."""
        cat, vocab = self.catalogue, self.run.vocab.values
        position = {v: c for c, v in enumerate(vocab[self.item_key], start=1)}
        codes = np.array([position.get(str(i), 0) for i in items], dtype=np.int64)
        out = {}
        for j, col in enumerate(cat.item_cols):
            if col == cat.item_col:
                continue
            name = self.run.fields[col].name
            values = cat.item_features[codes, j]
            out[name] = [vocab[name][v - 1] if v > 0 else "?" for v in values]
        return out

    # -- users ------------------------------------------------------------------------------

    def user_code(self, user: str) -> int:
        """The code of raw user id `user`; one `ConfigError` line naming it when the run's
        training data has no such user."""
        return int(self.user_codes([user])[0])

    def user_codes(self, users: Sequence[str], source: str | None = None) -> np.ndarray:
        """Codes of raw user ids; one `ConfigError` line naming the first unknown one."""
        codes = np.array([self._code.get(str(u), 0) for u in users], dtype=np.int64)
        unknown = np.flatnonzero(~self._known[codes])
        if len(unknown):
            first = str(users[unknown[0]])
            where = f"{source}: " if source else ""
            more = (
                f" ({len(unknown):,d} of {len(users):,d} ids are unknown)"
                if len(unknown) > 1
                else ""
            )
            raise ConfigError(
                f"{where}unknown user {first!r}: not a user of the run's training data "
                f"({len(self.user_ids):,d} users, field {self.user_key}){more}"
            )
        return codes

    # -- scoring ----------------------------------------------------------------------------

    def scores(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32: the task's prediction of every catalogue item for
        every user (code) in `users`; column i is item code i + 1.

        Each user's (1 x all items) matrix is one forward pass (`max_rows` rows at most, the
        default batch of `LoadedRun.predict`): a user's scores are then the same numbers
        whichever users are asked with it (a float32 matrix product's rounding can depend on
        how many rows it multiplies), and equal to `run.predict` of the same rows. Per user
        is also the fastest on CPU: a block of users' rows does not fit in cache."""
        users = np.asarray(users, dtype=np.int64)
        cat = self.catalogue
        out = np.empty((len(users), cat.n_items), dtype=np.float32)
        if self._template is None:
            self._template = cat.rows_for(np.zeros(1, np.int64), cat.items())
        user_cols = np.setdiff1d(np.arange(len(cat.fields)), cat.item_cols)
        for r, u in enumerate(users):
            X = self._template.copy()
            X[:, user_cols] = cat.user_rows[u, user_cols]
            out[r] = self.run.predict(X, batch_size=self.max_rows)
        return out

    def top_k(
        self, users: np.ndarray, k: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Item codes (len(users), min(k, n_items)), -1 where fewer candidates remain, and
        their scores (NaN there), best first."""
        if k < 1:
            raise ConfigError(f"k must be at least 1, not {k}")
        users = np.asarray(users, dtype=np.int64)
        k = min(k, self.catalogue.n_items)  # a list never holds more than the catalogue
        items = np.full((len(users), k), -1, dtype=np.int64)
        values = np.full((len(users), k), np.nan, dtype=np.float32)
        for start in range(0, len(users), USERS_PER_BLOCK):
            chunk = users[start : start + USERS_PER_BLOCK]
            s = self.scores(chunk)
            exclude = self.catalogue.seen_mask(chunk) if exclude_seen else None
            order = np.atleast_2d(top_k(s, k, exclude=exclude))[:, :k]
            ok = order >= 0
            picked = np.take_along_axis(s, np.maximum(order, 0), axis=1)
            items[start : start + len(chunk)] = np.where(ok, order + 1, -1)
            values[start : start + len(chunk)] = np.where(ok, picked, np.nan)
        return items, values

    def recommend(
        self, users: Sequence[str], k: int = 10, source: str | None = None
    ) -> list[Recommendation]:
        """Each raw user id's top k (unknown ids: one `ConfigError` naming the first)."""
        if k < 1:
            raise ConfigError(f"k must be at least 1, not {k}")
        codes = self.user_codes(users, source)
        items, values = self.top_k(codes, k)
        seen = np.diff(self.catalogue.seen_indptr)[codes]
        out = []
        for u, code_items, code_scores, n_seen in zip(users, items, values, seen, strict=True):
            keep = code_items > 0
            out.append(
                Recommendation(
                    user=str(u),
                    items=[str(i) for i in self.item_ids[code_items[keep] - 1]],
                    scores=[float(s) for s in code_scores[keep]],
                    excluded=int(n_seen),
                    candidates=self.catalogue.n_items - int(n_seen),
                )
            )
        return out


def read_user_ids(path: str | Path, columns: Sequence[str] = ("user_id",)) -> list[str]:
    """User ids from a file: a CSV whose header names one of `columns` (the first found, e.g.
    the run's user field or `user_id`), or else one id per line (blank lines skipped). One
    `DataError` line when it cannot be read or holds no id."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    if not path.is_file():
        raise DataError("not a file", path=path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", path=path) from None
    header = [h.strip() for h in next(csv.reader(lines[:1]), [])] if lines else []
    column = next((c for c in columns if c in header), None)
    if column is not None:
        where = header.index(column)
        ids = []
        for number, row in enumerate(csv.reader(lines[1:]), start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"expected {len(header)} columns as in the header, found {len(row)}",
                    path=path,
                    line=number,
                )
            ids.append(row[where].strip())
    else:
        ids = [line.strip() for line in lines if line.strip()]
    if not ids:
        raise DataError("no user ids", path=path)
    return ids
