"""Result files of the recipes: JSON summaries, test predictions as CSV, parity plots (``cloud_hf.plotting``)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cloud_hf.plotting import plot_parity
from cloud_hf.training.data import TaskSpec
from cloud_hf.training.metrics import regression_metrics

logger = logging.getLogger("cloud_hf.recipes")


def write_json(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` as indented JSON (numpy numbers as floats); parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
    return path


def predictions_table(ids: list[str], predictions: np.ndarray, labels: np.ndarray, task: TaskSpec) -> pd.DataFrame:
    """One row per crystal: ``id``, then ``NAME_true`` and ``NAME_predicted`` per label column (class for
    classification)."""
    table: dict[str, Any] = {"id": ids}
    flat_predictions = predictions.reshape(len(ids), -1)
    flat_labels = labels.reshape(len(ids), -1)
    for index, name in enumerate(task.label_columns):
        if task.problem == "regression":
            table[f"{name}_true"], table[f"{name}_predicted"] = flat_labels[:, index], flat_predictions[:, index]
        else:
            table[f"{name}_true"], table[f"{name}_predicted"] = labels.reshape(-1), flat_predictions.argmax(-1)
    return pd.DataFrame(table)


def write_test_results(output_dir: str | os.PathLike, task: TaskSpec, ids: list[str], predictions: np.ndarray,
                       labels: np.ndarray, summary: dict[str, Any], *, quantity: str) -> None:
    """Write ``test_predictions.csv``, ``test_metrics.json`` (``summary``) and, for regression, ``parity_test.png``
    (first target) into ``output_dir``."""
    output_dir = Path(output_dir)
    predictions_table(ids, predictions, labels, task).to_csv(output_dir / "test_predictions.csv", index=False)
    write_json(summary, output_dir / "test_metrics.json")
    if task.problem == "regression":
        first_prediction = predictions.reshape(len(ids), -1)[:, 0]
        first_label = labels.reshape(len(ids), -1)[:, 0]
        scores = regression_metrics(first_prediction, first_label)
        plot_parity(first_label, first_prediction, output_dir / "parity_test.png", quantity=quantity,
                    units=task.units, title=f"{quantity}: test set",
                    scores={f"MAE ({task.units or 'units of the target'})": scores["mae"], "R²": scores["r2"]})
    logger.info("test metrics: %s", json.dumps(summary["metrics"]))


__all__ = ["predictions_table", "write_json", "write_test_results"]
