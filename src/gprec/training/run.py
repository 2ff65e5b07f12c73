"""One training run, start to finish, and the run directory it leaves behind.

A run directory holds `config.yaml` (fully resolved), `metrics.json`,
`model.pt` (best checkpoint), `vocab.json` and `log.jsonl` (one line per
epoch): enough to reload the model later.
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
from gprec.training.trainer import Logger, Trainer, as_tensors, seed_everything


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resolve_device(name: str) -> torch.device:
    """`train.device` as a torch device; a CUDA device must exist."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}', but torch sees no CUDA device here")
    return torch.device(name)


def run_training(cfg: RunConfig, out_dir: Path | None, log: Logger | None = None) -> dict:
    """Load data, train `cfg.model` and write the run directory; return the metrics."""
    started = time.perf_counter()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    data = load_dataset(cfg.data, cfg.split_seed())
    data_seconds = time.perf_counter() - started
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "config.yaml", dump_config(cfg))
        write_text_atomic(out_dir / "vocab.json", json.dumps(data.vocab.to_json()))
    seed_everything(cfg.train.seed)  # model init must not depend on what ran before
    device = resolve_device(cfg.train.device)
    model = build_model(cfg.model, data.fields).to(device)
    tensors = {
        s: tuple(t.to(device) for t in as_tensors(data.X[s], data.y[s]))
        for s in ("train", "valid", "test")
    }
    trainer = Trainer(model, cfg.train, out_dir, log)
    checkpoint_extra = {"config": cfg.model_dump(mode="json"), "fields": data.summary()["fields"]}
    fit = trainer.fit(*tensors["train"], *tensors["valid"], checkpoint_extra=checkpoint_extra)
    metrics = {
        "model": cfg.model["name"],
        "seed": cfg.train.seed,
        "split_seed": cfg.split_seed(),
        "test": trainer.evaluate(*tensors["test"]),
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
    if out_dir is not None:
        write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
