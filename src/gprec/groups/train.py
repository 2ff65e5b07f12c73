"""`gprec groups train`: a per-user model trained on the members' and the groups' histories,
evaluated on the groups' held-out choices, and the run directory it leaves.

What the model learns from (`train.user_rows`, `train.group_rows`):
- the members' own interactions (user rows), where the data has them;
- the groups' training interactions, either through the group's profile (`profile`: the
  member mean of `h_u` goes through the model, so a group's choice trains its members'
  representations; DMTL) or credited to every member (`members`: the group's item becomes a
  row of each member; any model), or not at all (`none`).
The profiling label of a user row (DMTL) is one of the user's groups, drawn anew each epoch
(a member of several groups is labelled by each in turn); a group row's is its own group.

Training: implicit feedback (AGREE layout) is BCE over each positive and `train.negatives`
items drawn uniformly from the catalogue; explicit ratings (ITM-Rec) are MSE around the
training targets' mean. Epochs are chosen on the validation cases scored the way the run
scores groups (`train.score`): NDCG@10 of the strict sampled ranking, or RMSE; never on test.

Test: for implicit feedback, the strict sampled protocol on the dataset's own lists (cleaned,
ties against the held-out item) and full ranking over every item the group did not choose in
training, each beside the perfect and random rankers, and the per-member satisfaction (mean,
minimum) of each group's top-10; for ratings, RMSE and MAE of the held-out group ratings.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from pydantic import Field, ValidationError

from gprec.config import (
    DATA_ROOT_ENV,
    StrictModel,
    apply_overrides,
    format_validation_error,
    read_configs,
)
from gprec.data.groups import GroupData, load_group_data
from gprec.errors import ConfigError
from gprec.evaluation.aggregation import member_satisfaction, top_k
from gprec.evaluation.metrics import regression_metrics
from gprec.evaluation.ranking import (
    full_ranking_report,
    rank_metrics,
    sampled_ranking_report,
    sampled_ranks,
)
from gprec.groups.data import GroupSplit, GroupTables, encode_tables, split_groups, user_rows
from gprec.groups.scoring import (
    METHODS,
    GroupScorer,
    check_method,
    group_profile,
    item_rows,
    supports_profile,
)
from gprec.io import save_atomic, write_bytes_atomic, write_text_atomic
from gprec.models.registry import build_model
from gprec.training.run import count_parameters
from gprec.training.run_dir import (
    claim_run_dir,
    prepare_run_dir,
    read_metrics,
    recording_status,
)
from gprec.training.trainer import seed_everything

INDEX = "group_index.npz"


class GroupDataConfig(StrictModel):
    path: str = Field(
        ...,
        description="folder of group data: the AGREE/ConsRec layout or ITM-Rec's CSV files "
        f"(relative to ${DATA_ROOT_ENV} when set, else to the working directory)",
    )
    valid_ratio: float = Field(
        0.1, gt=0, lt=1, description="share of the group training rows held out for validation"
    )
    test_ratio: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="share of the group rows held out for test, for data without its own test "
        "file (ITM-Rec); ignored where the data has one",
    )
    eval_negatives: int = Field(
        100, gt=0, description="negatives per validation case (implicit feedback)"
    )

    def resolved_path(self) -> Path:
        import os

        root = os.environ.get(DATA_ROOT_ENV)
        path = Path(self.path).expanduser()
        return path if path.is_absolute() or not root else Path(root) / path


class GroupTrainConfig(StrictModel):
    user_rows: bool = Field(True, description="train on the members' own interactions")
    group_rows: Literal["profile", "members", "none"] = Field(
        "profile",
        description="how the group training rows teach the model: through the member mean of "
        "h_u (profile; dmtl), credited to every member (members), or not at all (none)",
    )
    score: str = Field(
        "profile",
        description=f"how groups are scored in validation and test: {', '.join(METHODS)}",
    )
    negatives: int = Field(4, ge=1, description="sampled negatives per positive (implicit)")
    lr: float = Field(0.002, gt=0, description="Adam learning rate")
    weight_decay: float = Field(1e-6, ge=0, description="Adam weight decay")
    batch_size: int = Field(256, gt=0, description="positives per step")
    max_epochs: int = Field(50, gt=0, description="upper bound on training epochs")
    patience: int = Field(5, gt=0, description="epochs without a better validation score")
    seed: int = Field(2024, ge=0, description="fixes the split, the initialisation and sampling")
    threads: int | None = Field(None, gt=0, description="torch CPU threads; null: torch's default")


class GroupRunConfig(StrictModel):
    data: GroupDataConfig
    model: dict[str, Any] = Field(..., description="the per-user model: name and its options")
    train: GroupTrainConfig = GroupTrainConfig()


def load_group_config(paths: list[str], overrides: list[str] = ()) -> GroupRunConfig:
    """Configs laid over one another, then `--set` overrides; one-line errors."""
    if not paths:
        raise ConfigError(
            "gprec groups train needs --config (e.g. configs/groups/mafengwo-dmtl.yaml)"
        )
    raw = apply_overrides(read_configs(paths), overrides)
    try:
        cfg = GroupRunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{', '.join(paths)}: {format_validation_error(e)}") from None
    if "name" not in cfg.model:
        raise ConfigError(f"{', '.join(paths)}: model.name is missing")
    return cfg


def dump_group_config(cfg: GroupRunConfig) -> str:
    data = cfg.data.model_copy(update={"path": str(cfg.data.resolved_path().resolve())})
    return yaml.safe_dump(
        cfg.model_copy(update={"data": data}).model_dump(mode="json"), sort_keys=False
    )


def _build(cfg: GroupRunConfig, tables: GroupTables):
    try:
        return build_model(cfg.model, tables.fields)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, prefix="model")) from None


def needs_group_field(model_section: dict) -> bool:
    """Whether the model classifies groups (it names a `group_field`), so rows carry the label."""
    from gprec.models.registry import model_class

    return "group_field" in model_class(str(model_section["name"])).Options.model_fields


@dataclass
class Samples:
    """One epoch's positives: member rows (user, item, target, group label or -1) and, for
    `group_rows: profile`, group rows (group, item, target)."""

    user: np.ndarray
    user_item: np.ndarray
    user_y: np.ndarray
    fixed_label: np.ndarray  # -1 where the label is drawn, else the group
    group: np.ndarray
    group_item: np.ndarray
    group_y: np.ndarray


def _samples(cfg: GroupTrainConfig, data: GroupData, tables: GroupTables, split: GroupSplit):
    explicit = data.feedback == "explicit"
    parts_u, parts_i, parts_y, parts_l = [], [], [], []
    if cfg.user_rows:
        u, i, r = user_rows(data)
        parts_u.append(u), parts_i.append(i)
        parts_y.append(r if explicit else np.ones(len(u)))
        parts_l.append(np.full(len(u), -1))
    gy = split.train_rating if explicit else np.ones(len(split.train_group))
    if cfg.group_rows == "members":
        users, case = tables.members(split.train_group)
        parts_u.append(users), parts_i.append(split.train_item[case]), parts_y.append(gy[case])
        parts_l.append(split.train_group[case])
    empty = np.zeros(0, np.int64)
    cat = lambda parts: np.concatenate(parts) if parts else empty  # noqa: E731
    profile = cfg.group_rows == "profile"
    return Samples(
        user=cat(parts_u).astype(np.int64),
        user_item=cat(parts_i).astype(np.int64),
        user_y=cat(parts_y).astype(np.float64),
        fixed_label=cat(parts_l).astype(np.int64),
        group=split.train_group if profile else empty,
        group_item=split.train_item if profile else empty,
        group_y=gy if profile else np.zeros(0),
    )


def _labels(tables: GroupTables, users: np.ndarray, fixed: np.ndarray, rng) -> np.ndarray:
    """Each row's profiling label: `fixed` where set, else one of the user's groups (-1: none)."""
    off = tables.user_group_offsets
    k = off[users + 1] - off[users]
    pick = off[users] + np.floor(rng.random(len(users)) * np.maximum(k, 1)).astype(np.int64)
    drawn = np.where(
        k > 0, tables.user_group_list[np.minimum(pick, len(tables.user_group_list) - 1)], -1
    )
    return np.where(fixed >= 0, fixed, drawn)


@dataclass
class FitResult:
    best_valid: dict[str, float]
    best_epoch: int
    epochs_run: int
    seconds: float
    log: list[dict[str, Any]]


class GroupTrainer:
    def __init__(self, cfg: GroupRunConfig, data: GroupData, tables: GroupTables, model, split):
        self.cfg, self.data, self.tables, self.model, self.split = cfg, data, tables, model, split
        self.explicit = data.feedback == "explicit"
        self.samples = _samples(cfg.train, data, tables, split)
        if len(self.samples.user) + len(self.samples.group) == 0:
            raise ConfigError(
                "train.user_rows is false and train.group_rows is none: nothing to train on"
            )
        targets = np.concatenate([self.samples.user_y, self.samples.group_y])
        self.offset = float(targets.mean()) if self.explicit else 0.0
        check_method(model, cfg.train.score)
        if self.explicit and cfg.train.score == "borda":
            raise ConfigError(
                "train.score: borda ranks candidates, and a rating is predicted for one item: "
                "use profile, average, least_misery or most_pleasure for explicit ratings"
            )
        if cfg.train.group_rows == "profile":
            check_method(model, "profile", "train.group_rows")

    def _loss(self, out, y: torch.Tensor) -> torch.Tensor:
        if self.explicit:
            loss = F.mse_loss(out.logit + self.offset, y)
        else:
            loss = F.binary_cross_entropy_with_logits(out.logit, y)
        return loss + sum(out.aux_losses.values(), torch.zeros(()))

    def _expand(
        self, items: np.ndarray, y: np.ndarray, rng
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Implicit: each positive then its negatives; `take` repeats the row's other columns."""
        n, k = len(items), self.cfg.train.negatives
        if self.explicit:
            return np.arange(n), items, y
        neg = rng.integers(0, self.tables.n_items, size=n * k)
        take = np.concatenate([np.arange(n), np.repeat(np.arange(n), k)])
        return take, np.concatenate([items, neg]), np.concatenate([y, np.zeros(n * k)])

    def _step_users(self, idx, rng) -> torch.Tensor:
        s = self.samples
        labels = _labels(self.tables, s.user[idx], s.fixed_label[idx], rng)
        take, items, y = self._expand(s.user_item[idx], s.user_y[idx], rng)
        x = self.tables.rows(s.user[idx][take], items, labels[take])
        return self._loss(self.model(x), torch.as_tensor(y, dtype=torch.float32))

    def _step_groups(self, idx, rng) -> torch.Tensor:
        s = self.samples
        groups = s.group[idx]
        take, items, y = self._expand(s.group_item[idx], s.group_y[idx], rng)
        h = group_profile(self.model, self.tables, groups)[torch.from_numpy(take)]
        out = self.model.forward_from_user(h, item_rows(self.tables, items, groups[take]))
        return self._loss(out, torch.as_tensor(y, dtype=torch.float32))

    def validate(self) -> dict[str, float]:
        scorer = GroupScorer(self.model, self.tables, self.cfg.train.score, self.offset)
        v = self.split.valid
        s = scorer.cases(v.group, v.candidates(), v.candidate_mask())
        if self.explicit:
            return regression_metrics(v.rating, s[:, 0])
        ranks = sampled_ranks(s[:, 0], s[:, 1:], v.mask)
        return {name: float(a.mean()) for name, a in rank_metrics(ranks).items()}

    @property
    def monitor(self) -> str:
        return "rmse" if self.explicit else "ndcg@10"

    def fit(self, log=None) -> FitResult:
        t = self.cfg.train
        rng = np.random.default_rng(t.seed)
        opt = torch.optim.Adam(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        sign = 1.0 if self.explicit else -1.0  # lower is better after the sign
        best, best_epoch, best_state, history = np.inf, 0, None, []
        started = time.perf_counter()
        epoch = 0
        for epoch in range(1, t.max_epochs + 1):
            self.model.train()
            batches = [
                ("u", b)
                for b in np.array_split(
                    rng.permutation(len(self.samples.user)),
                    max(1, -(-len(self.samples.user) // t.batch_size)),
                )
            ]
            if len(self.samples.group):
                n_g = len(self.samples.group)
                batches += [
                    ("g", b)
                    for b in np.array_split(rng.permutation(n_g), max(1, -(-n_g // t.batch_size)))
                ]
            total = 0.0
            for which, idx in (batches[j] for j in rng.permutation(len(batches))):
                if len(idx) == 0:
                    continue
                loss = self._step_users(idx, rng) if which == "u" else self._step_groups(idx, rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            self.model.eval()
            valid = self.validate()
            history.append(
                {
                    "epoch": epoch,
                    "loss": total / max(1, len(self.samples.user) + len(self.samples.group)),
                    "valid": valid,
                }
            )
            if log:
                log(
                    f"epoch {epoch}: loss {history[-1]['loss']:.4f} valid {self.monitor} {valid[self.monitor]:.4f}"
                )
            if sign * valid[self.monitor] < best:
                best, best_epoch = sign * valid[self.monitor], epoch
                best_state = copy.deepcopy(self.model.state_dict())
            elif epoch - best_epoch >= t.patience:
                break
        if best_state is None:
            raise ConfigError(
                f"validation {self.monitor} was never a number in {epoch} epochs (the model's "
                "outputs diverged?): no epoch to choose; lower train.lr"
            )
        self.model.load_state_dict(best_state)
        self.model.eval()
        return FitResult(
            best_valid=history[best_epoch - 1]["valid"],
            best_epoch=best_epoch,
            epochs_run=epoch,
            seconds=time.perf_counter() - started,
            log=history,
        )

    def test(self, k: int = 10) -> dict[str, Any]:
        """The test metrics of the run's scoring method (see the module docstring)."""
        scorer = GroupScorer(self.model, self.tables, self.cfg.train.score, self.offset)
        te = self.split.test
        if self.explicit:
            s = scorer.cases(te.group, te.candidates())[:, 0]
            others = {
                m: regression_metrics(
                    te.rating,
                    GroupScorer(self.model, self.tables, m, self.offset).cases(
                        te.group, te.candidates()
                    )[:, 0],
                )
                for m in ("profile", "average", "least_misery", "most_pleasure")
                if m != scorer.method and (m != "profile" or supports_profile(self.model))
            }
            return regression_metrics(te.rating, s) | {"cases": len(te), "other_methods": others}
        s = scorer.cases(te.group, te.candidates(), te.candidate_mask())
        sampled = sampled_ranking_report(s[:, 0], s[:, 1:], te.mask).to_dict()
        # The same model scored every other way (the epoch is the one chosen for the run's
        # own method): how much the way of scoring a group matters, at no extra training.
        others = {}
        for method in METHODS:
            if method == scorer.method or (
                method == "profile" and not supports_profile(self.model)
            ):
                continue
            o = GroupScorer(self.model, self.tables, method, self.offset).cases(
                te.group, te.candidates(), te.candidate_mask()
            )
            others[method] = sampled_ranking_report(o[:, 0], o[:, 1:], te.mask).metrics
        groups = np.unique(te.group)
        seen = self.split.seen[groups]
        matrix = scorer.group_matrix(groups, exclude=seen)
        truth = np.zeros_like(seen)
        where = np.searchsorted(groups, te.group)
        truth[where, te.item] = True
        full = full_ranking_report(matrix, seen, truth).to_dict()
        lists = top_k(matrix, k, exclude=seen)
        users, case = self.tables.members(groups)
        distinct, back = np.unique(users, return_inverse=True)
        member = GroupScorer(self.model, self.tables, "average", self.offset).user_matrix(distinct)[
            back
        ]
        sat = member_satisfaction(member, lists, case, exclude=seen)
        return {
            "sampled": sampled,
            "full": full,
            f"satisfaction@{k}": {"mean": sat.mean, "min": sat.min},
            "other_methods": others,
        }


def save_index(path: Path, data: GroupData, tables: GroupTables, split: GroupSplit) -> None:
    """What `gprec groups recommend` needs without the data: rows, memberships, seen items."""
    import io

    g, i = np.nonzero(split.seen)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        user_x=tables.user_x.numpy(),
        member_offsets=tables.member_offsets,
        member_users=tables.member_users,
        user_group_offsets=tables.user_group_offsets,
        user_group_list=tables.user_group_list,
        seen_group=g,
        seen_item=i,
        group_ids=data.group_ids.cast(str).to_numpy().astype(str),
        user_ids=data.user_ids.cast(str).to_numpy().astype(str),
        item_ids=data.item_ids.cast(str).to_numpy().astype(str),
    )
    write_bytes_atomic(path, buf.getvalue())


def run_group_training(
    cfg: GroupRunConfig, out_dir: Path | None, log=None, overwrite: bool = False
) -> dict:
    """Load, train, test and write the run directory (claimed first: nothing replaced silently)."""
    started = time.perf_counter()
    text = dump_group_config(cfg)
    if out_dir is not None:
        state = claim_run_dir(out_dir, text, overwrite)
        if state.kind == "finished" and not overwrite:
            (log or print)(
                f"{out_dir} holds a finished run of this config: reporting it, not retraining"
            )
            return read_metrics(out_dir) | {"reused": True}
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    data = load_group_data(cfg.data.resolved_path())
    tables = encode_tables(data, needs_group_field(cfg.model))
    split = split_groups(
        data, cfg.train.seed, cfg.data.valid_ratio, cfg.data.test_ratio, cfg.data.eval_negatives
    )
    seed_everything(cfg.train.seed)
    model = _build(cfg, tables)
    trainer = GroupTrainer(cfg, data, tables, model, split)

    def train_and_test() -> tuple[dict, list[dict]]:
        fit = trainer.fit(log)
        metrics = {
            "model": cfg.model["name"],
            "data": data.name,
            "seed": cfg.train.seed,
            "score": cfg.train.score,
            "group_rows": cfg.train.group_rows,
            "user_rows": cfg.train.user_rows,
            "monitor": trainer.monitor,
            "valid": fit.best_valid | {"best_epoch": fit.best_epoch},
            "test": trainer.test(),
            "epochs_run": fit.epochs_run,
            "train_seconds": fit.seconds,
            "parameters": count_parameters(model),
            "rows": {
                "user": len(trainer.samples.user),
                "group": len(trainer.samples.group),
                "valid_cases": len(split.valid),
                "test_cases": len(split.test),
            },
            "wall_seconds": time.perf_counter() - started,
            "environment": {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "python": platform.python_version(),
            },
        }
        return metrics, fit.log

    if out_dir is None:
        return train_and_test()[0]
    prepare_run_dir(out_dir)
    with recording_status(out_dir):
        metrics, epochs = train_and_test()
        write_text_atomic(out_dir / "config.yaml", text)
        save_atomic(
            {
                "state_dict": model.state_dict(),
                "fields": [
                    {"name": f.name, "role": str(f.role), "cardinality": f.cardinality}
                    for f in tables.fields
                ],
                "offset": trainer.offset,
                "item_col": tables.item_col,
                "group_col": tables.group_col,
            },
            out_dir / "model.pt",
        )
        save_index(out_dir / INDEX, data, tables, split)
        write_text_atomic(out_dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in epochs))
        write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
