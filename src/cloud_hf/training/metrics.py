"""Scores of the recipes, from scikit-learn: regression in physical units, classification from logits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import softmax
from sklearn.metrics import (
    accuracy_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from transformers import EvalPrediction

from cloud_hf.training.data import TaskSpec


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R², MAD and MAE/MAD in the labels' units; NaN labels (missing) are left out.

    MAE and RMSE pool every known (row, target) value; R² is scikit-learn's average of the targets' R²
    (the plain R² for one target); MAD is the mean absolute deviation of the known labels from their
    target's mean.
    """
    labels = np.asarray(labels, dtype=float).reshape(len(labels), -1)
    predictions = np.asarray(predictions, dtype=float).reshape(labels.shape)
    known = np.isfinite(labels)
    mae = float(mean_absolute_error(labels[known], predictions[known]))
    rmse = float(root_mean_squared_error(labels[known], predictions[known]))
    r2_values, deviations = [], []
    for column in range(labels.shape[1]):
        rows = known[:, column]
        values = labels[rows, column]
        deviations.append(np.abs(values - values.mean()))
        if len(values) > 1 and np.ptp(values) > 0:
            r2_values.append(r2_score(values, predictions[rows, column]))
    mad = float(np.concatenate(deviations).mean())
    return {"mae": mae, "rmse": rmse, "r2": float(np.mean(r2_values)) if r2_values else float("nan"),
            "mad": mad, "mae_over_mad": mae / mad if mad > 0 else float("nan")}


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and (for two classes both present) ROC-AUC of the class-1 softmax probability."""
    logits = np.asarray(logits, dtype=float)
    labels = np.asarray(labels).astype(int).reshape(-1)
    metrics = {"accuracy": float(accuracy_score(labels, logits.argmax(-1)))}
    if logits.shape[-1] == 2 and len(np.unique(labels)) == 2:
        metrics["roc_auc"] = float(roc_auc_score(labels, softmax(logits, axis=-1)[:, 1]))
    return metrics


def metrics_function(task: TaskSpec) -> Callable[[EvalPrediction], dict[str, float]]:
    """The ``compute_metrics`` callable for ``Trainer`` (predictions are ``task.prediction_key`` outputs)."""
    def compute_metrics(evaluation: EvalPrediction) -> dict[str, float]:
        if task.problem == "classification":
            return classification_metrics(evaluation.predictions, evaluation.label_ids)
        metrics = regression_metrics(evaluation.predictions, evaluation.label_ids)
        if len(task.label_columns) > 1:  # targets in different units: each one's own MAE too
            metrics.update(per_target_mae(evaluation.predictions, evaluation.label_ids, task.label_columns))
        return metrics

    return compute_metrics


def per_target_mae(predictions: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    """``mae_NAME`` of each target over its known labels (a target without any is left out)."""
    labels = np.asarray(labels, dtype=float).reshape(len(labels), len(names))
    predictions = np.asarray(predictions, dtype=float).reshape(labels.shape)
    scores = {}
    for column, name in enumerate(names):
        known = np.isfinite(labels[:, column])
        if known.any():
            scores[f"mae_{name}"] = float(np.abs(predictions[known, column] - labels[known, column]).mean())
    return scores


__all__ = ["classification_metrics", "metrics_function", "per_target_mae", "regression_metrics"]
