"""Typed run configs. Every section forbids unknown keys, so a typo is an error, not a default.

A config file is YAML with three sections, `data`, `model` and `train`. The
`model` section is `{name: ..., **options}`; its options are validated by the
options class the named model registers (see `gprec.models.registry`).

Every field carries a `description`: `gprec config show` prints them, so the
meaning of a key lives next to its declaration.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gprec.errors import ConfigError

DATA_ROOT_ENV = "GPREC_DATA"
CACHE_DIR_ENV = "GPREC_CACHE"
# numpy's legacy seeding (np.random.seed) takes 0 .. 2**32 - 1; one range for every seed
# keeps a seed that works in one place from failing in another.
SEED_MAX = 2**32 - 1


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def key_error(loc: tuple[str | int, ...], message: str, value: Any = None) -> ValidationError:
    """A pydantic error at `loc` (relative to the model being validated).

    Raised inside a validator, pydantic prefixes the enclosing location, so a
    nested check still reports the full dotted key (`model.backbone.name`).
    """
    error = PydanticCustomError("gprec", "{msg}", {"msg": message})
    return ValidationError.from_exception_data(
        "config", [{"type": error, "loc": loc, "input": value}]
    )


class SyntheticData(StrictModel):
    """Knobs of the built-in generator (`gprec.data.synth.SynthConfig`)."""

    n_users: int = Field(2000, gt=0, description="number of users")
    n_items: int = Field(500, gt=0, description="number of items")
    n_interactions: int = Field(
        100_000,
        gt=0,
        description="number of interactions, each a distinct user-item pair: "
        "at most half of n_users * n_items",
    )
    n_groups: int = Field(
        8, gt=0, description="number of planted user groups (a user is in 1 to 3 of them)"
    )
    seed: int = Field(
        0,
        ge=0,
        le=SEED_MAX,
        description="generator seed: the same settings and seed give the same data",
    )

    @model_validator(mode="after")
    def _generator_accepts(self) -> SyntheticData:
        # The generator owns the cross-field rules; checking them here names the key
        # before anything is written. Defaults are valid, and skipping them keeps
        # numpy out of `import gprec.config` (the class default is built at import).
        if not self.model_fields_set:
            return self
        from gprec.data.synth import SynthConfig, SynthConfigError

        try:
            SynthConfig(**self.model_dump())
        except SynthConfigError as e:
            raise key_error(
                (e.field,), e.message(lambda f: f"data.synthetic.{f}"), getattr(self, e.field, None)
            ) from None
        return self


class DataConfig(StrictModel):
    source: Literal["synthetic", "ml-100k", "ml-1m", "generic", "agree"] = Field(
        "synthetic",
        description="dataset: the built-in synthetic one, MovieLens 100K or 1M, "
        "your own files described by a schema YAML (generic), or a group-recommendation "
        "folder in the AGREE/ConsRec layout (agree: Mafengwo's; docs/group-data.md)",
    )
    # A data directory (MovieLens) or a schema YAML (generic). A relative path is
    # taken from $GPREC_DATA when that is set, else from the working directory.
    path: str | None = Field(
        None,
        description="MovieLens directory or generic schema YAML; a relative path is "
        "looked up under $GPREC_DATA when that is set, else the working directory",
    )
    ratings_file: str = Field(
        "ratings.dat",
        description="ml-1m: the ratings file in data.path (the timestamp-less layout is read too)",
    )
    label_threshold: float | None = Field(
        3.0,
        description="label is 1 when the target (rating) is above this; null: the target is 0/1",
    )
    target: Literal["label", "value", "positive"] = Field(
        "label",
        description="label: a 0/1 label (via label_threshold), for train.task binary or "
        "implicit; value: the target itself (a rating), for train.task regression; positive: "
        "every row is an observed interaction (an implicit-feedback log), for train.task implicit",
    )
    split: Literal["random", "hash", "leave_last_out", "file"] = Field(
        "random",
        description="random: rows split by data.split_ratios; hash: each row's split drawn from "
        "a seeded hash of its field values with data.split_ratios as probabilities (rows equal "
        "in every field share a split; the same rows whether read whole or streamed); "
        "leave_last_out: each user's latest interaction is test, the one before valid (needs "
        "timestamps); file: the source's own test rows, validation carved from its training "
        "rows by data.split_ratios (agree)",
    )
    split_ratios: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1),
        description="train, valid and test fractions of the random or hash split "
        "(non-negative, sum 1)",
    )
    split_seed: int | None = Field(
        None,
        ge=0,
        le=SEED_MAX,
        description="seed of the split; null: train.seed, so one seed fixes the split too",
    )
    cache_dir: str | None = Field(
        None,
        description="where encoded datasets are cached; null: $GPREC_CACHE, else ./.gprec_cache",
    )
    user_groups: int | None = Field(
        None,
        ge=2,
        description="KMeans clusters of the training users over their user fields (one-hot), "
        "added as a user field 'group' (the DMTL paper: 20); null: none",
    )
    duplicates: Literal["warn", "drop", "error"] = Field(
        "warn",
        description="what to do with repeated interaction rows (all fields equal): warn keeps "
        "them and warns with the count, drop keeps the last occurrence (the latest by timestamp "
        "when there is one), error refuses",
    )
    synthetic: SyntheticData = Field(
        SyntheticData(), description="the built-in generator's settings (data.source: synthetic)"
    )
    format: Literal["memory", "parquet-stream"] = Field(
        "memory",
        description="memory: the whole dataset is read and encoded in memory (the fastest); "
        "parquet-stream: for data larger than memory, a generic dataset whose interactions are "
        "Parquet is read by row groups, encoded into the dataset cache and trained from disk "
        "through a bounded shuffle buffer (needs data.split: hash and train.task: binary; "
        "docs/streaming.md)",
    )
    shuffle_buffer: int = Field(
        262_144,
        gt=0,
        description="data.format parquet-stream: training rows held and shuffled together, "
        "drawn as runs of 4,096 rows from random places in the file (raise it for a better "
        "mix, lower it for less memory: a few times this many rows x (4 bytes per field + 4), "
        "whatever the dataset's size; about 70 MB at the default with 8 fields)",
    )

    @model_validator(mode="after")
    def _stream_needs(self) -> DataConfig:
        """What a streamed dataset cannot do: each needs all rows in memory at once."""
        if self.format != "parquet-stream":
            return self
        if self.source != "generic":
            raise key_error(
                ("format",),
                "parquet-stream reads a generic dataset (a schema YAML naming Parquet "
                f"interactions); data.source is {self.source}",
                self.format,
            )
        needs = {
            "split": ("hash", "the split is drawn row by row from a hash of the row"),
            "duplicates": (
                "warn",
                "repeated rows are kept: finding them needs the whole file in memory, and the "
                "hash split puts rows equal in every field into the same split",
            ),
            "target": ("label", "it trains a 0/1 label (train.task binary)"),
        }
        for key, (value, why) in needs.items():
            if getattr(self, key) != value:
                raise key_error(
                    (key,),
                    f"data.format parquet-stream needs {value} ({why}), not {getattr(self, key)}",
                    getattr(self, key),
                )
        if self.user_groups is not None:
            raise key_error(
                ("user_groups",),
                "data.format parquet-stream cannot cluster users (KMeans needs every training "
                "user in memory); set it to null",
                self.user_groups,
            )
        return self

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
    lr: float = Field(0.002, gt=0, description="Adam learning rate")
    weight_decay: float = Field(1e-6, ge=0, description="Adam weight decay (L2 penalty)")
    batch_size: int = Field(4096, gt=0, description="training rows per step")
    eval_batch_size: int = Field(
        65536, gt=0, description="rows per forward pass when scoring valid/test (memory only)"
    )
    max_epochs: int = Field(100, gt=0, description="upper bound on training epochs")
    patience: int = Field(
        4, ge=1, description="epochs without a better validation AUC before training stops"
    )
    lr_step: int = Field(8, gt=0, description="StepLR: epochs between learning-rate decays")
    lr_gamma: float = Field(0.8, gt=0, description="StepLR: factor applied at each decay")
    seed: int = Field(
        2024,
        ge=0,
        le=SEED_MAX,
        description="seed of initialisation and batch order, and of the split unless "
        "data.split_seed is set",
    )
    shuffle: bool = Field(
        True, description="reshuffle training rows each epoch; false keeps the data's order"
    )
    drop_last: bool = Field(
        False,
        description="drop each epoch's last, partial training batch (a last batch of one row is "
        "always dropped when the model has BatchNorm, which cannot train on one row)",
    )
    threads: int | None = Field(None, gt=0, description="torch CPU threads; null: torch's default")
    task: Literal["binary", "regression", "implicit"] = Field(
        "binary",
        description="what is learned: binary (CTR: BCE, AUC / LogLoss, early stopping on AUC), "
        "regression (the target value: MSE, RMSE / MAE, early stopping on RMSE; needs "
        "data.target: value) or implicit (rows labelled 1 as positives against sampled "
        "negatives: BCE, HR / NDCG@5,10 against unseen items, early stopping on NDCG@10)",
    )
    negatives: int = Field(
        4, ge=1, description="train.task implicit: sampled negatives per positive in training"
    )
    eval_negatives: int = Field(
        100,
        ge=1,
        description="train.task implicit: unseen items each held-out positive is ranked against",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="training matmuls in float32, or bfloat16 under autocast (weights, optimizer "
        "and loss stay float32); bf16 is fast only on hardware with native bfloat16 (CPUs with "
        "AVX512-BF16 or AMX, recent GPUs) and slow elsewhere",
    )
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N")
    progress: bool = Field(
        True, description="show a progress bar while training (only on a terminal)"
    )


class RunConfig(StrictModel):
    data: DataConfig = Field(DataConfig(), description="what to train on")
    model: dict[str, Any] = Field(
        default_factory=lambda: {"name": "mlp"},
        description="the model: model.name and that model's options",
    )
    train: TrainConfig = Field(TrainConfig(), description="how to train")

    @field_validator("model", mode="before")
    @classmethod
    def _model_is_a_section(cls, v: Any) -> Any:
        if isinstance(v, str):
            raise key_error((), f"a section, not a name: write model.name={v}", v)
        return v

    @model_validator(mode="after")
    def _agree_is_the_group_task(self) -> RunConfig:
        """An AGREE-layout folder holds positives and its own test rows with their negatives:
        it is learned as implicit feedback on its own split, ranked against those lists."""
        agree = self.data.source == "agree"
        if agree and self.data.split != "file":
            raise key_error(
                ("data", "split"), "source agree has its own test rows: use file", self.data.split
            )
        if not agree and self.data.split == "file":
            raise key_error(
                ("data", "split"), "file needs a source with its own test rows (agree)", "file"
            )
        if agree and (self.train.task, self.data.target) != ("implicit", "positive"):
            raise key_error(
                ("train", "task"),
                "source agree holds positives with listed negatives: set train.task: implicit "
                "and data.target: positive",
                self.train.task,
            )
        return self

    @model_validator(mode="after")
    def _stream_trains_binary(self) -> RunConfig:
        """Regression and implicit feedback read every training row at once (the target's
        scale, the items each user met), which a stream from disk never holds."""
        if self.data.format == "parquet-stream" and self.train.task != "binary":
            raise key_error(
                ("train", "task"),
                f"is {self.train.task}, but data.format parquet-stream trains only binary "
                "(CTR) tasks; use data.format memory",
                self.train.task,
            )
        return self

    @model_validator(mode="after")
    def _target_fits_the_task(self) -> RunConfig:
        allowed = {
            "binary": ("label",),
            "regression": ("value",),
            "implicit": ("label", "positive"),
        }[self.train.task]
        if self.data.target not in allowed:
            what = {"label": "a 0/1 label", "value": "a target value", "positive": "positives"}
            raise key_error(
                ("data", "target"),
                f"is {self.data.target}, but train.task {self.train.task} learns "
                f"{' or '.join(what[a] for a in allowed)}: set data.target: {allowed[0]}",
                self.data.target,
            )
        return self

    @model_validator(mode="after")
    def _init_from_of_this_seed(self) -> RunConfig:
        """`model.init_from` may name one run per seed (`runs/mlp/seed-{seed}`): this config's
        train.seed fills it in, so a multi-seed experiment starts each seed from its own run.
        Mutated in place: pydantic built this dict, and assigning it would validate again."""
        path = self.model.get("init_from")
        if isinstance(path, str) and "{seed}" in path:
            self.model["init_from"] = path.replace("{seed}", str(self.train.seed))
        return self

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


Problem = tuple[str, str]  # (dotted key or "", message)


def validation_problems(err: ValidationError, prefix: str = "") -> list[Problem]:
    """Each error as (dotted key, message), e.g. `("train.lrr", "unknown key")`."""
    out = []
    for e in err.errors():
        key = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        else:
            msg = e["msg"].removeprefix("Value error, ")  # pydantic's prefix for ValueError
        out.append((key, msg))
    return out


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem, naming the dotted key, e.g. `train.lrr: unknown key`."""
    return "; ".join(f"{k}: {m}" if k else m for k, m in validation_problems(err, prefix))


def _override_key(item: str) -> str:
    return item.partition("=")[0].strip()


def describe_problems(problems: list[Problem], source: str, overrides: Sequence[str] = ()) -> str:
    """One line blaming each problem on where its key came from: `--set k=v` or `source`.

    A problem at, below or above a key an override set is the override's (the
    last such override, as the last one is in force). The key is always named,
    since a `--set` of a section can hold many.
    """
    by_origin: dict[str, list[str]] = {}
    for key, msg in problems:
        item = _blamed_override(key, overrides)
        origin = source if item is None else f"--set {item}"
        by_origin.setdefault(origin, []).append(f"{key}: {msg}" if key else msg)
    return "; ".join(f"{origin}: {'; '.join(texts)}" for origin, texts in by_origin.items())


def _blamed_override(key: str, overrides: Sequence[str]) -> str | None:
    if not key:
        return None
    below = None
    for item in reversed(overrides):
        okey = _override_key(item)
        if key == okey or key.startswith(okey + "."):
            return item
        if below is None and okey.startswith(key + "."):
            below = item  # e.g. an unknown section the override created
    return below


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, first: int, second: int):
        super().__init__(f"{key} is given twice (lines {first} and {second})")
        self.key, self.first, self.second = key, first, second


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last).

    The check runs on the composed node tree, so it can name the dotted key and
    both lines; merge keys (`<<`) may still override what they merge in.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        _check_duplicate_keys(node, (), set())
        return super().construct_document(node)


def _check_duplicate_keys(node: yaml.Node, path: tuple[str, ...], seen: set[int]) -> None:
    if id(node) in seen:  # an alias of a node already checked (and no infinite recursion)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _check_duplicate_keys(value_node, path, seen)
                continue
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode):
                ident = (key_node.tag, key_node.value)
                if ident in lines:
                    raise _DuplicateKey(".".join((*path, name)), lines[ident], line)
                lines[ident] = line
            _check_duplicate_keys(value_node, (*path, name), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, (*path, str(i)), seen)


def _load_yaml_text(text: str) -> Any:
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - ConfigLoader is a SafeLoader


def _yaml_error(where: str, e: yaml.YAMLError, text: str) -> ConfigError:
    """`e` as one line naming the file and line."""
    if isinstance(e, _DuplicateKey):
        return ConfigError(f"{where}: {e}; give each key once")
    if isinstance(e, yaml.reader.ReaderError):  # a control character: binary, not YAML
        line = text.count("\n", 0, max(e.position, 0)) + 1
        return ConfigError(
            f"{where}, line {line}: not a YAML config (control character #x{e.character:04x})"
        )
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        msg = f"{where}, line {e.problem_mark.line + 1}: invalid YAML: {e.problem}"
        if e.context and e.context_mark is not None:
            msg += f" ({e.context} at line {e.context_mark.line + 1})"
        return ConfigError(msg)
    return ConfigError(f"{where}: invalid YAML ({str(e).splitlines()[0]})")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's top-level mapping; any problem is a one-line ConfigError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if not (path.is_file() or path.is_fifo()):  # e.g. /dev/urandom: reading would never end
        raise ConfigError(f"{path}: not a regular file, so not a config file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}), "
            "so not a YAML config"
        ) from None
    try:
        raw = _load_yaml_text(text)
    except yaml.YAMLError as e:
        raise _yaml_error(str(path), e, text) from None
    if raw is None:
        raise ConfigError(
            f"{path}: the config file is empty; to run the built-in default "
            "(synthetic data, MLP), leave out --config"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `key.sub=value` strings; values are parsed as YAML (`0.1`, `[64, 32]`, `null`)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(p.strip() for p in parts):
            raise ConfigError(f"--set {item}: expected key=value, e.g. train.lr=0.001")
        try:
            parsed = _load_yaml_text(value)
        except _DuplicateKey as e:
            raise ConfigError(f"--set {item}: {e}") from None
        except yaml.YAMLError:
            parsed = value  # not YAML: the plain string (e.g. a path with a colon)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:  # absent, or an empty `section:` in the file
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item}: '{part}' is not a section")
            node = child
        node[parts[-1]] = parsed
    return out


def parse_config(
    raw: dict[str, Any], source: str = "config", overrides: Sequence[str] = ()
) -> RunConfig:
    """Validate a raw mapping, including the model's own options, into a RunConfig.

    `overrides` are the `--set key=value` strings already applied to `raw`: an
    error in a key one of them set is reported as that `--set`'s, not `source`'s.
    """
    from gprec.models.registry import validate_model_options

    problems: list[Problem] = []
    cfg = None
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        problems += validation_problems(e)
    model = raw.get("model", {"name": "mlp"}) if isinstance(raw, dict) else None
    options = None
    if isinstance(model, dict):  # else RunConfig already said what is wrong with it
        try:
            options = validate_model_options({"name": "mlp", **model})
        except ValidationError as e:
            problems += validation_problems(e, "model")
    if cfg is not None and options is not None:
        from gprec.models.registry import model_class

        tasks = model_class(options["name"]).tasks
        if cfg.train.task not in tasks:
            problems.append(
                (
                    "train.task",
                    f"model {options['name']} trains only train.task {' or '.join(tasks)}",
                )
            )
    if problems:
        raise ConfigError(describe_problems(problems, source, overrides))
    assert cfg is not None and options is not None
    cfg.model = options
    return cfg


# What `gprec train` runs without --config: the MLP on built-in synthetic data. It equals
# configs/synthetic/mlp.yaml (a test checks); small batches suit the small dataset.
BUILTIN_DEFAULT: dict[str, Any] = {"data": {"source": "synthetic"}, "train": {"batch_size": 512}}


ConfigPaths = str | Path | Sequence[str | Path] | None


def merge_sections(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` laid over `base`, key by key; a `model` section naming another model replaces
    the base's whole model section (its options belong to the other model)."""
    out = dict(base)
    for key, value in overlay.items():
        old = out.get(key)
        if (
            key == "model"
            and isinstance(value, dict)
            and isinstance(old, dict)
            and "name" in value
            and value["name"] != old.get("name", "mlp")
        ):
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(old, dict):
            out[key] = merge_sections(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's sections, laid over those of the files its `base:` names (a path relative
    to the file, or a list of them, merged in order): configs are composed, not copied."""
    path = Path(path)
    raw = read_yaml(path)
    bases = raw.pop("base", None)
    if bases is None:
        return raw
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: base must be a config file path or a list of them")
    merged: dict[str, Any] = {}
    chain = (*_chain, path.resolve())
    for name in bases:
        base_path = path.parent / Path(name).expanduser()
        if base_path.resolve() in chain:
            raise ConfigError(f"{path}: base {name} includes {path.name} again (a cycle)")
        if not base_path.exists():
            raise ConfigError(f"{path}: base {name}: config file not found ({base_path})")
        merged = merge_sections(merged, read_config(base_path, chain))
    return merge_sections(merged, raw)


def _config_paths(paths: ConfigPaths) -> list[str]:
    if paths is None:
        return []
    if isinstance(paths, str | Path):
        return [str(paths)]
    return [str(p) for p in paths]


def read_configs(paths: ConfigPaths) -> dict[str, Any]:
    """The raw config of one or more files, each laid over the ones before it (`-c a -c b`);
    the built-in default when there are none."""
    paths = _config_paths(paths)
    if not paths:
        return copy.deepcopy(BUILTIN_DEFAULT)
    raw: dict[str, Any] = {}
    for p in paths:
        raw = merge_sections(raw, read_config(p))
    return raw


def config_source(paths: ConfigPaths) -> str:
    """How errors name the config: its file(s), or `config` for the built-in default."""
    return " + ".join(_config_paths(paths)) or "config"


def load_config(paths: ConfigPaths, overrides: Sequence[str] | None = None) -> RunConfig:
    raw = apply_overrides(read_configs(paths), overrides or [])
    return parse_config(raw, config_source(paths), overrides or [])


def dump_config(cfg: RunConfig) -> str:
    """The fully resolved config as YAML (see `RunConfig.resolved`)."""
    return yaml.safe_dump(cfg.resolved().model_dump(mode="json"), sort_keys=False)
