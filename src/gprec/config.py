"""Typed run configs. Every section forbids unknown keys, so a typo is an error, not a default.

A config file is YAML with three sections, `data`, `model` and `train`. The
`model` section is `{name: ..., **options}`; its options are validated by the
options class the named model registers (see `gprec.models.registry`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gprec.errors import ConfigError

DATA_ROOT_ENV = "GPREC_DATA"
CACHE_DIR_ENV = "GPREC_CACHE"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticData(StrictModel):
    """Knobs of the built-in generator (`gprec.data.synth.SynthConfig`)."""

    n_users: int = Field(2000, gt=0)
    n_items: int = Field(500, gt=0)
    n_interactions: int = Field(100_000, gt=0)
    n_groups: int = Field(8, gt=0)
    seed: int = 0


class DataConfig(StrictModel):
    source: Literal["synthetic", "ml-100k", "ml-1m", "generic"] = "synthetic"
    # A data directory (MovieLens) or a schema YAML (generic). A relative path is
    # taken from $GPREC_DATA when that is set, else from the working directory.
    path: str | None = None
    ratings_file: str = "ratings.dat"  # ml-1m: also takes the timestamp-less layout
    label_threshold: float | None = 3.0  # label = target > threshold; None: target is 0/1
    split: Literal["random", "leave_last_out"] = "random"
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int | None = None  # None: the run's train.seed, so a seed fixes the split too
    cache_dir: str | None = None  # None: $GPREC_CACHE or ./.gprec_cache
    synthetic: SyntheticData = SyntheticData()

    @field_validator("split_ratios")
    @classmethod
    def _ratios_sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(r < 0 for r in v) or abs(sum(v) - 1.0) > 1e-6 or v[0] == 0:
            raise ValueError("split_ratios must be three non-negative numbers summing to 1")
        return v

    def resolved_path(self) -> Path:
        if self.path is None:
            raise ConfigError(f"data.path is required for data.source '{self.source}'")
        p = Path(os.path.expanduser(self.path))
        if not p.is_absolute() and os.environ.get(DATA_ROOT_ENV):
            p = Path(os.environ[DATA_ROOT_ENV]).expanduser() / p
        return p

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir or os.environ.get(CACHE_DIR_ENV) or ".gprec_cache")


class TrainConfig(StrictModel):
    lr: float = Field(0.002, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    batch_size: int = Field(4096, gt=0)
    eval_batch_size: int = Field(65536, gt=0)
    max_epochs: int = Field(100, gt=0)
    patience: int = Field(4, ge=1)  # epochs without a better validation AUC before stopping
    lr_step: int = Field(8, gt=0)  # StepLR step size, in epochs
    lr_gamma: float = Field(0.8, gt=0)
    seed: int = 2024
    shuffle: bool = True
    threads: int | None = Field(None, gt=0)  # None: torch's default
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")  # cpu | cuda | cuda:N
    progress: bool = True


class RunConfig(StrictModel):
    data: DataConfig = DataConfig()
    model: dict[str, Any] = Field(default_factory=lambda: {"name": "mlp"})
    train: TrainConfig = TrainConfig()

    def split_seed(self) -> int:
        return self.data.split_seed if self.data.split_seed is not None else self.train.seed

    def resolved(self) -> RunConfig:
        """This config with what depends on the environment or on other keys made explicit.

        A run directory's `config.yaml` must reproduce the run from anywhere: the data path
        and cache dir become absolute ($GPREC_DATA applied) and the split seed is written out.
        """
        data = self.data.model_copy(
            update={
                "path": None
                if self.data.path is None
                else str(self.data.resolved_path().resolve()),
                "cache_dir": str(self.data.resolved_cache_dir().resolve()),
                "split_seed": self.split_seed(),
            }
        )
        return self.model_copy(update={"data": data})


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem, naming the dotted key, e.g. `train.lrr: unknown key`."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{key}: {msg}" if key else msg)
    return "; ".join(parts)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    return data


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` strings; values are parsed as YAML (`0.1`, `[64, 32]`, `null`)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a section")
            node = child
        node[parts[-1]] = parsed
    return out


def parse_config(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a raw mapping, including the model's own options, into a RunConfig."""
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_validation_error(e)}") from None
    from gprec.models.registry import resolve_model_options

    cfg.model = resolve_model_options({"name": "mlp", **cfg.model}, source)
    return cfg


# What `gprec train` runs without --config: the MLP on built-in synthetic data. It equals
# configs/synthetic/mlp.yaml (a test checks); small batches suit the small dataset.
BUILTIN_DEFAULT: dict[str, Any] = {"data": {"source": "synthetic"}, "train": {"batch_size": 512}}


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    raw = read_yaml(path) if path is not None else copy.deepcopy(BUILTIN_DEFAULT)
    raw = apply_overrides(raw, overrides or [])
    return parse_config(raw, str(path) if path is not None else "config")


def dump_config(cfg: RunConfig) -> str:
    """The fully resolved config as YAML (see `RunConfig.resolved`)."""
    return yaml.safe_dump(cfg.resolved().model_dump(mode="json"), sort_keys=False)
