"""From a data config to encoded train/valid/test arrays, through an on-disk cache.

The pipeline is load raw -> duplicate policy -> label -> split -> vocabulary on
train -> encode. Its output is cached under a key that hashes the source files'
contents, the data config and the split seed, so a second run with the same
inputs reads ready arrays instead of parsing text again (`gprec.data.cache`
holds the on-disk format).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gprec.config import CACHE_DIR_ENV, DATA_ROOT_ENV, DataConfig
from gprec.data import cache
from gprec.data.cache import CACHE_FORMAT
from gprec.data.encode import (
    Vocabulary,
    binary_labels,
    data_rows,
    drop_duplicates,
    encoded_fields,
    find_duplicates,
    target_values,
)
from gprec.data.schema import EncodedField, RawTable, Role
from gprec.data.split import SPLITS, hash_split, leave_last_out_split, random_split
from gprec.data.user_groups import add_kmeans_groups
from gprec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DUPLICATE_POLICIES = ("warn", "drop", "error")


@dataclass
class EncodedDataset:
    """Encoded fields `X[split]` (int64, n x n_fields) and labels `y[split]` (float32)."""

    fields: list[EncodedField]
    X: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    vocab: Vocabulary
    name: str = ""
    from_cache: bool = False
    # Rows equal in every field (see `find_duplicates`), as found before the split.
    duplicates: dict[str, Any] | None = None
    # data.user_groups: how the `group` field was made (`user_groups.assign_groups` re-applies it)
    user_groups: dict[str, Any] | None = None
    # Listed negatives of a split's rows (item indices, -1 padding), e.g. {"test": ...} (agree)
    negatives: dict[str, np.ndarray] = field(default_factory=dict)

    def size(self, split: str) -> int:
        return len(self.y[split])

    def summary(self) -> dict:
        return {
            "name": self.name,
            "fields": [
                {"name": f.name, "role": str(f.role), "cardinality": f.cardinality}
                for f in self.fields
            ],
            "splits": {
                s: {
                    "rows": self.size(s),
                    "positive_rate": float(self.y[s].mean()) if self.size(s) else 0.0,
                }
                for s in SPLITS
            },
        }


def load_raw(cfg: DataConfig) -> RawTable:
    """Read the configured source into a RawTable."""
    if cfg.source == "synthetic":
        from gprec.data.synth import SynthConfig, generate

        return generate(SynthConfig(**cfg.synthetic.model_dump()))
    require_source_files(cfg)
    path = cfg.resolved_path()
    if cfg.source == "ml-100k":
        from gprec.data.movielens import load_ml100k

        return load_ml100k(path)
    if cfg.source == "ml-1m":
        from gprec.data.movielens import load_ml1m

        return load_ml1m(path, cfg.ratings_file)
    if cfg.source == "agree":
        from gprec.data.agree_source import load_agree_raw

        return load_agree_raw(path)
    from gprec.data.generic import load_generic

    return load_generic(path)


def split_rows(raw: RawTable, cfg: DataConfig, seed: int) -> dict[str, np.ndarray]:
    if cfg.split == "random":
        return random_split(raw.table.height, cfg.split_ratios, seed)
    if cfg.split == "hash":
        return hash_split(raw.table, raw.field_names, cfg.split_ratios, seed)
    if cfg.split == "file":
        if raw.split is None:
            raise ConfigError("data.split: file needs a source with its own test rows (agree)")
        if cfg.split_ratios[2] != 0:
            raise ConfigError(
                "data.split_ratios: with data.split: file the test rows are the source's own; "
                "give [train, valid, 0]"
            )
        train = np.flatnonzero(raw.split == "train")
        share = cfg.split_ratios[1] / (cfg.split_ratios[0] + cfg.split_ratios[1])
        train = np.random.default_rng(seed).permutation(train)
        n_valid = int(round(len(train) * share))
        return {
            "train": np.sort(train[n_valid:]),
            "valid": np.sort(train[:n_valid]),
            "test": np.flatnonzero(raw.split == "test"),
        }
    personal = [f.name for f in raw.fields if f.role == Role.PERSONAL]
    if not personal:
        raise ConfigError(
            "data.split: leave_last_out needs a field with role 'personal' (a user id)"
        )
    if not raw.has_timestamp():
        raise ConfigError("data.split: leave_last_out needs a timestamp column in the data")
    return leave_last_out_split(raw.table[personal[0]], raw.table[RawTable.TIMESTAMP], seed)


def encode(raw: RawTable, cfg: DataConfig, seed: int) -> EncodedDataset:
    # A message about a data row names the interactions file; one about the dataset
    # as a whole names the first source file (for a generic dataset, its schema).
    dataset, interactions = _first(raw.source_files), _interactions_file(cfg, raw)
    if raw.table.height == 0:
        raise DataError("the dataset has no interactions", path=dataset)
    if cfg.split == "file" and duplicate_policy(cfg) == "drop":
        raise ConfigError(
            "data.duplicates: drop would remove rows of a source whose split and negative "
            "lists are kept as published (data.split: file); use warn or error"
        )
    raw, duplicates = apply_duplicate_policy(
        raw, duplicate_policy(cfg), interactions, same_split=cfg.split == "hash"
    )
    if cfg.target == "value":
        y_all = target_values(raw, interactions).astype(np.float32)
    elif cfg.target == "positive":  # an interaction log: every row is an observed positive
        y_all = np.ones(raw.table.height, dtype=np.float32)
    else:
        y_all = binary_labels(raw, cfg.label_threshold, interactions)
    rows = split_rows(raw, cfg, seed)
    if len(rows["train"]) == 0:
        raise DataError("the training split is empty", path=dataset)
    vocab = Vocabulary.fit(raw.table[rows["train"]], raw.fields)
    for name, values in (raw.catalogue or {}).items():
        known = set(vocab.values[name])
        vocab.values[name] = vocab.values[name] + sorted(v for v in values if v not in known)
    y = {s: y_all[rows[s]] for s in SPLITS}
    for s in ("valid", "test"):
        if cfg.target == "label":
            _require_both_labels(s, y[s], cfg, dataset)
        elif len(y[s]) == 0:
            raise DataError(f"the {s} split is empty; check data.split_ratios", path=dataset)
    X = {s: vocab.encode(raw.table[rows[s]], raw.fields) for s in SPLITS}
    fields = encoded_fields(raw.fields, vocab)
    groups = None
    if cfg.user_groups is not None:
        X, fields, groups = add_kmeans_groups(X, fields, cfg.user_groups, seed)
    negatives = {}
    if raw.test_negatives is not None:
        from gprec.data.agree_source import encode_negatives

        item = next(f.name for f in raw.fields if f.role == Role.ITEM)
        negatives["test"] = encode_negatives(*raw.test_negatives, vocab.values[item])
    return EncodedDataset(
        fields,
        X,
        y,
        vocab,
        name=cfg.source,
        duplicates=duplicates,
        user_groups=groups,
        negatives=negatives,
    )


def duplicate_policy(cfg: DataConfig) -> str:
    policy = cfg.duplicates
    if policy not in DUPLICATE_POLICIES:
        raise ConfigError(
            f"data.duplicates: {policy!r} is not one of {', '.join(DUPLICATE_POLICIES)}"
        )
    return policy


def apply_duplicate_policy(
    raw: RawTable, policy: str, path: Path | None, same_split: bool = False
) -> tuple[RawTable, dict[str, Any] | None]:
    """Rows equal in every field let one interaction land in both train and test.

    `warn` keeps them (and says so), `drop` keeps the last of each (the latest by
    timestamp when there is one), `error` refuses the dataset. `same_split`: the split keeps
    equal rows together (data.split: hash), which the warning then says.
    """
    found = find_duplicates(raw)
    if found is None:
        return raw, None
    count, first, repeated = found
    rows = data_rows(raw)
    info = {
        "count": count,
        "row": int(rows[first]),
        "repeats_row": int(rows[repeated]),
        "file": str(path) if path is not None else None,
        "policy": policy,
        **({"same_split": True} if same_split else {}),
    }
    if policy == "error":
        raise DataError(
            f"{count:,d} duplicate interaction rows (equal in every field): data row "
            f"{info['row']} repeats data row {info['repeats_row']}; set data.duplicates=drop "
            "to keep the last of each, or data.duplicates=warn to keep them all",
            path=path,
        )
    if policy == "drop":
        raw = drop_duplicates(raw)
        log.info(
            "%sdropped %d duplicate interaction rows, kept the last of each", _where(path), count
        )
    else:
        warn_duplicates(info)
    return raw, info


def warn_duplicates(info: dict[str, Any]) -> None:
    if info.get("same_split"):
        log.warning(
            "%s%s duplicate interaction rows (equal in every field; data row %d repeats data "
            "row %d) are kept; the hash split puts equal rows into the same split, so none is "
            "in both train and test; set data.duplicates=drop to keep the last of each, or "
            "data.duplicates=error to refuse",
            _where(info.get("file")),
            f"{info['count']:,d}",
            info["row"],
            info["repeats_row"],
        )
        return
    log.warning(
        "%s%s duplicate interaction rows (equal in every field; data row %d repeats data "
        "row %d) are kept, so the same interaction can be in both train and test; set "
        "data.duplicates=drop to keep the last of each, or data.duplicates=error to refuse",
        _where(info.get("file")),
        f"{info['count']:,d}",
        info["row"],
        info["repeats_row"],
    )


def _where(path: str | Path | None) -> str:
    return f"{path}: " if path else ""


def _interactions_file(cfg: DataConfig, raw: RawTable) -> Path | None:
    """The file the interaction rows come from (a generic dataset lists its schema first)."""
    files = raw.source_files
    if cfg.source == "generic" and len(files) > 1:
        return files[1]
    return _first(files)


def _require_both_labels(split: str, y: np.ndarray, cfg: DataConfig, path: Path | None) -> None:
    """Early stopping and the reported metrics are AUCs, which need both labels in the split.

    Checked before encoding and caching, so the run fails in seconds instead of
    after training, and no cache entry is left for a dataset that cannot be used.
    """
    require_both_labels(split, len(y), int(y.sum()), cfg, path)


def require_both_labels(
    split: str, rows: int, positives: int, cfg: DataConfig, path: Path | None
) -> None:
    """`_require_both_labels` on a split's counts: its rows and how many are labelled 1."""
    ratios = "data.split_ratios" if cfg.split in ("random", "hash") else "data.split"
    if rows == 0:
        raise DataError(f"the {split} split is empty: AUC is undefined; check {ratios}", path=path)
    if positives in (0, rows):
        raise DataError(
            f"the {split} split has only label {int(positives == rows)} ({rows:,d} rows): AUC "
            f"is undefined; check data.label_threshold / {ratios}",
            path=path,
        )


def _first(paths: list[Path]) -> Path | None:
    return paths[0] if paths else None


def require_source_files(cfg: DataConfig) -> None:
    """Refuse a missing data file up front, saying how `data.path` was resolved."""
    if cfg.source == "synthetic":
        return
    path = cfg.resolved_path()
    if cfg.source == "generic":
        missing, what = ([] if path.is_file() else [path]), "the schema YAML file"
    else:
        # u.genre is optional: without it ML-100K's standard genre list is used.
        if cfg.source == "ml-100k":
            names = ["u.data", "u.user", "u.item"]
        elif cfg.source == "agree":
            names = ["groupMember.txt"]
        else:
            names = [cfg.ratings_file, "users.dat", "movies.dat"]
        missing = [path / n for n in names if not (path / n).is_file()]
        what = f"the directory that holds {missing[0].name}" if missing else ""
    if missing:
        problem = "not a file" if missing[0].exists() else "file not found"
        raise DataError(f"{problem}; {_path_hint(cfg.path, what)}", path=missing[0])


def _path_hint(configured: str, what: str) -> str:
    """How a `data.path` value became the path that was looked at, and what to change."""
    root = os.environ.get(DATA_ROOT_ENV)
    if Path(os.path.expanduser(configured)).is_absolute():
        return f"data.path is {configured!r}; set it to {what}"
    if root:
        how = f"data.path {configured!r} was looked up under ${DATA_ROOT_ENV}={root}"
    else:
        how = (
            f"data.path {configured!r} is relative to the working directory {Path.cwd()} "
            f"(${DATA_ROOT_ENV} is unset)"
        )
    return f"{how}; set data.path to {what}, or ${DATA_ROOT_ENV} to the folder holding {configured}"


def source_files(cfg: DataConfig) -> list[Path]:
    """The data files whose contents key the cache (none for synthetic data)."""
    if cfg.source == "synthetic":
        return []
    path = cfg.resolved_path()
    if cfg.source == "ml-100k":
        names = ["u.data", "u.user", "u.item", "u.genre"]
    elif cfg.source == "ml-1m":
        names = [cfg.ratings_file, "users.dat", "movies.dat"]
    elif cfg.source == "agree":
        return sorted(p for p in path.glob("*.txt") if p.is_file())
    else:
        from gprec.data.generic import schema_source_files

        return schema_source_files(path)
    return [path / n for n in names if (path / n).is_file()]


def _pipeline_code() -> list[Path]:
    """The data package's own source: a change to a loader or the encoding invalidates caches."""
    return sorted(Path(__file__).parent.glob("*.py"))


def cache_key(cfg: DataConfig, seed: int) -> str:
    h = hashlib.sha256()
    # shuffle_buffer: how a streamed training split is read, not what is encoded
    exclude = {"cache_dir", "path", "split_seed", "shuffle_buffer"}
    settings = cfg.model_dump(mode="json", exclude=exclude)
    settings["duplicates"] = duplicate_policy(cfg)  # the policy changes the rows that are kept
    h.update(
        json.dumps(
            {"format": CACHE_FORMAT, "seed": seed, "data": settings}, sort_keys=True
        ).encode()
    )
    for f in [*_pipeline_code(), *source_files(cfg)]:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:20]


def _cache_label(cfg: DataConfig) -> str:
    """Which setting chose the cache dir, for messages about it."""
    if cfg.cache_dir:
        return "data.cache_dir"
    if os.environ.get(CACHE_DIR_ENV):
        return f"${CACHE_DIR_ENV}"
    return "data.cache_dir (default)"


def _save(ds: EncodedDataset, entry: Path, cfg: DataConfig, seed: int, replace: bool) -> None:
    arrays = {f"{a}_{s}": getattr(ds, a)[s] for s in SPLITS for a in ("X", "y")}
    arrays |= {f"N_{s}": n for s, n in ds.negatives.items()}
    # Where the entry came from, for `gprec cache list`.
    origin = {"path": None if cfg.path is None else str(cfg.resolved_path()), "seed": seed}
    meta = ds.summary() | {"duplicates": ds.duplicates, "origin": origin}
    label = _cache_label(cfg)
    documents = {"vocab.json": ds.vocab.to_json()}
    if ds.user_groups is not None:
        documents["user_groups.json"] = ds.user_groups
    cache.write_entry(entry, arrays, documents, meta, label, replace)


def _load(entry: Path, mmap: bool) -> EncodedDataset:
    """The cached dataset; raises cache.Damaged when any part of it does not check out."""
    meta, arrays, documents = cache.read_entry(entry, mmap)
    try:
        fields = [
            EncodedField(f["name"], Role(f["role"]), f["cardinality"]) for f in meta["fields"]
        ]
        ds = EncodedDataset(
            fields=fields,
            X={s: arrays[f"X_{s}"] for s in SPLITS},
            y={s: arrays[f"y_{s}"] for s in SPLITS},
            vocab=Vocabulary(documents["vocab.json"]),
            name=meta["name"],
            from_cache=True,
            duplicates=meta.get("duplicates"),
            user_groups=documents.get("user_groups.json"),
            negatives={s: arrays[f"N_{s}"] for s in SPLITS if f"N_{s}" in arrays},
        )
        for s, lists in ds.negatives.items():
            if len(lists) != len(ds.y[s]):
                raise cache.Damaged(f"N_{s}.npy does not match y_{s}.npy")
    except (KeyError, TypeError, ValueError) as e:
        raise cache.Damaged(f"meta.json is malformed ({type(e).__name__}: {e})") from None
    for s in SPLITS:
        if ds.X[s].shape != (len(ds.y[s]), len(fields)):
            raise cache.Damaged(f"X_{s}.npy does not match y_{s}.npy and the fields")
    return ds


def load_dataset(
    cfg: DataConfig, seed: int, use_cache: bool = True, mmap: bool = False
) -> EncodedDataset:
    """The encoded dataset for `cfg` and split `seed`, from the cache when it is there.

    A damaged cache entry is rebuilt (with a warning). A cache dir that cannot be
    written is refused before any parsing, unless the entry is already there.

    `data.format: parquet-stream` gives a `stream.StreamedDataset` (its training split read
    from the cache entry while training); it always goes through the cache, which holds it.
    """
    stream = cfg.format == "parquet-stream"
    if not use_cache and not stream:
        return encode(load_raw(cfg), cfg, seed)
    label, cache_dir = _cache_label(cfg), cfg.resolved_cache_dir()
    cache.check_not_a_file(cache_dir, label)
    require_source_files(cfg)
    entry = cache_dir / f"{cfg.source}-{cache_key(cfg, seed)}"
    if stream:
        from gprec.data.stream import load_streamed

        return load_streamed(cfg, seed, entry, label)

    def build(replace: bool) -> EncodedDataset:  # replace: a damaged entry is there
        ds = encode(load_raw(cfg), cfg, seed)
        _save(ds, entry, cfg, seed, replace=replace)
        return ds

    ds = cache.read_or_build(entry, label, lambda e: _load(e, mmap), build)
    if ds.from_cache and ds.duplicates and ds.duplicates.get("policy") == "warn":
        warn_duplicates(ds.duplicates)  # encoding warned already when it was built
    return ds
