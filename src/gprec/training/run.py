"""One training run, start to finish, and the run directory it leaves behind.

A run directory holds `config.yaml` (fully resolved), `metrics.json`,
`model.pt` (best checkpoint), `vocab.json`, `catalogue.npz` (the items, each
user's row and training items: `gprec.serving.catalogue`) and `log.jsonl` (one
line per epoch): enough to reload the model later and use it.
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
from gprec.serving.catalogue import write_catalogue
from gprec.training.run_dir import claim_run_dir, prepare_run_dir, read_metrics, write_status
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


def run_training(
    cfg: RunConfig, out_dir: Path | None, log: Logger | None = None, overwrite: bool = False
) -> dict:
    """Load data, train `cfg.model` and write the run directory; return the metrics.

    Everything that can be checked is checked before the first write: the run
    directory may be used (see `run_dir.claim_run_dir`), the device exists, the
    data loads and the model builds. `status.json` then marks the run as
    running, and as finished, failed or interrupted when it ends.
    """
    started = time.perf_counter()
    config_text = dump_config(cfg)
    if out_dir is not None:
        state = claim_run_dir(out_dir, config_text, overwrite)
        if state.kind == "finished" and not overwrite:
            (log or print)(
                f"{out_dir} holds a finished run of this config: reporting it, not retraining "
                "(--overwrite trains again)"
            )
            return read_metrics(out_dir) | {"reused": True}
        if state.kind in ("interrupted", "failed") and log:
            log(
                f"{out_dir} holds an unfinished ({state.kind}) run of this config: training it again"
            )
        if log:
            log(f"training {cfg.model['name']} on {cfg.data.source} -> {out_dir}")
    device = resolve_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    data = load_dataset(cfg.data, cfg.split_seed())
    data_seconds = time.perf_counter() - started
    seed_everything(cfg.train.seed)  # model init must not depend on what ran before
    model = build_model(cfg.model, data.fields).to(device)
    tensors = {
        s: tuple(t.to(device) for t in as_tensors(data.X[s], data.y[s]))
        for s in ("train", "valid", "test")
    }
    if out_dir is None:
        return _train(cfg, model, data, tensors, None, log, started, data_seconds, device)
    prepare_run_dir(out_dir)
    try:
        write_text_atomic(out_dir / "config.yaml", config_text)
        write_text_atomic(out_dir / "vocab.json", json.dumps(data.vocab.to_json()))
        if data.user_groups is not None:  # the `group` field is not in the vocabularies
            write_text_atomic(out_dir / "user_groups.json", json.dumps(data.user_groups))
        write_catalogue(out_dir, data)  # items, users' rows and training items: recommend
        metrics = _train(cfg, model, data, tensors, out_dir, log, started, data_seconds, device)
        write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    except KeyboardInterrupt:
        write_status(out_dir, "interrupted")
        raise
    except BaseException as e:
        write_status(out_dir, "failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    write_status(out_dir, "finished")
    return metrics


def _train(cfg, model, data, tensors, out_dir, log, started, data_seconds, device) -> dict:
    trainer = Trainer(model, cfg.train, out_dir, log)
    checkpoint_extra = {"config": cfg.model_dump(mode="json"), "fields": data.summary()["fields"]}
    fit = trainer.fit(
        *tensors["train"],
        *tensors["valid"],
        checkpoint_extra=checkpoint_extra,
        known=(tensors["test"][0],),
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
            "threads": torch.get_num_threads(),
            "device": str(device),
            "python": platform.python_version(),
        },
    }
    if fit.warnings:
        metrics["warnings"] = fit.warnings
    return metrics
