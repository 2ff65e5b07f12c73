"""From a data config to encoded train/valid/test arrays, through an on-disk cache.

The pipeline is load raw -> label -> split -> vocabulary on train -> encode.
Its output is cached under a key that hashes the source files' contents, the
data config and the split seed, so a second run with the same inputs reads
ready arrays instead of parsing text again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gprec.config import DataConfig
from gprec.data.encode import Vocabulary, binary_labels, encoded_fields
from gprec.data.schema import EncodedField, RawTable, Role
from gprec.data.split import SPLITS, leave_last_out_split, random_split
from gprec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Bump when the on-disk layout changes; code changes in this package already change the key.
CACHE_FORMAT = 1


@dataclass
class EncodedDataset:
    """Encoded fields `X[split]` (int64, n x n_fields) and labels `y[split]` (float32)."""

    fields: list[EncodedField]
    X: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    vocab: Vocabulary
    name: str = ""
    from_cache: bool = False

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
    path = cfg.resolved_path()
    if cfg.source == "ml-100k":
        from gprec.data.movielens import load_ml100k

        return load_ml100k(path)
    if cfg.source == "ml-1m":
        from gprec.data.movielens import load_ml1m

        return load_ml1m(path, cfg.ratings_file)
    from gprec.data.generic import load_generic

    return load_generic(path)


def split_rows(raw: RawTable, cfg: DataConfig, seed: int) -> dict[str, np.ndarray]:
    if cfg.split == "random":
        return random_split(raw.table.height, cfg.split_ratios, seed)
    personal = [f.name for f in raw.fields if f.role == Role.PERSONAL]
    if not personal:
        raise ConfigError(
            "data.split: leave_last_out needs a field with role 'personal' (a user id)"
        )
    if not raw.has_timestamp():
        raise ConfigError("data.split: leave_last_out needs a timestamp column in the data")
    return leave_last_out_split(raw.table[personal[0]], raw.table[RawTable.TIMESTAMP], seed)


def encode(raw: RawTable, cfg: DataConfig, seed: int) -> EncodedDataset:
    if raw.table.height == 0:
        raise DataError("the dataset has no interactions", path=_first(raw.source_files))
    y_all = binary_labels(raw, cfg.label_threshold)
    rows = split_rows(raw, cfg, seed)
    if len(rows["train"]) == 0:
        raise DataError("the training split is empty", path=_first(raw.source_files))
    vocab = Vocabulary.fit(raw.table[rows["train"]], raw.fields)
    y = {s: y_all[rows[s]] for s in SPLITS}
    for s in ("valid", "test"):
        _require_both_labels(s, y[s], cfg, raw.source_files)
    X = {s: vocab.encode(raw.table[rows[s]], raw.fields) for s in SPLITS}
    return EncodedDataset(encoded_fields(raw.fields, vocab), X, y, vocab, name=cfg.source)


def _require_both_labels(split: str, y: np.ndarray, cfg: DataConfig, files: list[Path]) -> None:
    """Early stopping and the reported metrics are AUCs, which need both labels in the split.

    Checked before encoding and caching, so the run fails in seconds instead of
    after training, and no cache entry is left for a dataset that cannot be used.
    """
    ratios = "data.split_ratios" if cfg.split == "random" else "data.split"
    if len(y) == 0:
        raise DataError(
            f"the {split} split is empty: AUC is undefined; check {ratios}", path=_first(files)
        )
    if y.min() == y.max():
        raise DataError(
            f"the {split} split has only label {y[0]:.0f} ({len(y):,d} rows): AUC is undefined; "
            f"check data.label_threshold / {ratios}",
            path=_first(files),
        )


def _first(paths: list[Path]) -> Path | None:
    return paths[0] if paths else None


def source_files(cfg: DataConfig) -> list[Path]:
    """The data files whose contents key the cache (none for synthetic data)."""
    if cfg.source == "synthetic":
        return []
    path = cfg.resolved_path()
    if cfg.source == "ml-100k":
        names = ["u.data", "u.user", "u.item", "u.genre"]
    elif cfg.source == "ml-1m":
        names = [cfg.ratings_file, "users.dat", "movies.dat"]
    else:
        from gprec.data.generic import schema_source_files

        return schema_source_files(path)
    return [path / n for n in names if (path / n).is_file()]


def _pipeline_code() -> list[Path]:
    """The data package's own source: a change to a loader or the encoding invalidates caches."""
    return sorted(Path(__file__).parent.glob("*.py"))


def cache_key(cfg: DataConfig, seed: int) -> str:
    h = hashlib.sha256()
    settings = cfg.model_dump(mode="json", exclude={"cache_dir", "path", "split_seed"})
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


def _save(ds: EncodedDataset, directory: Path) -> None:
    """Write the arrays into a temp dir beside the cache entry, then rename it into place."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory.parent))
    try:
        for s in SPLITS:
            np.save(tmp / f"X_{s}.npy", ds.X[s])
            np.save(tmp / f"y_{s}.npy", ds.y[s])
        (tmp / "vocab.json").write_text(json.dumps(ds.vocab.to_json()))
        (tmp / "meta.json").write_text(json.dumps(ds.summary(), indent=1))
        try:
            os.rename(tmp, directory)
        except OSError:  # another process finished the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load(directory: Path, mmap: bool) -> EncodedDataset:
    meta = json.loads((directory / "meta.json").read_text())
    mode = "r" if mmap else None
    fields = [EncodedField(f["name"], Role(f["role"]), f["cardinality"]) for f in meta["fields"]]
    return EncodedDataset(
        fields=fields,
        X={s: np.load(directory / f"X_{s}.npy", mmap_mode=mode) for s in SPLITS},
        y={s: np.load(directory / f"y_{s}.npy", mmap_mode=mode) for s in SPLITS},
        vocab=Vocabulary(json.loads((directory / "vocab.json").read_text())),
        name=meta["name"],
        from_cache=True,
    )


def load_dataset(
    cfg: DataConfig, seed: int, use_cache: bool = True, mmap: bool = False
) -> EncodedDataset:
    """The encoded dataset for `cfg` and split `seed`, from the cache when it is there."""
    if not use_cache:
        return encode(load_raw(cfg), cfg, seed)
    for f in source_files(cfg) or []:
        if not f.is_file():
            raise DataError("file not found", path=f)
    entry = cfg.resolved_cache_dir() / f"{cfg.source}-{cache_key(cfg, seed)}"
    if (entry / "meta.json").is_file():
        log.info("using cached dataset %s", entry)
        return _load(entry, mmap)
    ds = encode(load_raw(cfg), cfg, seed)
    _save(ds, entry)
    log.info("cached dataset at %s", entry)
    return ds
