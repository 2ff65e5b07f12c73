"""`data.source: agree`: a group-recommendation dataset in the AGREE/ConsRec layout (Mafengwo and
every benchmark that copies it) as a gprec dataset, so `gprec train` learns the group task.

Rows are the group-item interactions: fields `group_id` (the group, role personal: it plays the
user) and `item_id` (item), every row a positive (`data.target: positive`, `train.task:
implicit`). The split is the dataset's own (`data.split: file`): its test file is the test
split, and validation is carved from the training rows (`data.split_ratios`), so epochs are
chosen on validation, never on test. Each test row keeps its published negatives, cleaned of the
held-out item and repeats (`groups.clean_negatives`); the implicit task ranks the held-out item
against exactly those, ties counting against it (the strict protocol), instead of sampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from gprec.data.encode import SOURCE_ROW
from gprec.data.groups import GROUP, ITEM, clean_negatives, load_agree
from gprec.data.schema import FieldSpec, RawTable, Role
from gprec.errors import DataError

FIELDS = [FieldSpec("group_id", Role.PERSONAL), FieldSpec("item_id", Role.ITEM)]


def load_agree_raw(path: Path) -> RawTable:
    data = load_agree(path)
    if data.group_test is None:
        raise DataError("no group test file: data.split: file needs the held-out rows", path=path)
    train = data.group_interactions.select(GROUP, ITEM)
    test = data.group_test
    # A held-out pair that is also a training row would be scored on what it was trained on.
    width = data.n_items
    train_keys = train[GROUP].to_numpy() * width + train[ITEM].to_numpy()
    leaked = int(np.isin(test.entity * width + test.held_out, train_keys).sum())
    if leaked:
        raise DataError(
            f"{leaked} held-out (group, item) pairs are also rows of groupRatingTrain.txt: the "
            "split leaks",
            path=Path(path) / "groupRatingTest.txt",
        )
    table = pl.concat(
        [
            train.rename({GROUP: "group_id", ITEM: "item_id"}),
            pl.DataFrame({"group_id": test.entity, "item_id": test.held_out}).cast(pl.Int64),
        ],
        how="vertical_relaxed",
    )
    n_train, n_test = train.height, test.n_cases
    table = table.with_columns(
        pl.lit(1.0).alias(RawTable.TARGET),
        pl.arange(1, n_train + n_test + 1, eager=True).alias(SOURCE_ROW),
    )
    clean = clean_negatives(test)
    split = np.array(["train"] * n_train + ["test"] * n_test)
    return RawTable(
        table,
        FIELDS,
        source_files=list(data.source_files),
        split=split,
        test_negatives=(clean.offsets, clean.items.astype(np.int64)),
        # Every item the folder knows (its codes are 0..n-1): an item met only in a negative
        # list gets its own index, trained as a sampled negative as AGREE/ConsRec do, instead
        # of all of them sharing the untrained "unseen" index.
        catalogue={"item_id": [str(i) for i in range(data.n_items)]},
    )


def encode_negatives(offsets: np.ndarray, items: np.ndarray, item_vocab: list[str]) -> np.ndarray:
    """The test rows' negative lists as item indices `(n_test, longest)`, padded with -1; items
    never seen in training get the unseen index 0, as any field value does."""
    codes = (
        pl.Series(items)
        .cast(pl.String)
        .replace_strict(item_vocab, range(1, len(item_vocab) + 1), default=0, return_dtype=pl.Int64)
        .to_numpy()
    )
    counts = np.diff(offsets)
    out = np.full((len(counts), int(counts.max(initial=0))), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(counts)), counts)
    cols = np.arange(len(items)) - np.repeat(offsets[:-1], counts)
    out[rows, cols] = codes
    return out
