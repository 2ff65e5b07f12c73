"""The trainer: shuffled tensor slices, Adam + StepLR, early stopping on the task's validation
metric (AUC for CTR).

Batches are views into one permuted int tensor per epoch; there is no
per-sample Python anywhere on the hot path. The trainer knows nothing about
any particular model or target: the task (`training/tasks.py`, `train.task`) gives the main
loss, the prediction transform, the metrics and what early stopping watches; the trainer adds
whatever named auxiliary losses the model returns.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gprec.config import TrainConfig
from gprec.errors import ConfigError, GprecError
from gprec.io import save_atomic, write_text_atomic
from gprec.training.distributed import SINGLE, Dist
from gprec.training.resume import FORMAT, RESUME, capture_rng, restore_rng
from gprec.training.rows import (  # noqa: F401 (iterate_batches re-exported)
    RowSource,
    ShardedRows,
    TensorRows,
    iterate_batches,
)
from gprec.training.tasks import Task, make_task

Logger = Callable[[str], None]


class TrainingDiverged(GprecError):
    """The loss blew up: a setting (usually the learning rate) the user can change."""


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (init, dropout) and return a generator for shuffling."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def as_tensors(X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    X = np.ascontiguousarray(X, dtype=np.int64)
    y = np.ascontiguousarray(y, dtype=np.float32)
    return torch.from_numpy(X), torch.from_numpy(y)


def make_adam(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam, fused where this torch supports it for these parameters.

    fused: one pass over each parameter instead of ~6 elementwise kernels; on CPU it is
    several times faster for the same arithmetic. Torch before 2.4 fuses only on GPUs and
    refuses it at construction: the plain (foreach) Adam computes the same update.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@torch.no_grad()
def predict(
    model: torch.nn.Module, X: torch.Tensor, batch_size: int = 65536, transform=torch.sigmoid
) -> np.ndarray:
    """Predictions in evaluation mode: `transform` of the model's main output (the task's;
    the sigmoid gives CTR probabilities)."""
    was_training = model.training
    model.eval()
    out = [transform(model(xb).logit) for xb in X.split(batch_size)]
    model.train(was_training)
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.float32)


@dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    best_valid: dict[str, float]
    seconds_per_epoch: float
    eval_seconds_per_epoch: float
    samples_per_second: float
    history: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    resumed_from: int = 0  # the epoch of the checkpoint training went on from (0: none)
    checkpoint_seconds_per_epoch: float = 0.0  # writing resume.pt (this process's epochs)
    checkpoint_bytes: int = 0  # the last resume.pt's size


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        run_dir: Path | None = None,
        log: Logger | None = None,
        dist: Dist = SINGLE,
    ):
        """`dist`: this process's place in multi-process training (`training.distributed`);
        every process is given the same `run_dir`, and only rank 0 writes into it or logs."""
        self.model = model  # never wrapped: the training steps alone go through DDP
        self.cfg = cfg
        self.run_dir = run_dir
        self.dist = dist
        self.writes = run_dir is not None and dist.is_main()
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if not dist.is_main():
            self.log = lambda msg: None
        self.task = make_task(cfg)
        # BatchNorm cannot normalise a batch of one row in training: such a last batch is dropped.
        self._has_batch_norm = any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()
        )
        self._every_parameter_checked = False  # `_check_every_parameter_learns`

    def _autocast(self, device: torch.device):
        """bf16 autocast of the forward pass (`train.precision`); backward follows it. Evaluation
        stays float32, so metrics never depend on it."""
        enabled = self.cfg.precision == "bf16"
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def _progress(self, batches, total: int, epoch: int):
        show = self.cfg.progress and sys.stderr.isatty()
        return tqdm(batches, total=total, desc=f"epoch {epoch}", leave=False, disable=not show)

    def _train_epoch(
        self, rows, optimizer, generator, epoch, model=None
    ) -> tuple[dict[str, float], float]:
        """One epoch over `rows` (a `RowSource`, or an (X, y) pair of tensors); the steps go
        through `model` (the model under DDP in multi-process training)."""
        if not isinstance(rows, RowSource):
            rows = TensorRows(*rows)
        model = model if model is not None else self.model
        model.train()
        totals: dict[str, float] = {}
        size = self.cfg.batch_size
        # drop_last never drops the only batch (fewer rows than batch_size): that would not train.
        min_last = min(size, len(rows)) if self.cfg.drop_last else 2 if self._has_batch_norm else 1
        n_batches = rows.n_batches(size, min_last)
        order = generator if self.cfg.shuffle else None
        device = next(self.model.parameters()).device
        start = time.perf_counter()
        batches = rows.batches(size, order, min_last)
        for batch in self._progress(batches, n_batches, epoch):
            xb, yb = self.task.expand(batch[0], batch[1])
            # This process's part of a global batch (`ShardedRows`): its fraction of the rows.
            share = batch[2] if len(batch) > 2 else None
            with self._autocast(device):
                out = model(xb, yb)
            main = self.task.loss(out.logit.float(), yb)
            loss = (
                main + sum(v.float() for v in out.aux_losses.values()) if out.aux_losses else main
            )
            optimizer.zero_grad(set_to_none=True)
            if share is None:
                loss.backward()
            else:
                # DDP averages the processes' gradients: weighed by share * world, they average
                # to the gradient of the global batch's mean loss.
                (loss * (share * self.dist.world)).backward()
                if not self._every_parameter_checked:
                    self._check_every_parameter_learns()
            optimizer.step()
            # Summed as tensors: a .item() per step would make a GPU wait every step.
            for name, value in (
                ("loss", loss),
                (self.task.loss_name, main),
                *out.aux_losses.items(),
            ):
                value = value.detach() if share is None else value.detach() * share
                totals[name] = totals[name] + value if name in totals else value
        if self.dist.active:  # each process's shares of the batches' means: summed, the means
            names = list(totals)  # the same order in every process
            summed = self.dist.sum_(torch.stack([totals[k].float() for k in names]))
            totals = dict(zip(names, summed, strict=True))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        return {k: v.item() / n_batches for k, v in totals.items()}, seconds

    def _check_every_parameter_learns(self) -> None:
        """After the first multi-process step: DDP (find_unused_parameters=False) needs a
        gradient for every trainable parameter in every step, and would fail at the next step
        with a message that names none; this names them."""
        self._every_parameter_checked = True
        missing = [
            n for n, p in self.model.named_parameters() if p.requires_grad and p.grad is None
        ]
        if missing:
            shown = ", ".join(missing[:4]) + (
                f" and {len(missing) - 4} more" if len(missing) > 4 else ""
            )
            raise ConfigError(
                f"multi-process training needs a gradient for every trainable parameter in every "
                f"step (DDP), but this model leaves {shown} without one: train it as one process"
            )

    def evaluate(self, X: torch.Tensor, y: torch.Tensor, negatives=None) -> dict[str, float]:
        """The task's metrics of a split. In multi-process training every process scores its
        part of the rows and gets everyone's predictions: all compute the same metrics."""
        dist = self.dist
        dist.sync_buffers(self.model)  # every process predicts with rank 0's model

        def score(rows: torch.Tensor) -> np.ndarray:
            if dist.active:
                lo, hi = dist.shard(len(rows))
                part = predict(
                    self.model, rows[lo:hi], self.cfg.eval_batch_size, self.task.transform
                )
                prob = dist.gather_rows(part, len(rows))
            else:
                prob = predict(self.model, rows, self.cfg.eval_batch_size, self.task.transform)
            if not np.isfinite(prob).all():
                raise TrainingDiverged(
                    "training diverged: the model predicts NaN or infinity; lower train.lr "
                    f"(now {self.cfg.lr:g}) or check the data"
                )
            return prob

        return self.task.evaluate(score, X, y, negatives)

    def fit(
        self,
        X_train,
        y_train,
        X_valid,
        y_valid,
        checkpoint_extra: dict | None = None,
        known: tuple = (),
        resume: dict | None = None,
        resume_meta: dict | None = None,
        score_start: bool = False,
    ) -> FitResult:
        """Train until the task's validation metric stops improving; leave the model at its best
        epoch. `known`: rows of other splits the task may need (implicit: never negatives).
        `X_train` may instead be a `RowSource` (`training.rows`; `y_train` then None) for tasks
        that learn nothing from the training rows themselves (CTR).
        `score_start`: the model as given is scored on validation first and is the best so far
        (epoch 0), so training can only keep or improve it (a model started from a trained run).

        With a run directory, every epoch ends by writing `resume.pt` (`training.resume`), which
        holds `resume_meta` for whoever checks it is still the same run; `resume`, such a
        checkpoint read back, continues training after its epoch exactly as it would have
        gone on (the same bits on CPU)."""
        cfg = self.cfg
        if self._has_batch_norm and cfg.batch_size < 2:
            raise ConfigError(
                "train.batch_size 1 cannot train a model with BatchNorm (it normalises over the "
                "batch); raise train.batch_size or set batch_norm: false"
            )
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dist = self.dist
        generator = seed_everything(cfg.seed)  # the batch order: the same in every process
        if dist.active:  # each process's own noise (dropout ...) for its own rows
            torch.manual_seed(dist.seed(cfg.seed))
            np.random.seed(dist.seed(cfg.seed) % 2**32)
        # A model may give some parameters their own learning rate (`parameter_groups`: GPRec
        # started from a trained backbone trains that backbone slower); StepLR scales every group.
        groups = getattr(self.model, "parameter_groups", None)
        params = groups(cfg.lr) if groups is not None else self.model.parameters()
        optimizer = make_adam(params, cfg.lr, cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma
        )
        if isinstance(X_train, RowSource):  # rows streamed, or sharded: see `training.rows`
            if dist.active and not isinstance(X_train, ShardedRows):
                raise ConfigError(
                    "multi-process training shards rows held in memory; this row source "
                    "(streamed from disk) cannot be sharded: train it as one process"
                )
            rows, task = X_train, make_task(cfg)
            if type(task).fit is not Task.fit or type(task).training_rows is not Task.training_rows:
                raise ConfigError(
                    f"train.task {cfg.task} learns from the training rows in memory; this row "
                    "source (streamed or sharded) trains only tasks that do not"
                )
            self.task = task
        else:
            self.task = task = make_task(cfg).fit(
                X_train, y_train, self.model.fields, (X_valid, *known)
            )
            X_rows, y_rows = task.training_rows(X_train, y_train)
            if dist.active:
                # BatchNorm cannot train on a part of one row: every part needs two.
                part = 2 if self._has_batch_norm else 1
                if cfg.batch_size < dist.world * part or len(y_rows) < dist.world * part:
                    raise ConfigError(
                        f"train.batch_size {cfg.batch_size} (the global batch, split among "
                        f"{dist.world} processes) and the {len(y_rows)} training rows must each "
                        f"be at least {dist.world * part} ({part} row(s) per process"
                        f"{' for BatchNorm' if part > 1 else ''})"
                    )
                rows = ShardedRows(X_rows, y_rows, dist.rank, dist.world, part)
            else:
                rows = TensorRows(X_rows, y_rows)
        if dist.active and getattr(task, "generator", None) is not None:
            task.generator.manual_seed(dist.seed(cfg.seed))  # sampled negatives: per process
        generators = {"shuffle": generator, "task": getattr(task, "generator", None)}
        monitor = task.monitor
        best, best_epoch, best_state, best_valid = task.worst(), 0, None, {}
        history, train_seconds, eval_seconds, stale = [], 0.0, 0.0, 0
        ckpt_seconds, ckpt_bytes, ckpt_count = 0.0, 0, 0
        log_file = self.run_dir / "log.jsonl" if self.writes else None

        def save_best(state: dict[str, torch.Tensor]) -> None:
            """model.pt: the best weights so far, with what reloading them needs."""
            if self.writes:
                extra = checkpoint_extra or {}
                save_atomic(
                    {"state_dict": state, "task": task.state(), **extra}, self.run_dir / "model.pt"
                )

        epoch = 0
        if resume is not None:
            try:
                epoch = resume["epoch"]
                self.model.load_state_dict(resume["model"])
                optimizer.load_state_dict(resume["optimizer"])
                scheduler.load_state_dict(resume["scheduler"])
                stopping = resume["early_stopping"]
                best, best_epoch = stopping["best"], stopping["best_epoch"]
                best_valid, stale = stopping["best_valid"], stopping["stale"]
                best_state = (
                    _cpu_copy(self.model.state_dict())
                    if stopping["best_is_current"]
                    else stopping["best_state"]
                )
                history = list(resume["history"])
                train_seconds, eval_seconds = (resume["seconds"][k] for k in ("train", "eval"))
                # Each process's own random states (`rng_ranks`) in multi-process training.
                restore_rng(
                    resume["rng_ranks"][dist.rank] if dist.active else resume["rng"], generators
                )
            except (KeyError, ValueError, TypeError, RuntimeError) as e:
                # Written by another gprec whose model or trainer held other state.
                first = (str(e).splitlines() or [type(e).__name__])[0][:120]
                raise ConfigError(
                    f"{RESUME} does not fit this model and trainer ({type(e).__name__}: {first}); "
                    "--restart trains the run from scratch"
                ) from None
            if best_state is not None:
                # model.pt may hold a later epoch's best (killed between its write and
                # resume.pt's): that epoch is trained again, so the file goes back with it.
                save_best(best_state)
        if score_start and resume is None:
            valid = self.evaluate(X_valid, y_valid)
            best, best_valid = valid[monitor], valid
            best_state = _cpu_copy(self.model.state_dict())
            save_best(best_state)
            shown = " ".join(f"{k} {v:.4f}" for k, v in valid.items())
            self.log(f"epoch   0 | the starting model | valid {shown}")
        if log_file:
            # The log holds exactly the epochs the checkpoint holds: none is logged twice.
            log_file.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(log_file, "".join(json.dumps(r) + "\n" for r in history))
        # The training steps go through DDP (its construction gives every process rank 0's
        # weights); evaluation and checkpoints use the model itself.
        steps_model = dist.wrap(self.model)
        while epoch < cfg.max_epochs and stale < cfg.patience:
            epoch += 1
            losses, seconds = self._train_epoch(rows, optimizer, generator, epoch, steps_model)
            scheduler.step()
            t0 = time.perf_counter()
            valid = self.evaluate(X_valid, y_valid)
            eval_seconds += time.perf_counter() - t0
            train_seconds += seconds
            improved = task.improves(valid[monitor], best)
            if improved:
                best, best_epoch, best_valid, stale = valid[monitor], epoch, valid, 0
                best_state = _cpu_copy(self.model.state_dict())
                save_best(best_state)
            else:
                stale += 1
            record = {
                "epoch": epoch,
                **{f"train_{k}": v for k, v in losses.items()},
                **{f"valid_{k}": v for k, v in valid.items()},
                "seconds": seconds,
                "samples_per_second": len(rows) / seconds if seconds > 0 else 0.0,
            }
            history.append(record)
            if log_file:
                with open(log_file, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
            main = task.loss_name
            aux = " ".join(f"{k} {v:.4f}" for k, v in losses.items() if k not in ("loss", main))
            shown = " ".join(f"{k} {v:.4f}" for k, v in valid.items())
            self.log(
                f"epoch {epoch:3d} | loss {losses['loss']:.4f} {main} {losses[main]:.4f}{' ' + aux if aux else ''}"
                f" | valid {shown}{' *' if improved else ''}"
                f" | {seconds:.1f}s {record['samples_per_second'] / 1000:.0f}k samples/s"
            )
            if self.run_dir:
                # Outside the timed step loop: seconds_per_epoch never includes it.
                t0 = time.perf_counter()
                rng = capture_rng(generators)
                # Every process's random states (a collective: every process takes part).
                ranks = {"rng_ranks": dist.all_gather(rng)} if dist.active else {}
            if self.writes:
                ckpt_bytes = save_atomic(
                    {
                        "format": FORMAT,
                        "epoch": epoch,
                        "meta": resume_meta or {},
                        "model": self.model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": rng,
                        **ranks,
                        "early_stopping": {
                            "best": best,
                            "best_epoch": best_epoch,
                            "best_valid": best_valid,
                            "stale": stale,
                            # The model itself when this epoch is the best: not saved twice.
                            "best_is_current": best_epoch == epoch,
                            "best_state": None if best_epoch == epoch else best_state,
                        },
                        "history": history,
                        "seconds": {"train": train_seconds, "eval": eval_seconds},
                        "task": task.state(),
                    },
                    self.run_dir / RESUME,
                )
                ckpt_seconds += time.perf_counter() - t0
                ckpt_count += 1
        if best_state is not None:
            self.model.load_state_dict(best_state)
        warnings = []
        # One epoch always beats an unscored start; a scored epoch 0 (`score_start`) is a
        # reference, so improving on it at the only epoch is evidence too.
        if epoch == cfg.max_epochs and best_epoch == epoch and epoch > (0 if score_start else 1):
            # Early stopping never triggered: the model was still improving when cut off.
            warnings.append(
                f"validation {monitor.upper()} still improved at the last epoch "
                f"({epoch} = train.max_epochs); "
                "the model may be undertrained: raise train.max_epochs"
            )
        for w in warnings:
            self.log(f"warning: {w}")
        return FitResult(
            best_epoch=best_epoch,
            epochs_run=epoch,
            best_valid=best_valid,
            seconds_per_epoch=train_seconds / max(epoch, 1),
            eval_seconds_per_epoch=eval_seconds / max(epoch, 1),
            samples_per_second=len(rows) * epoch / train_seconds if train_seconds > 0 else 0.0,
            history=history,
            warnings=warnings,
            resumed_from=resume["epoch"] if resume is not None else 0,
            checkpoint_seconds_per_epoch=ckpt_seconds / max(ckpt_count, 1),
            checkpoint_bytes=ckpt_bytes,
        )


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}
