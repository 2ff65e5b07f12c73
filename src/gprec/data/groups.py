"""Group-recommendation data: memberships, group and user interactions, side features.

Two on-disk layouts load into the one in-memory form, `GroupData`
(docs/group-data.md):

- ITM-Rec (`load_itm_rec`): CSV files with headers, explicit 1-5 ratings of
  student groups and of the students themselves, no predefined split;
- the AGREE/ConsRec layout (`load_agree`): the whitespace-separated text files
  every group-recommendation benchmark since AGREE ships (Mafengwo, CAMRa2011,
  ...), implicit feedback with a leave-one-out test set and, per test row, a
  listed sample of negatives.

Ids are encoded to contiguous codes 0..n-1 in sorted order of the raw ids, so
on the benchmark files, whose ids already are 0..n-1, codes equal the ids the
published code and its negative lists use. Every id that any file mentions is
in the vocabulary (items that appear only among the negatives too), so nothing
has to be dropped to encode it. No test data is mixed into the interaction
tables: held-out rows live in `SampledTest`, so a model that trains on
`group_interactions` cannot see them by accident.

Parsing is vectorised (polars string and list expressions, numpy): the files
are read whole and split in one pass; only once a check fails is the first
offending line looked up, to name it in a `DataError`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from gprec.data.readers import _decode, _read_bytes, cast_numeric, read_table
from gprec.errors import DataError

log = logging.getLogger(__name__)

GROUP, USER, ITEM, RATING = "group", "user", "item", "rating"
EXPLICIT, IMPLICIT = "explicit", "implicit"
_LINE = "__line"  # 1-based file line of a parsed row, kept until the checks are done


@dataclass(frozen=True)
class SampledTest:
    """Held-out test rows and, per row, the negatives the dataset lists for it, as given.

    Row k of the test file is case k: `entity[k]` (a group or user code) held
    out `held_out[k]` (an item code); its negatives are
    `neg_items[neg_offsets[k]:neg_offsets[k + 1]]` in file order. Nothing is
    cleaned here: the published lists repeat items and even contain the
    held-out item itself, and keeping them verbatim is what lets
    `clean_negatives` count exactly what the strict protocol removes.
    """

    entity: np.ndarray
    held_out: np.ndarray
    neg_offsets: np.ndarray
    neg_items: np.ndarray
    rating: np.ndarray | None = None  # the test row's rating, when the file has one
    source: Path | None = None  # the negatives file

    @property
    def n_cases(self) -> int:
        return len(self.held_out)

    def negatives(self, case: int) -> np.ndarray:
        """The listed negatives of one case, duplicates and all."""
        return self.neg_items[self.neg_offsets[case] : self.neg_offsets[case + 1]]


@dataclass(frozen=True)
class CleanNegatives:
    """Per test case, the held-out item and its negatives without it and without repeats.

    Iterating yields `(held_out, negatives)` per case. The counts say how much
    of the published lists the strict protocol discards: `removed_positive`
    entries equal to the case's own held-out item (every occurrence), and
    `removed_duplicate` repeats of an item already listed for the case.
    """

    held_out: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    removed_positive: int
    removed_duplicate: int
    cases_with_positive: int  # cases whose list contained their held-out item
    removed_per_case: np.ndarray

    @property
    def removed(self) -> int:
        return self.removed_positive + self.removed_duplicate

    def __len__(self) -> int:
        return len(self.held_out)

    def negatives(self, case: int) -> np.ndarray:
        return self.items[self.offsets[case] : self.offsets[case + 1]]

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for case in range(len(self)):
            yield int(self.held_out[case]), self.negatives(case)


def clean_negatives(test: SampledTest) -> CleanNegatives:
    """Remove from each case's negatives its own held-out item and repeated items.

    A held-out item listed among its own negatives is a tie the model cannot
    win (and, under the usual "positive first, stable sort" code, a free hit);
    a repeated negative counts one item twice. The first occurrence of every
    other item is kept, in file order.
    """
    n = test.n_cases
    counts = np.diff(test.neg_offsets)
    case = np.repeat(np.arange(n, dtype=np.int64), counts)
    items = test.neg_items.astype(np.int64, copy=False)
    is_positive = items == test.held_out[case]
    width = int(max(items.max(initial=-1), test.held_out.max(initial=-1))) + 1
    _, first = np.unique(case * width + items, return_index=True)
    is_first = np.zeros(len(items), dtype=bool)
    is_first[first] = True
    keep = is_first & ~is_positive
    duplicate = ~is_first & ~is_positive
    kept_per_case = np.bincount(case[keep], minlength=n)
    return CleanNegatives(
        held_out=test.held_out,
        offsets=_offsets(kept_per_case),
        items=items[keep],
        removed_positive=int(is_positive.sum()),
        removed_duplicate=int(duplicate.sum()),
        cases_with_positive=int(np.unique(case[is_positive]).size),
        removed_per_case=counts - kept_per_case,
    )


@dataclass(frozen=True)
class GroupData:
    """A group-recommendation dataset with ids encoded to contiguous codes.

    Tables (all ids are Int64 codes; `*_ids[code]` is the raw id):
    - `members`: (group, user), many-to-many, unique pairs sorted by group then user;
    - `group_interactions` / `user_interactions`: (group|user, item[, rating], ...)
      training interactions only, in file order; `rating` is present for
      explicit feedback and for implicit files that carry a value; any further
      columns (ITM-Rec's criteria and context) follow;
    - `user_features` / `item_features`: keyed by `user` / `item`, or None;
    - `group_test` / `user_test`: the predefined held-out rows with their
      listed negatives (AGREE layout), or None when the data has no split;
    - `follows`: (user code, followee raw id) from a social file, or None.

    `feedback` is "explicit" (rating targets) or "implicit" (every row is a
    positive: the benchmark protocol, even where a file carries a score).
    `cleaning` counts what the loader removed, so that it is never silent.
    """

    name: str
    feedback: str
    members: pl.DataFrame
    group_interactions: pl.DataFrame
    user_interactions: pl.DataFrame
    group_ids: pl.Series
    user_ids: pl.Series
    item_ids: pl.Series
    user_features: pl.DataFrame | None = None
    item_features: pl.DataFrame | None = None
    group_test: SampledTest | None = None
    user_test: SampledTest | None = None
    follows: pl.DataFrame | None = None
    cleaning: dict[str, int] = field(default_factory=dict)
    source_files: list[Path] = field(default_factory=list)

    @property
    def n_groups(self) -> int:
        return len(self.group_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def group_members(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR form: the members of group g are `users[offsets[g]:offsets[g + 1]]`, sorted."""
        counts = np.bincount(self.members[GROUP].to_numpy(), minlength=self.n_groups)
        return _offsets(counts), self.members[USER].to_numpy()

    def group_sizes(self) -> np.ndarray:
        """Number of distinct members per group code."""
        return np.bincount(self.members[GROUP].to_numpy(), minlength=self.n_groups)

    def user_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR form of the inverse: the groups of user u are `groups[offsets[u]:offsets[u + 1]]`.

        Users belong to several groups (65 of ITM-Rec's members, 1,269 of
        Mafengwo's), which is what neighbour-group signals travel along.
        """
        by_user = self.members.sort(USER, GROUP)
        counts = np.bincount(by_user[USER].to_numpy(), minlength=self.n_users)
        return _offsets(counts), by_user[GROUP].to_numpy()

    def raw_ids(self, kind: str, codes: np.ndarray | pl.Series | list[int]) -> pl.Series:
        """The raw ids of `codes` of kind "group", "user" or "item", for output."""
        vocab = {GROUP: self.group_ids, USER: self.user_ids, ITEM: self.item_ids}.get(kind)
        if vocab is None:
            raise ValueError(f"kind must be 'group', 'user' or 'item', not {kind!r}")
        return vocab.gather(pl.Series(codes, dtype=pl.Int64))

    def summary(self) -> dict[str, int]:
        """Counts that identify a copy of the data at a glance (and in tests)."""
        out = {
            "groups": self.n_groups,
            "users": self.n_users,
            "items": self.n_items,
            "memberships": self.members.height,
            "group_interactions": self.group_interactions.height,
            "user_interactions": self.user_interactions.height,
        }
        for name, test in (("group_test", self.group_test), ("user_test", self.user_test)):
            if test is not None:
                out[f"{name}_cases"] = test.n_cases
                out[f"{name}_negatives"] = len(test.neg_items)
        return out


def load_group_data(path: str | Path) -> GroupData:
    """Load a folder in either layout, told apart by the files it contains."""
    path = Path(path)
    if (path / "groupMember.txt").exists():
        return load_agree(path)
    if (path / "group.csv").exists() and (path / "group_ratings.csv").exists():
        return load_itm_rec(path)
    if not path.is_dir():
        raise DataError("not a folder of group data", path=path)
    raise DataError(
        "no group data found: expected groupMember.txt (AGREE/ConsRec layout) "
        "or group.csv and group_ratings.csv (ITM-Rec)",
        path=path,
    )


# --- ITM-Rec -------------------------------------------------------------------

_ITM_CRITERIA = {"App": "app", "Data": "data", "Ease": "ease"}
_ITM_CONTEXT = {"Class": "class", "Semester": "semester", "Lockdown": "lockdown"}


def load_itm_rec(path: str | Path) -> GroupData:
    """ITM-Rec (Zheng, LAK 2023): students' and student groups' ratings of project topics.

    Exact duplicate rows of group.csv are removed (37 in the official copy,
    which lists some members twice; group_size.csv agrees with the distinct
    members, checked when present). Individual ratings are kept as given,
    including the same (user, item) rated in two classes: the context columns
    tell those apart, and which one a model uses is its choice, not the loader's.
    """
    path = Path(path)
    files = {
        name: path / f"{name}.csv"
        for name in ("group", "group_ratings", "ratings", "users", "items", "group_size")
    }
    members_raw = _read_csv(files["group"], {"GroupID": pl.Int64, "UserID": pl.Int64})
    group_ratings = _read_csv(
        files["group_ratings"],
        {"GroupID": pl.Int64, "Item": pl.Int64, "Rating": pl.Float64},
        optional={**dict.fromkeys(_ITM_CRITERIA, pl.Float64), **dict.fromkeys(_ITM_CONTEXT)},
    )
    ratings = _read_csv(
        files["ratings"],
        {"UserID": pl.Int64, "Item": pl.Int64, "Rating": pl.Float64},
        optional={**dict.fromkeys(_ITM_CRITERIA, pl.Float64), **dict.fromkeys(_ITM_CONTEXT)},
    )
    users = _read_csv(files["users"], {"UserID": pl.Int64}, optional_table=True)
    items = _read_csv(files["items"], {"Item": pl.Int64}, optional_table=True)

    members = members_raw.select(pl.col("GroupID").alias(GROUP), pl.col("UserID").alias(USER))
    distinct = members.unique(maintain_order=True)
    removed = members.height - distinct.height
    if removed:
        log.info("%s: removed %d duplicate membership rows", files["group"], removed)
    if files["group_size"].exists():
        _check_group_sizes(files["group_size"], distinct)

    group_vocab = _vocabulary(distinct[GROUP])
    _require_known(group_ratings, "GroupID", group_vocab, files["group_ratings"], files["group"])
    for table, key, file in ((users, "UserID", files["users"]), (items, "Item", files["items"])):
        if table is not None:
            _require_unique_key(table, key, file)
    user_vocab = _vocabulary(
        distinct[USER], ratings["UserID"], *([users["UserID"]] if users is not None else [])
    )
    item_vocab = _vocabulary(
        group_ratings["Item"], ratings["Item"], *([items["Item"]] if items is not None else [])
    )

    def interactions(table: pl.DataFrame, key: str, kind: str, vocab: pl.Series) -> pl.DataFrame:
        extra = {**_ITM_CRITERIA, **_ITM_CONTEXT}
        return table.select(
            _encode(pl.col(key), vocab).alias(kind),
            _encode(pl.col("Item"), item_vocab).alias(ITEM),
            pl.col("Rating").alias(RATING),
            *(pl.col(c).alias(name) for c, name in extra.items() if c in table.columns),
        )

    user_features = None
    if users is not None:
        user_features = users.select(
            _encode(pl.col("UserID"), user_vocab).alias(USER),
            *(pl.col(c).alias(c.lower()) for c in users.columns if c not in ("UserID", _LINE)),
        ).sort(USER)
    item_features = None
    if items is not None:
        item_features = items.select(
            _encode(pl.col("Item"), item_vocab).alias(ITEM),
            *(pl.col(c).alias(c.lower()) for c in items.columns if c not in ("Item", _LINE)),
        ).sort(ITEM)

    return GroupData(
        name="itm-rec",
        feedback=EXPLICIT,
        members=_encode_members(distinct, group_vocab, user_vocab),
        group_interactions=interactions(group_ratings, "GroupID", GROUP, group_vocab),
        user_interactions=interactions(ratings, "UserID", USER, user_vocab),
        group_ids=group_vocab,
        user_ids=user_vocab,
        item_ids=item_vocab,
        user_features=user_features,
        item_features=item_features,
        cleaning={"duplicate_membership_rows": removed},
        source_files=[f for f in files.values() if f.exists()],
    )


def _read_csv(
    path: Path,
    required: dict[str, pl.DataType],
    optional: dict[str, pl.DataType | None] | None = None,
    optional_table: bool = False,
) -> pl.DataFrame | None:
    """A headed CSV with string values stripped, `required` columns cast (none may be empty).

    `optional` columns are cast when present, an empty cell becoming null
    (ITM-Rec's Data criterion has two blank cells); a None type keeps the
    strings. Casting happens before any row is removed, so an error names the
    file line of the bad value (line 1 is the header).
    """
    if optional_table and not path.exists():
        return None
    table = read_table(path, format="csv")
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(
            f"missing column {missing[0]!r} (the header has {', '.join(table.columns)})",
            path=path,
            line=1,
        )
    table = table.with_columns(pl.col(pl.String).str.strip_chars())
    casts = [cast_numeric(table[c], t, path, first_line=2) for c, t in required.items()]
    for c, t in (optional or {}).items():
        if c in table.columns and t is not None:
            values = table[c].replace("", None)
            casts.append(_cast_nullable(values, t, path))
    return table.with_columns(casts)


def _cast_nullable(values: pl.Series, dtype: pl.DataType, path: Path) -> pl.Series:
    """Cast where a value is given; an empty cell stays null, an unparsable one is an error."""
    present = values.is_not_null()
    cast_all = values.cast(dtype, strict=False)
    bad = (present & cast_all.is_null()).arg_true()
    if len(bad):
        row = int(bad[0])
        raise DataError(
            f"column {values.name!r}: {values[row]!r} is not a number", path=path, line=row + 2
        )
    return cast_all


def _check_group_sizes(path: Path, members: pl.DataFrame) -> None:
    """group_size.csv must agree with the distinct members in group.csv."""
    sizes = _read_csv(path, {"GroupID": pl.Int64, "Size": pl.Int64}).with_row_index(_LINE, offset=2)
    counted = members.group_by(GROUP).len("counted")
    joined = sizes.join(counted, left_on="GroupID", right_on=GROUP, how="left").sort(_LINE)
    wrong = joined.filter(pl.col("counted").fill_null(0) != pl.col("Size"))
    if wrong.height:
        row = wrong.row(0, named=True)
        raise DataError(
            f"group {row['GroupID']} has size {row['Size']}, but group.csv lists "
            f"{row['counted'] or 0} distinct members for it",
            path=path,
            line=row[_LINE],
        )


def _require_known(
    table: pl.DataFrame, column: str, vocab: pl.Series, path: Path, where: Path
) -> None:
    """Every group with interactions needs members: a memberless group cannot be profiled."""
    unknown = (~table[column].is_in(vocab.implode())).arg_true()
    if len(unknown):
        row = int(unknown[0])
        raise DataError(
            f"group {table[column][row]} has no members in {where.name}", path=path, line=row + 2
        )


def _require_unique_key(table: pl.DataFrame, key: str, path: Path) -> None:
    repeated = (~table[key].is_first_distinct()).arg_true()
    if len(repeated):
        row = int(repeated[0])
        raise DataError(
            f"{key} {table[key][row]} appears on more than one line", path=path, line=row + 2
        )


# --- AGREE / ConsRec layout ----------------------------------------------------

_GROUP_FILES = ("groupMember.txt", "groupRatingTrain.txt", "groupRatingTest.txt")


def load_agree(path: str | Path, name: str | None = None) -> GroupData:
    """A dataset in the AGREE/ConsRec layout: point at its folder.

    Required: groupMember.txt (`gid uid,uid,...`), groupRatingTrain.txt and
    groupRatingTest.txt (`gid item` or `gid item rating`), groupRatingNegative.txt
    (`(gid,item) n1 n2 ...`, one line per test row, in the same order).
    Optional: userRatingTrain.txt, userRatingTest.txt with userRatingNegative.txt
    (the same formats keyed by user), userFollow.txt (`uid:f1 f2 ...`).
    Fields are separated by whitespace and CRLF line ends are accepted, as the
    reference loaders (`line.split()`) do. Test rows and their negatives are
    kept exactly as given; `clean_negatives` applies the strict protocol.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError("not a folder" if path.exists() else "folder not found", path=path)
    member_file = path / "groupMember.txt"
    members_raw = _read_members(member_file)
    group_train = _read_ratings(path / "groupRatingTrain.txt")
    group_test = _read_ratings(path / "groupRatingTest.txt")
    group_neg = _read_negatives(path / "groupRatingNegative.txt", group_test)
    files = [path / f for f in _GROUP_FILES] + [path / "groupRatingNegative.txt"]

    user_train = user_test = user_neg = follows = None
    if (path / "userRatingTrain.txt").exists():
        user_train = _read_ratings(path / "userRatingTrain.txt")
        files.append(path / "userRatingTrain.txt")
    if (path / "userRatingTest.txt").exists():
        user_test = _read_ratings(path / "userRatingTest.txt")
        user_neg = _read_negatives(path / "userRatingNegative.txt", user_test)
        files += [path / "userRatingTest.txt", path / "userRatingNegative.txt"]
    if (path / "userFollow.txt").exists():
        follows = _read_follows(path / "userFollow.txt")
        files.append(path / "userFollow.txt")

    members = members_raw.select("id", "other")
    distinct = members.unique(maintain_order=True)
    group_vocab = _vocabulary(distinct["id"])
    for table, file in ((group_train, "groupRatingTrain.txt"), (group_test, "groupRatingTest.txt")):
        _require_members(table, group_vocab, path / file)

    user_tables = [t for t in (user_train, user_test) if t is not None]
    user_vocab = _vocabulary(
        distinct["other"],
        *(t["id"] for t in user_tables),
        *([follows["id"]] if follows is not None else []),
    )
    item_tables = [group_train, group_test, *user_tables]
    negatives = [group_neg, *([user_neg] if user_neg is not None else [])]
    item_vocab = _vocabulary(*(t["item"] for t in item_tables), *(n["item"] for n in negatives))

    def interactions(table: pl.DataFrame | None, kind: str, vocab: pl.Series) -> pl.DataFrame:
        if table is None:
            return pl.DataFrame(schema={kind: pl.Int64, ITEM: pl.Int64})
        return table.select(
            _encode(pl.col("id"), vocab).alias(kind),
            _encode(pl.col("item"), item_vocab).alias(ITEM),
            *([pl.col(RATING)] if RATING in table.columns else []),
        )

    def sampled(test: pl.DataFrame, neg: pl.DataFrame, vocab: pl.Series, file: Path):
        return SampledTest(
            entity=_encode_numpy(test["id"], vocab),
            held_out=_encode_numpy(test["item"], item_vocab),
            neg_offsets=_offsets(np.bincount(neg["case"].to_numpy(), minlength=test.height)),
            neg_items=_encode_numpy(neg["item"], item_vocab),
            rating=test[RATING].to_numpy() if RATING in test.columns else None,
            source=file,
        )

    return GroupData(
        name=name or path.name,
        feedback=IMPLICIT,
        members=_encode_members(
            distinct.rename({"id": GROUP, "other": USER}), group_vocab, user_vocab
        ),
        group_interactions=interactions(group_train, GROUP, group_vocab),
        user_interactions=interactions(user_train, USER, user_vocab),
        group_ids=group_vocab,
        user_ids=user_vocab,
        item_ids=item_vocab,
        group_test=sampled(group_test, group_neg, group_vocab, path / "groupRatingNegative.txt"),
        user_test=(
            sampled(user_test, user_neg, user_vocab, path / "userRatingNegative.txt")
            if user_test is not None
            else None
        ),
        follows=(
            follows.select(
                _encode(pl.col("id"), user_vocab).alias(USER), pl.col("other").alias("followee")
            )
            if follows is not None
            else None
        ),
        cleaning={"duplicate_membership_rows": members.height - distinct.height},
        source_files=files,
    )


def _lines(path: Path) -> pl.DataFrame:
    """The file's lines, whitespace-normalised, with their 1-based numbers.

    Trailing blank lines are ignored; a blank line inside the data is an
    error, as it is for the reference loaders (they fail on it).
    """
    text = _decode(_read_bytes(path), "utf-8", path).rstrip()
    if not text:
        raise DataError("no data rows", path=path)
    lines = pl.DataFrame({"text": text.split("\n")}).with_row_index(_LINE, offset=1)
    lines = lines.with_columns(
        pl.col("text").str.strip_chars().str.replace_all(r"\s+", " "),
        pl.col(_LINE).cast(pl.Int64),
    )
    blank = lines.filter(pl.col("text") == "")
    if blank.height:
        raise DataError("blank line", path=path, line=blank[_LINE][0])
    return lines


def _fields(lines: pl.DataFrame, path: Path, expected: tuple[int, ...], form: str) -> pl.DataFrame:
    """Split every line on whitespace; each must have one of the `expected` field counts."""
    split = lines.with_columns(pl.col("text").str.split(" ").alias("fields"))
    bad = split.filter(~pl.col("fields").list.len().is_in(list(expected)))
    if bad.height:
        found = bad["fields"][0].len()
        raise DataError(
            f"expected {form}, found {found} field{'s' if found != 1 else ''}",
            path=path,
            line=bad[_LINE][0],
        )
    return split


def _int(values: pl.Expr, name: str) -> pl.Expr:
    return values.cast(pl.Int64, strict=False).alias(name)


def _check_ints(table: pl.DataFrame, raw: pl.DataFrame, columns: list[str], path: Path) -> None:
    """Name the first line whose field in `columns` did not parse as an integer."""
    for c in columns:
        bad = table[c].is_null().arg_true()
        if len(bad):
            row = int(bad[0])
            raise DataError(
                f"{c} {raw[c][row]!r} is not an integer", path=path, line=table[_LINE][row]
            )


def _read_ratings(path: Path) -> pl.DataFrame:
    """`id item` (implicit) or `id item rating` (CAMRa2011's scores), one form per file."""
    lines = _lines(path)
    n_first = len(lines["text"][0].split(" "))
    form = {2: "2 fields (id item)", 3: "3 fields (id item rating)"}.get(
        n_first, "2 fields (id item) or 3 (id item rating)"
    )
    split = _fields(lines, path, (n_first,) if n_first in (2, 3) else (2, 3), form)
    raw = split.select(
        _LINE,
        pl.col("fields").list.get(0).alias("id"),
        pl.col("fields").list.get(1).alias("item"),
        *([pl.col("fields").list.get(2).alias(RATING)] if n_first == 3 else []),
    )
    table = raw.select(
        _LINE,
        _int(pl.col("id"), "id"),
        _int(pl.col("item"), "item"),
        *([pl.col(RATING).cast(pl.Float64, strict=False)] if n_first == 3 else []),
    )
    _check_ints(table, raw, ["id", "item"], path)
    if n_first == 3:
        bad = table[RATING].is_null().arg_true()
        if len(bad):
            row = int(bad[0])
            raise DataError(
                f"rating {raw[RATING][row]!r} is not a number", path=path, line=table[_LINE][row]
            )
    return table


def _read_members(path: Path) -> pl.DataFrame:
    """`gid uid,uid,...` per line, as (id, other) pairs; a group may span lines."""
    split = _fields(_lines(path), path, (2,), "2 fields (group id, comma-separated member ids)")
    raw = split.select(
        _LINE,
        pl.col("fields").list.get(0).alias("group"),
        pl.col("fields").list.get(1).str.split(",").alias("member"),
    ).explode("member")
    table = raw.select(_LINE, _int(pl.col("group"), "group"), _int(pl.col("member"), "member"))
    _check_ints(table, raw, ["group", "member"], path)
    return table.rename({"group": "id", "member": "other"})


def _read_negatives(path: Path, test: pl.DataFrame) -> pl.DataFrame:
    """`(id,item) n1 n2 ...`: line k lists the negatives of test row k, whose key it repeats.

    Returns one row per listed negative: (case, item), in file order. The
    key is checked against the test row, since the reference loaders pair
    the two files by line number alone and a shuffled file would pair wrongly.
    """
    split = _lines(path).with_columns(pl.col("text").str.split(" ").alias("fields"))
    keys = split.select(
        _LINE,
        pl.col("fields").list.get(0).alias("key"),
        pl.col("fields").list.get(0).str.extract_groups(r"^\((-?\d+),(-?\d+)\)$").alias("parts"),
    ).with_columns(
        pl.col("parts").struct.field("1").cast(pl.Int64).alias("id"),
        pl.col("parts").struct.field("2").cast(pl.Int64).alias("item"),
    )
    bad = keys["id"].is_null().arg_true()
    if len(bad):
        row = int(bad[0])
        raise DataError(
            f"expected '(id,item)' as the first field, found {keys['key'][row]!r}",
            path=path,
            line=keys[_LINE][row],
        )
    if keys.height != test.height:
        raise DataError(
            f"{keys.height} lines, but the test file has {test.height} rows (one line each)",
            path=path,
        )
    mismatch = ((keys["id"] != test["id"]) | (keys["item"] != test["item"])).arg_true()
    if len(mismatch):
        row = int(mismatch[0])
        raise DataError(
            f"key {keys['key'][row]} does not match test row {row + 1} "
            f"({test['id'][row]} {test['item'][row]})",
            path=path,
            line=keys[_LINE][row],
        )
    raw = (
        split.with_row_index("case")
        .select(_LINE, pl.col("case").cast(pl.Int64), pl.col("fields").list.slice(1).alias("item"))
        .explode("item")
        .drop_nulls("item")
    )
    raw = raw.rename({"item": "negative"})
    table = raw.with_columns(_int(pl.col("negative"), "negative"))
    _check_ints(table, raw, ["negative"], path)
    return table.rename({"negative": "item"})


def _read_follows(path: Path) -> pl.DataFrame:
    """`uid:f1 f2 ...` per line, as (id, other) pairs; a user may follow nobody."""
    lines = _lines(path)
    parts = lines.with_columns(pl.col("text").str.split_exact(":", 1).alias("parts")).unnest(
        "parts"
    )
    bad = parts["field_1"].is_null().arg_true()
    if len(bad):
        row = int(bad[0])
        raise DataError("expected 'uid:followee followee ...'", path=path, line=parts[_LINE][row])
    raw = parts.select(
        _LINE,
        pl.col("field_0").str.strip_chars().alias("id"),
        pl.col("field_1").str.strip_chars().str.split(" ").alias("other"),
    ).explode("other")
    raw = raw.filter(pl.col("other") != "")
    table = raw.select(_LINE, _int(pl.col("id"), "id"), _int(pl.col("other"), "other"))
    _check_ints(table, raw, ["id", "other"], path)
    return table.select("id", "other")


def _require_members(table: pl.DataFrame, groups: pl.Series, path: Path) -> None:
    unknown = (~table["id"].is_in(groups.implode())).arg_true()
    if len(unknown):
        row = int(unknown[0])
        raise DataError(
            f"group {table['id'][row]} has no members in groupMember.txt",
            path=path,
            line=table[_LINE][row],
        )


# --- shared --------------------------------------------------------------------


def _vocabulary(*columns: pl.Series) -> pl.Series:
    """The sorted distinct raw ids: code i is the i-th smallest."""
    return pl.concat([c.rename("id") for c in columns]).unique().sort()


def _encode(values: pl.Expr, vocab: pl.Series) -> pl.Expr:
    """Codes of raw ids known to be in the sorted `vocab` (binary search)."""
    return pl.lit(vocab).search_sorted(values).cast(pl.Int64)


def _encode_numpy(values: pl.Series, vocab: pl.Series) -> np.ndarray:
    return vocab.search_sorted(values).cast(pl.Int64).to_numpy()


def _encode_members(
    members: pl.DataFrame, group_vocab: pl.Series, user_vocab: pl.Series
) -> pl.DataFrame:
    return members.select(
        _encode(pl.col(GROUP), group_vocab).alias(GROUP),
        _encode(pl.col(USER), user_vocab).alias(USER),
    ).sort(GROUP, USER)


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out
