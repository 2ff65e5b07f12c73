"""What training optimises and reports, per kind of target (`train.task`).

A task gives the trainer everything that depends on the target, so the trainer itself knows
none of it: the loss of the model's main output, the transform from that output to a
prediction, the metrics of predictions against targets, and the validation metric early
stopping watches with its direction.

- `binary` (CTR, the default): labels 0/1, BCE with logits, sigmoid, AUC and LogLoss; early
  stopping on AUC (higher is better).
- `regression` (ratings): the target itself (`data.target: value`), MSE, RMSE and MAE; early
  stopping on RMSE (lower is better). The model predicts the deviation from the training
  targets' mean (`offset`, set by `fit` from the training split and saved with the checkpoint):
  every model starts near 0, and a rating scale's mean (3.5) is far from it; without the
  offset the first epochs would only move output biases.

A model's main output (`ModelOutput.logit`) is the task's raw output: a logit for `binary`, the
predicted value for `regression`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from gprec.evaluation.metrics import ctr_metrics, regression_metrics


@dataclass(frozen=True)
class Task:
    name: ClassVar[str]
    loss_name: ClassVar[str]  # the main loss's name in logs and log.jsonl
    monitor: ClassVar[str]  # the validation metric early stopping watches
    higher_is_better: ClassVar[bool]
    target: ClassVar[str]  # what `data.target` must be: label (0/1) or value

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def transform(self, output: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def metrics(self, y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError

    def fit(self, y_train: torch.Tensor) -> Task:
        """This task with what it learns from the training targets (nothing, by default)."""
        return self

    def state(self) -> dict:
        """What a checkpoint keeps to make the same predictions again."""
        return {"name": self.name}

    def worst(self) -> float:
        """A monitor value every real one improves on."""
        return -math.inf if self.higher_is_better else math.inf

    def improves(self, value: float, best: float) -> bool:
        return value > best if self.higher_is_better else value < best


class BinaryTask(Task):
    name = "binary"
    loss_name = "bce"
    monitor = "auc"
    higher_is_better = True
    target = "label"

    def loss(self, output, y):
        return F.binary_cross_entropy_with_logits(output, y)

    def transform(self, output):
        return torch.sigmoid(output)

    def metrics(self, y_true, pred):
        return ctr_metrics(y_true, pred)


@dataclass(frozen=True)
class RegressionTask(Task):
    name = "regression"
    loss_name = "mse"
    monitor = "rmse"
    higher_is_better = False
    target = "value"
    offset: float = 0.0  # the training targets' mean, added to the model's output

    def fit(self, y_train):
        return RegressionTask(offset=float(y_train.double().mean())) if len(y_train) else self

    def state(self):
        return {"name": self.name, "offset": self.offset}

    def loss(self, output, y):
        return F.mse_loss(output + self.offset, y)

    def transform(self, output):
        return output + self.offset

    def metrics(self, y_true, pred):
        return regression_metrics(y_true, pred)


TASKS: dict[str, Task] = {t.name: t for t in (BinaryTask(), RegressionTask())}
