"""New raw rows into the encoded rows a run's model reads, exactly as training encoded its own.

A row is given by the run's raw field columns, named as the fields (`gprec.data` names them:
MovieLens `item_id, genres, year, user_id, age, gender, occupation, zip`; a generic dataset's
schema `fields:`). Values are matched as strings against the run's vocabularies
(`Vocabulary.encode`, what training used); a missing value matches as "" (what the generic
loader makes of an empty cell), and a value the vocabulary lacks gets the unseen index 0. The
KMeans `group` field of a run with `data.user_groups` is never an input: every row gets its
group from its encoded user fields with `assign_groups`, as training gave it.

What a caller must give (`RowEncoder.plan`):
- the user key (the first personal field, e.g. `user_id`), the item key (the first item field,
  e.g. `item_id`) and any context fields: these describe the interaction itself;
- the other user and item fields (MovieLens: `age`, `gender`, `occupation`, `zip`; `genres`,
  `year`) may be left out: they are then taken from the run's catalogue by the key (the user's
  or the item's last training row, `serving.catalogue`), so `user_id,item_id` is enough for a
  known user and item. A feature column that is given is encoded from the input instead (a new
  user's or item's features; the caller's values win). A key the run does not know has no
  stored features: its left-out feature fields get the unseen index too.

Why the run keeps the feature tables instead of asking for them: MovieLens' item fields are
derived by the loader (`genres` joins the genre flags, `year` is cut from the title), so a
caller holding `u.item` would have to redo that derivation to get the same strings; the
catalogue holds the very codes training used, about 150 kB for ML-100K.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from gprec.data.encode import UNSEEN
from gprec.data.schema import EncodedField, Role
from gprec.data.user_groups import GROUP_FIELD, assign_groups
from gprec.errors import DataError
from gprec.serving.catalogue import Catalogue, key_columns


@dataclass(frozen=True)
class InputPlan:
    """Where each raw field of a row comes from: the input's own column (`from_input`), or the
    catalogue row of a key (`joined`: field -> key field)."""

    from_input: tuple[str, ...]
    joined: dict[str, str] = field(default_factory=dict)


@dataclass
class EncodedRows:
    """Encoded rows `X` (n, n_fields of the model) and, per field read from the input, how many
    rows had a value unseen in training and the first such value."""

    X: np.ndarray
    unseen: dict[str, int]
    examples: dict[str, str]


class RowEncoder:
    """Raw rows (a polars DataFrame with the fields as columns) of a loaded run (`load_run`) to
    the encoded rows its model reads; `catalogue` (optional) supplies left-out feature fields."""

    def __init__(self, run, catalogue: Catalogue | None = None):
        self.run = run
        self.catalogue = catalogue
        fields = list(run.fields)
        self.groups = run.user_groups
        if self.groups is not None:
            if not fields or fields[-1].name != GROUP_FIELD:
                raise DataError(
                    f"{run.path}: the run has user_groups.json but no '{GROUP_FIELD}' field last"
                )
            fields = fields[:-1]
        self.raw_fields: list[EncodedField] = fields
        missing = [f.name for f in fields if f.name not in run.vocab.values]
        if missing:
            raise DataError(f"{run.path}: vocab.json has no vocabulary of field {missing[0]!r}")
        self._position = {f.name: i for i, f in enumerate(fields)}
        self.user_col, self.item_col = key_columns(fields)
        self.user_key = None if self.user_col is None else fields[self.user_col].name
        self.item_key = None if self.item_col is None else fields[self.item_col].name

    # -- what the input needs ---------------------------------------------------------------

    def joinable(self) -> dict[str, str]:
        """The fields that may be left out of the input: feature field -> the key that fetches
        it from the catalogue (none without a catalogue)."""
        out: dict[str, str] = {}
        cat = self.catalogue
        for i, f in enumerate(self.raw_fields):
            if i in (self.user_col, self.item_col):
                continue
            if (
                f.role in (Role.PERSONAL, Role.USER)
                and cat is not None
                and cat.user_rows is not None
            ):
                out[f.name] = self.user_key
            elif f.role == Role.ITEM and cat is not None and cat.item_features is not None:
                out[f.name] = self.item_key
        return out

    def required(self) -> list[str]:
        """The columns every input must have."""
        joinable = self.joinable()
        return [f.name for f in self.raw_fields if f.name not in joinable]

    def plan(self, columns: list[str], source: str = "the input") -> InputPlan:
        """Which fields `columns` gives and which come from the catalogue; one `DataError`
        naming every missing column otherwise."""
        have = set(columns)
        joinable = self.joinable()
        missing = [f.name for f in self.raw_fields if f.name not in have and f.name not in joinable]
        if missing:
            names = ", ".join(repr(m) for m in missing)
            plural = "columns" if len(missing) > 1 else "column"
            hint = self._missing_hint(missing, joinable)
            raise DataError(f"{source}: missing {plural} {names}{hint}")
        return InputPlan(
            from_input=tuple(f.name for f in self.raw_fields if f.name in have),
            joined={n: k for n, k in joinable.items() if n not in have},
        )

    def _missing_hint(self, missing: list[str], joinable: dict[str, str]) -> str:
        keys = [k for k in (self.user_key, self.item_key) if k is not None]
        required = self.required()
        hint = f" (the run needs {', '.join(required)}"
        if joinable:
            hint += f"; {', '.join(joinable)} may be left out: they come from the run by {' and '.join(keys)}"
        elif self.catalogue is None and any(m not in keys for m in missing):
            hint += (
                "; the run has no catalogue.npz (trained before gprec kept one), so its user "
                "and item features cannot be looked up by id: give them, or pass "
                "--rebuild-catalogue"
            )
        return hint + ")"

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, frame: pl.DataFrame, plan: InputPlan | None = None) -> EncodedRows:
        """`frame`'s rows encoded for the model (its fields in the model's column order)."""
        plan = plan or self.plan(frame.columns)
        n = frame.height
        X = np.zeros((n, len(self.raw_fields)), dtype=np.int64)
        unseen, examples = {}, {}
        given = [f for f in self.raw_fields if f.name in plan.from_input]
        if given:
            # The training pipeline's own encoder; a missing value is "" as the generic loader
            # makes it (MovieLens has none: "" is then unseen, as a null would be).
            values = frame.select(pl.col(f.name).cast(pl.String).fill_null("") for f in given)
            codes = self.run.vocab.encode(values, given)
            for j, f in enumerate(given):
                X[:, self._position[f.name]] = codes[:, j]
                bad = codes[:, j] == UNSEEN
                count = int(bad.sum())
                if count:
                    unseen[f.name] = count
                    examples[f.name] = values[f.name][int(np.argmax(bad))]
        positions = self._position
        for name, key in plan.joined.items():
            keys = X[:, positions[key]]
            if key == self.user_key:
                X[:, positions[name]] = self.catalogue.user_rows[keys, positions[name]]
            else:
                column = int(np.flatnonzero(self.catalogue.item_cols == positions[name])[0])
                X[:, positions[name]] = self.catalogue.item_features[keys, column]
        if self.groups is not None:
            X = np.concatenate([X, assign_groups(X, self.groups)[:, None]], axis=1)
        return EncodedRows(X, unseen, examples)
