"""One training run, start to finish, and the run directory it leaves behind.

A run directory holds `config.yaml` (fully resolved), `metrics.json`,
`model.pt` (best checkpoint), `vocab.json`, `catalogue.npz` (the items, each
user's row and training items: `gprec.serving.catalogue`) and `log.jsonl` (one
line per epoch): enough to reload the model later and use it. While it trains it also holds
`resume.pt` (`training.resume`), from which an interrupted run goes on where it stopped.

Under torchrun (`training.distributed`) every process runs `run_training` with its `Dist`: rank 0
alone claims, prepares and writes the run directory and logs; every process loads the data and
trains its share.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from gprec.config import RunConfig, dump_config
from gprec.data.dataset import load_dataset
from gprec.errors import ConfigError
from gprec.io import write_text_atomic
from gprec.models.registry import build_model
from gprec.models.warm_start import check_same_data
from gprec.serving.catalogue import write_catalogue
from gprec.training.distributed import SINGLE, Dist, launched_world
from gprec.training.resume import RESUME, read_checkpoint
from gprec.training.run_dir import (
    claim_run_dir,
    prepare_run_dir,
    read_metrics,
    recording_status,
)
from gprec.training.trainer import Logger, Trainer, as_tensors, seed_everything


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters only (metrics' `parameters`): a frozen weight, such as the head
    weights APG replaces, is not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resolve_device(name: str) -> torch.device:
    """`train.device` as a torch device; a CUDA device must exist."""
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device is '{name}', but torch sees no CUDA device here")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device is '{name}', but torch sees {torch.cuda.device_count()} CUDA device(s)"
            )
    return torch.device(name)


RESUME_MODES = ("auto", "require", "never")


def split_tensors(data, device: torch.device) -> dict[str, tuple]:
    """Each split as (X, y) tensors on `device`; the training split as the dataset's own row
    source instead (`(source, None)`) where it has one (`train_rows`: rows streamed from disk;
    multi-process training cannot shard that yet)."""
    out = {
        s: tuple(t.to(device) for t in as_tensors(data.X[s], data.y[s])) for s in ("valid", "test")
    }
    own = getattr(data, "train_rows", None)
    if own is not None:
        return {"train": (own(device), None), **out}
    return {
        "train": tuple(t.to(device) for t in as_tensors(data.X["train"], data.y["train"])),
        **out,
    }


def run_training(
    cfg: RunConfig,
    out_dir: Path | None,
    log: Logger | None = None,
    overwrite: bool = False,
    resume: str = "auto",
    dist: Dist | None = None,
) -> dict:
    """Load data, train `cfg.model` and write the run directory; return the metrics.

    Everything that can be checked is checked before the first write: the run
    directory may be used (see `run_dir.claim_run_dir`), the device exists, the
    data loads and the model builds. `status.json` then marks the run as
    running, and as finished, failed or interrupted when it ends.

    An interrupted or failed run of the same config goes on from its `resume.pt` (the end of
    its last whole epoch) and ends as the uninterrupted run would have; without a usable one
    it is trained again from scratch, saying why. `resume`: `auto` (that), `require` (no
    usable checkpoint is an error: `gprec train --resume`) or `never` (always from scratch:
    `--restart`). `overwrite` retrains from scratch whatever the directory holds.

    `dist`: this process among several started by torchrun (`distributed.session`); every
    process calls this with the same arguments, rank 0 alone writes and logs. Without it, a
    process started by torchrun is refused: only `gprec train` trains with several processes.
    """
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be one of {RESUME_MODES}, not {resume!r}")
    if dist is None:
        if launched_world() > 1:
            raise ConfigError(
                f"this process is one of {launched_world()} started by torchrun, but only "
                "`gprec train` trains with several processes: run this command as one process"
            )
        dist = SINGLE
    if not dist.is_main():
        log = lambda msg: None  # noqa: E731 (rank 0 alone speaks)
    say = log or (lambda msg: None)
    started = time.perf_counter()
    config_text = dump_config(cfg)
    # Rank 0 decides what to do with the run directory; every process follows (`on_main`).
    reused, may_resume, kind = dist.on_main(
        lambda: _claim(out_dir, config_text, log, say, overwrite, resume)
    )
    if reused is not None:
        return reused
    if dist.active and cfg.data.format == "parquet-stream":  # known before reading any data
        dist.on_main(lambda: _refuse_streamed("data.format parquet-stream"))
    device = resolve_device(dist.device_name(cfg.train.device))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    with dist.local_first():  # one process per machine fills the dataset cache, then the others
        data = load_dataset(cfg.data, cfg.split_seed())
    data_seconds = time.perf_counter() - started
    data_meta = {
        "rows": {s: data.size(s) for s in ("train", "valid", "test")},
        "cardinalities": [f.cardinality for f in data.fields],
    }
    checkpoint = None
    if may_resume:
        # Read by rank 0, given to every process (each restores its own random states from it).
        checkpoint = dist.on_main(
            lambda: _read_checkpoint(out_dir, config_text, data_meta, kind, resume, say, dist)
        )
    if out_dir is not None and log:
        log(f"training {cfg.model['name']} on {cfg.data.source} -> {out_dir}")
    seed_everything(cfg.train.seed)  # model init must not depend on what ran before
    model = build_model(cfg.model, data.fields)
    if cfg.model.get("init_from") and checkpoint is None:  # a resumed run has its own weights
        check_same_data(cfg, cfg.model["init_from"])
        model.start_from_run(cfg.model["init_from"])
    model = model.to(device)
    if dist.active and hasattr(data, "train_rows"):  # a dataset with its own row source
        dist.on_main(lambda: _refuse_streamed("this data source"))
    tensors = split_tensors(data, device)
    if out_dir is None:
        return _train(
            cfg, model, data, tensors, None, log, started, data_seconds, device, dist=dist
        )
    resume_meta = {"config": config_text, "data": data_meta, "world_size": dist.world}
    if not dist.is_main():  # trains its share; rank 0 writes
        return _train(
            cfg, model, data, tensors, out_dir, log, started, data_seconds, device,
            resume=checkpoint, resume_meta=resume_meta, dist=dist,
        )  # fmt: skip
    # A resumed run keeps its checkpoint, its best model and its log (rewritten to the
    # checkpoint's epoch); everything else is written again, as the same config writes it.
    keep = (RESUME, "model.pt", "log.jsonl") if checkpoint is not None else ()
    resumed = {"resumed_from_epoch": checkpoint["epoch"]} if checkpoint is not None else {}
    prepare_run_dir(out_dir, keep=keep, **resumed)
    with recording_status(out_dir, **resumed):
        write_text_atomic(out_dir / "config.yaml", config_text)
        write_text_atomic(out_dir / "vocab.json", json.dumps(data.vocab.to_json()))
        if data.user_groups is not None:  # the `group` field is not in the vocabularies
            write_text_atomic(out_dir / "user_groups.json", json.dumps(data.user_groups))
        write_catalogue(out_dir, data)  # items, users' rows and training items: recommend
        metrics = _train(
            cfg, model, data, tensors, out_dir, log, started, data_seconds, device,
            resume=checkpoint, resume_meta=resume_meta, dist=dist,
        )  # fmt: skip
        write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    # Nothing resumes a finished run: its checkpoint (several times model.pt) would only take
    # disk, in every run directory of a grid.
    (out_dir / RESUME).unlink(missing_ok=True)
    return metrics


def _claim(out_dir, config_text, log, say, overwrite, resume):
    """What to do with `out_dir`: (the metrics of a finished run to report instead of training,
    or None; whether to resume; the run's state)."""
    if out_dir is None:
        return None, False, "new"
    state = claim_run_dir(out_dir, config_text, overwrite)
    if state.kind == "finished" and not overwrite:
        (log or print)(
            f"{out_dir} holds a finished run of this config: reporting it, not retraining "
            "(--overwrite trains again)"
        )
        return read_metrics(out_dir) | {"reused": True}, False, state.kind
    unfinished = state.kind in ("interrupted", "failed")
    if resume == "require" and not unfinished:
        raise ConfigError(
            f"--resume: {out_dir} holds no unfinished run to resume"
            + (" (--overwrite retrains from scratch)" if overwrite else "")
        )
    may_resume = unfinished and not overwrite and resume != "never"
    if unfinished and not may_resume:
        say(f"{out_dir} holds an unfinished ({state.kind}) run of this config: training it again")
    return None, may_resume, state.kind


def _read_checkpoint(out_dir, config_text, data_meta, kind, resume, say, dist) -> dict | None:
    """`resume.pt` of the unfinished run in `out_dir` if training goes on from it, else None."""
    checkpoint, why_not = read_checkpoint(out_dir, config_text, data_meta)
    written_by = (checkpoint or {}).get("meta", {}).get("world_size", 1)
    if checkpoint is not None and written_by != dist.world:
        # Another number of processes trains other batches (and draws other noise).
        why_not = (
            f"{out_dir / RESUME} was written by {written_by} process(es), this run has {dist.world}"
        )
        checkpoint = None
    if checkpoint is None and resume == "require":
        raise ConfigError(f"--resume: cannot resume: {why_not}")
    if checkpoint is None:
        say(
            f"{out_dir} holds an unfinished ({kind}) run of this config: training it "
            f"again from scratch ({why_not})"
        )
    else:
        say(
            f"{out_dir} holds an unfinished ({kind}) run of this config: resuming after "
            f"epoch {checkpoint['epoch']} (--restart trains from scratch)"
        )
    return checkpoint


def _refuse_streamed(what: str) -> None:
    raise ConfigError(
        f"{what} streams the training rows from disk, which multi-process training cannot "
        "shard yet: train it as one process (without torchrun), or with data.format memory"
    )


def _train(
    cfg, model, data, tensors, out_dir, log, started, data_seconds, device,
    resume=None, resume_meta=None, dist=SINGLE,
) -> dict:  # fmt: skip
    trainer = Trainer(model, cfg.train, out_dir, log, dist)
    checkpoint_extra = {"config": cfg.model_dump(mode="json"), "fields": data.summary()["fields"]}
    fit = trainer.fit(
        *tensors["train"],
        *tensors["valid"],
        checkpoint_extra=checkpoint_extra,
        known=(tensors["test"][0],),
        resume=resume,
        resume_meta=resume_meta,
        score_start=bool(cfg.model.get("init_from")),
    )
    metrics = {
        "model": cfg.model["name"],
        "seed": cfg.train.seed,
        "task": cfg.train.task,
        "monitor": trainer.task.monitor,
        "split_seed": cfg.split_seed(),
        "test": trainer.evaluate(*tensors["test"], negatives=data.negatives.get("test")),
        "valid": fit.best_valid | {"best_epoch": fit.best_epoch},
        "train": {
            "seconds_per_epoch": fit.seconds_per_epoch,
            "eval_seconds_per_epoch": fit.eval_seconds_per_epoch,
            "samples_per_second": fit.samples_per_second,
            "rows": data.size("train"),
            # resume.pt, written after every epoch outside the timed steps (0 without a run dir)
            "checkpoint_seconds_per_epoch": fit.checkpoint_seconds_per_epoch,
            "checkpoint_bytes": fit.checkpoint_bytes,
        },
        "epochs_run": fit.epochs_run,
        "parameters": count_parameters(model),
        "data": {
            "rows": {s: data.size(s) for s in tensors},
            "from_cache": data.from_cache,
            "load_seconds": data_seconds,
        },
        "wall_seconds": time.perf_counter() - started,
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),  # per process
            "world_size": dist.world,  # processes (torchrun); samples per second counts them all
            **({"backend": dist.backend} if dist.active else {}),
            "device": str(device),
            "python": platform.python_version(),
        },
    }
    if fit.warnings:
        metrics["warnings"] = fit.warnings
    return metrics
