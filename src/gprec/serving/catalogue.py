"""What a run directory keeps so that its model can be used without its data (`catalogue.npz`):
the item catalogue, each training user's row, and the items each user met in training.

`run_training` writes it beside `vocab.json` (`write_catalogue(out_dir, data)`), from the
encoded training split. Everything in it is an index of the run's own encoding (the raw ids are
the vocabularies' values, `vocab.json`, not stored twice):

- the user key is the first personal field (a user id) and the item key the first item field,
  as the implicit task and the sliced evaluation take them;
- `item_features[c]`: the item fields' codes of item code `c`, from the item's last training
  row (row 0, the unseen item, is all 0). Every item the vocabulary knows is in the catalogue;
  an item that has an id but no training row (a group dataset's item met only in negative
  lists) keeps 0 in its other item fields, as `ImplicitTask.fit` does;
- `user_rows[c]`: user code `c`'s last training row, every field but the item fields (those
  are 0): the personal and user fields, a KMeans `group` field, and any context fields. A
  user's features are those of its last training row (constant per user in MovieLens; in a
  generic dataset whose user fields vary by row, the latest in the file);
- `seen_indptr`, `seen_items`: per user code, the distinct item codes of its training rows
  (any label), sorted: a CSR matrix of users x items.

Sizes for a dataset shaped like ML-100K (943 users, 1,682 items, 80,000 training rows): about
150 kB compressed (measured on generated data of that shape; 390 kB as raw int32). A run
trained before this file existed has none: `load_catalogue` says so, and `rebuild_catalogue`
builds it from the run's data through its own config (the same split), refusing when that
data no longer encodes as it did.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.io import write_bytes_atomic

CATALOGUE = "catalogue.npz"
FORMAT = 1


def key_columns(fields: list[EncodedField]) -> tuple[int | None, int | None]:
    """The user key (first personal field) and item key (first item field) columns; None for
    a side the data lacks."""
    users = [i for i, f in enumerate(fields) if f.role == Role.PERSONAL]
    items = [i for i, f in enumerate(fields) if f.role == Role.ITEM]
    return (users[0] if users else None), (items[0] if items else None)


@dataclass
class Catalogue:
    """A run's users and items as encoded rows (see the module docstring)."""

    fields: list[EncodedField]
    user_col: int | None
    item_col: int | None
    item_cols: np.ndarray  # every item field's column, in field order
    item_features: np.ndarray | None  # (item cardinality, len(item_cols)) int64
    user_rows: np.ndarray | None  # (user cardinality, n_fields) int64, item columns 0
    seen_indptr: np.ndarray | None  # (user cardinality + 1,)
    seen_items: np.ndarray | None

    @property
    def n_items(self) -> int:
        """Items in the catalogue: every item code but the unseen 0."""
        return 0 if self.item_features is None else len(self.item_features) - 1

    def items(self) -> np.ndarray:
        """The catalogue's item codes, 1..n_items."""
        return np.arange(1, self.n_items + 1)

    def known_users(self) -> np.ndarray:
        """(user cardinality,) bool: the user codes with a training row."""
        return np.diff(self.seen_indptr) > 0

    def seen(self, user: int) -> np.ndarray:
        """The sorted item codes of `user`'s training rows."""
        return self.seen_items[self.seen_indptr[user] : self.seen_indptr[user + 1]]

    def seen_mask(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) bool: item code i + 1 met by the user in training."""
        users = np.asarray(users, dtype=np.int64)
        counts = self.seen_indptr[users + 1] - self.seen_indptr[users]
        rows = np.repeat(np.arange(len(users)), counts)
        starts = np.repeat(self.seen_indptr[users], counts)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        mask = np.zeros((len(users), self.n_items), dtype=bool)
        mask[rows, self.seen_items[starts + within] - 1] = True
        return mask

    def rows_for(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Encoded rows (len(users) * len(items), n_fields): every user's row with every item's
        fields, users outer and items inner (row u * len(items) + i)."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        rows = np.repeat(self.user_rows[users], len(items), axis=0)
        rows[:, self.item_cols] = np.tile(self.item_features[items], (len(users), 1))
        return rows


def build_catalogue(X_train: np.ndarray, fields: list[EncodedField]) -> Catalogue:
    """The catalogue of encoded training rows `X_train` (n, n_fields) with `fields`."""
    return build_catalogue_blocks([X_train], fields)


def build_catalogue_blocks(blocks: Iterable[np.ndarray], fields: list[EncodedField]) -> Catalogue:
    """The catalogue of the training rows given as consecutive blocks, in row order (a split
    too large for memory, read block by block): the same as `build_catalogue` of the rows
    stacked. Beyond one block it holds the catalogue itself: its users x items matrix of the
    pairs met in training is kept sparse (5 bytes a pair) while blocks are added."""
    user_col, item_col = key_columns(fields)
    item_cols = np.array([i for i, f in enumerate(fields) if f.role == Role.ITEM], dtype=np.int64)
    item_features = user_rows = indptr = seen = None
    if item_col is not None:
        item_features = np.zeros((fields[item_col].cardinality, len(item_cols)), dtype=np.int64)
    if user_col is not None:
        user_rows = np.zeros((fields[user_col].cardinality, len(fields)), dtype=np.int64)
    seen_matrix = None  # users x items, True where the user met the item in training
    for block in blocks:
        X = np.asarray(block, dtype=np.int64)
        # A later block's last row of a code overwrites an earlier block's: the last row wins.
        if item_col is not None:
            codes = X[:, item_col]
            last = _last_rows(codes)
            item_features[codes[last]] = X[last][:, item_cols]
        if user_col is not None:
            codes = X[:, user_col]
            last = _last_rows(codes)
            user_rows[codes[last]] = X[last]
            if item_col is not None:
                shape = (fields[user_col].cardinality, fields[item_col].cardinality)
                met = scipy.sparse.csr_matrix(
                    (np.ones(len(codes), dtype=bool), (codes, X[:, item_col])), shape=shape
                )
                seen_matrix = met if seen_matrix is None else seen_matrix + met
    if item_col is not None:
        n = fields[item_col].cardinality
        item_features[:, list(item_cols).index(item_col)] = np.arange(n)
        item_features[0] = 0
    if user_col is not None:
        n = fields[user_col].cardinality
        user_rows[:, item_cols] = 0
        user_rows[0] = 0
        if item_col is not None:
            if seen_matrix is None:
                indptr, seen = np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
            else:
                seen_matrix.sum_duplicates()  # also sorts each user's items
                indptr = seen_matrix.indptr.astype(np.int64)
                seen = seen_matrix.indices.astype(np.int64)
    return Catalogue(fields, user_col, item_col, item_cols, item_features, user_rows, indptr, seen)


def _last_rows(codes: np.ndarray) -> np.ndarray:
    """The index of the last row of each distinct code (in row order)."""
    reversed_first = np.unique(codes[::-1], return_index=True)[1]
    return len(codes) - 1 - reversed_first


def catalogue_bytes(catalogue: Catalogue) -> bytes:
    """`catalogue` as the bytes of `catalogue.npz` (compressed, int32 codes)."""
    arrays = {
        "format": np.array(FORMAT),
        "field_names": np.array([f.name for f in catalogue.fields]),
        "field_cardinalities": np.array([f.cardinality for f in catalogue.fields]),
        "user_col": np.array(-1 if catalogue.user_col is None else catalogue.user_col),
        "item_col": np.array(-1 if catalogue.item_col is None else catalogue.item_col),
    }
    for name in ("item_features", "user_rows", "seen_indptr", "seen_items"):
        value = getattr(catalogue, name)
        if value is not None:
            arrays[name] = value.astype(np.int64 if name == "seen_indptr" else np.int32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def write_catalogue(out_dir: Path, data) -> Path | None:
    """Write `catalogue.npz` of an `EncodedDataset` into the run directory `out_dir`; nothing
    when the data has neither a user key nor an item key."""
    user_col, item_col = key_columns(data.fields)
    if user_col is None and item_col is None:
        return None
    path = Path(out_dir) / CATALOGUE
    # A dataset whose training split stays on disk hands it over in blocks (data.format
    # parquet-stream), so the catalogue is built without loading it.
    walk = getattr(data, "train_blocks", None)
    blocks = walk() if walk is not None else [data.X["train"]]
    write_bytes_atomic(path, catalogue_bytes(build_catalogue_blocks(blocks, data.fields)))
    return path


def load_catalogue(run) -> Catalogue:
    """The catalogue of a loaded run (`load_run`); one `ConfigError` line when it is missing
    (a run trained before gprec kept it), damaged or not this run's."""
    path = Path(run.path) / CATALOGUE
    if not path.is_file():
        raise ConfigError(
            f"{run.path}: {CATALOGUE} missing: the run was trained before gprec kept its item "
            "catalogue and its users' training items; train it again (gprec train --config "
            f"{Path(run.path) / 'config.yaml'} --out {run.path} --overwrite), or pass "
            "--rebuild-catalogue to build it from the run's data through its config"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        names = [str(n) for n in arrays["field_names"]]
        cards = [int(c) for c in arrays["field_cardinalities"]]
        fmt = int(arrays["format"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{path}: cannot be read ({first}); pass --rebuild-catalogue") from None
    ours = [(f.name, f.cardinality) for f in run.fields]
    if fmt != FORMAT or list(zip(names, cards, strict=False)) != ours or len(names) != len(ours):
        raise ConfigError(
            f"{path}: does not match the run's model (its fields or their sizes differ); pass "
            "--rebuild-catalogue"
        )
    user_col, item_col = key_columns(run.fields)
    cat = Catalogue(
        fields=list(run.fields),
        user_col=user_col,
        item_col=item_col,
        item_cols=np.array(
            [i for i, f in enumerate(run.fields) if f.role == Role.ITEM], dtype=np.int64
        ),
        item_features=_int64(arrays.get("item_features")),
        user_rows=_int64(arrays.get("user_rows")),
        seen_indptr=_int64(arrays.get("seen_indptr")),
        seen_items=_int64(arrays.get("seen_items")),
    )
    _check_shapes(cat, path)
    return cat


def _int64(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else a.astype(np.int64)


def _check_shapes(cat: Catalogue, path: Path) -> None:
    fields, problems = cat.fields, []
    if cat.item_col is not None and (
        cat.item_features is None
        or cat.item_features.shape != (fields[cat.item_col].cardinality, len(cat.item_cols))
    ):
        problems.append("item_features")
    if cat.user_col is not None:
        n = fields[cat.user_col].cardinality
        if cat.user_rows is None or cat.user_rows.shape != (n, len(fields)):
            problems.append("user_rows")
        if cat.item_col is not None and (
            cat.seen_indptr is None
            or cat.seen_items is None
            or cat.seen_indptr.shape != (n + 1,)
            or cat.seen_indptr[-1] != len(cat.seen_items)
        ):
            problems.append("seen items")
    if problems:
        raise ConfigError(f"{path}: {', '.join(problems)} damaged; pass --rebuild-catalogue")


def rebuild_catalogue(run) -> Catalogue:
    """Build a run's catalogue from its data, read through the run's own config (the same
    split, the cache when it is there), and write it into the run directory; refused when the
    data no longer encodes as it did."""
    from gprec.training.load import run_data  # serving is imported by training: kept lazy

    data = run_data(run, ", so its catalogue cannot be rebuilt from it; train the run again")
    write_catalogue(run.path, data)
    return load_catalogue(run)


def catalogue_of(run, rebuild: bool = False) -> Catalogue:
    """`load_catalogue(run)`, or `rebuild_catalogue(run)` when `rebuild` is set."""
    return rebuild_catalogue(run) if rebuild else load_catalogue(run)
