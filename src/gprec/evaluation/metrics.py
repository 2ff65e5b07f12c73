"""CTR metrics, computed by scikit-learn so our numbers match everyone else's."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def ctr_metrics(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """AUC and LogLoss; AUC is NaN when the labels hold a single class."""
    y_true = np.asarray(y_true)
    y_prob = np.clip(np.asarray(y_prob, dtype=np.float64), 1e-7, 1 - 1e-7)
    if len(y_true) == 0:
        return {"auc": float("nan"), "logloss": float("nan")}
    auc = float(roc_auc_score(y_true, y_prob)) if len(np.unique(y_true)) == 2 else float("nan")
    return {"auc": auc, "logloss": float(log_loss(y_true, y_prob, labels=[0, 1]))}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE and MAE of predicted values (ratings); NaN on an empty split."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if len(y_true) == 0:
        return {"rmse": float("nan"), "mae": float("nan")}
    err = y_pred - y_true
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}
