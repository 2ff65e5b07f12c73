"""A run directory back into a model: the one way every command that reads a finished run
(evaluation, group inspection, prediction, serving) gets its model.

`load_run(RUN_DIR)` reads the resolved `config.yaml`, the best checkpoint `model.pt` (its
weights, the encoded fields the model was built on, and the task's state, e.g. the regression
offset), the vocabularies `vocab.json` (to encode new raw rows) and, when the data had them,
the KMeans groups' spec `user_groups.json`; it builds the model on CPU (or `device`) in
evaluation mode. `LoadedRun.predict(X)` gives the task's predictions of encoded rows, the same
numbers the trainer evaluated (the checkpoint is the best epoch's). For an implicit-feedback run
those are ranking scores (logits); its HR/NDCG need the task fitted on the run's data again
(`task.fit`), which loading does not do.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gprec.config import RunConfig, load_config
from gprec.data.encode import Vocabulary
from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.models.registry import build_model
from gprec.training.run import resolve_device
from gprec.training.run_dir import CONFIG, require_finished_run
from gprec.training.tasks import RegressionTask, Task, make_task
from gprec.training.trainer import predict


@dataclass
class LoadedRun:
    path: Path
    config: RunConfig
    model: torch.nn.Module
    fields: list[EncodedField]
    vocab: Vocabulary
    task: Task
    user_groups: dict[str, Any] | None = None

    def predict(self, X: np.ndarray | torch.Tensor, batch_size: int = 65536) -> np.ndarray:
        """The task's predictions of encoded rows (probabilities for CTR, ratings for
        regression, ranking scores for implicit)."""
        device = next(self.model.parameters()).device
        if isinstance(X, torch.Tensor):
            X = X.to(device, torch.long)
        else:
            X = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.long, device=device)
        return predict(self.model, X, batch_size, self.task.transform)


def run_data(
    run: LoadedRun, refusal: str = "; the inspection needs the data the run was trained on"
):
    """The run's data, loaded through its own config (the same split, the cache when it is
    there) and encoded as it was for training; a `ConfigError` ending in `refusal` when it no
    longer encodes so."""
    from gprec.data.dataset import load_dataset

    data = load_dataset(run.config.data, run.config.split_seed())
    same_fields = [(f.name, f.role, f.cardinality) for f in data.fields] == [
        (f.name, f.role, f.cardinality) for f in run.fields
    ]
    if not same_fields or data.vocab.values != run.vocab.values:
        raise ConfigError(
            f"{run.path}: the run's data ({run.config.data.source}) no longer encodes as it did "
            f"when the run was trained (its fields or vocabularies differ){refusal}"
        )
    return data


def _task(config: RunConfig, state: dict | None) -> Task:
    task = make_task(config.train)
    if isinstance(task, RegressionTask) and state:
        return RegressionTask(offset=float(state["offset"]))
    return task


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """The finished run in `run_dir` as a model in evaluation mode; one `ConfigError` line
    naming the directory and what is wrong otherwise."""
    run_dir = require_finished_run(run_dir)
    device = str(resolve_device(device))
    missing = [f for f in (CONFIG, "model.pt", "vocab.json") if not (run_dir / f).is_file()]
    if missing:
        raise ConfigError(f"{run_dir}: {', '.join(missing)} missing; not a complete run")
    config = load_config(run_dir / CONFIG)
    try:
        ckpt = torch.load(run_dir / "model.pt", map_location=device, weights_only=True)
        fields = [
            EncodedField(f["name"], Role(f["role"]), int(f["cardinality"])) for f in ckpt["fields"]
        ]
        model = build_model(config.model, fields).to(device)
        model.load_state_dict(ckpt["state_dict"])
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, EOFError,
            pickle.UnpicklingError) as e:  # fmt: skip
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{run_dir}/model.pt: cannot be loaded ({first})") from None
    model.eval()
    groups_file = run_dir / "user_groups.json"
    if config.data.user_groups is not None and not groups_file.is_file():
        raise ConfigError(
            f"{run_dir}: user_groups.json missing, but the run's data has KMeans groups "
            "(data.user_groups): new rows could not get theirs; train it again"
        )
    return LoadedRun(
        path=run_dir,
        config=config,
        model=model,
        fields=fields,
        vocab=Vocabulary(_read_json(run_dir / "vocab.json")),
        task=_task(config, ckpt.get("task")),
        user_groups=_read_json(groups_file) if groups_file.is_file() else None,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
