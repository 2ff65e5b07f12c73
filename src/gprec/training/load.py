"""A run directory back into a model: the one way every command that reads a finished run
(evaluation, group inspection, prediction, serving) gets its model.

`load_run(RUN_DIR)` reads the resolved `config.yaml`, the best checkpoint `model.pt` (its
weights, the encoded fields the model was built on, and the task's state, e.g. the regression
offset), the vocabularies `vocab.json` (to encode new raw rows) and, when the data had them,
the KMeans groups' spec `user_groups.json`; it builds the model on CPU (or `device`) in
evaluation mode. `LoadedRun.predict(X)` gives the task's predictions of encoded rows, the same
numbers the trainer evaluated (the checkpoint is the best epoch's).
"""

from __future__ import annotations

import json
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
from gprec.training.run_dir import CONFIG, read_status
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
        X = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.long)
        device = next(self.model.parameters()).device
        return predict(self.model, X.to(device), batch_size, self.task.transform)


def _task(config: RunConfig, state: dict | None) -> Task:
    task = make_task(config.train)
    if isinstance(task, RegressionTask) and state:
        return RegressionTask(offset=float(state["offset"]))
    return task


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """The finished run in `run_dir` as a model in evaluation mode; one `ConfigError` line
    naming the directory and what is wrong otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    status = read_status(run_dir)
    state = status.get("state") if status else None
    if state != "finished":
        raise ConfigError(
            f"{run_dir}: not a finished run (status: {state or 'none'}); its weights may be "
            "those of an unfinished training"
        )
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
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{run_dir}/model.pt: cannot be loaded ({first})") from None
    model.eval()
    groups_file = run_dir / "user_groups.json"
    return LoadedRun(
        path=run_dir,
        config=config,
        model=model,
        fields=fields,
        vocab=Vocabulary(json.loads((run_dir / "vocab.json").read_text())),
        task=_task(config, ckpt.get("task")),
        user_groups=json.loads(groups_file.read_text()) if groups_file.is_file() else None,
    )
