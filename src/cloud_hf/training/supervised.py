"""Fine-tune, keep the best checkpoint, score the test set: the loop every supervised recipe shares."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import datasets
import numpy as np
from transformers import PreTrainedModel

from cloud_hf.training.arguments import CloudTrainingArguments
from cloud_hf.training.data import TaskSpec, model_inputs
from cloud_hf.training.metrics import regression_metrics
from cloud_hf.training.parser import resume_checkpoint
from cloud_hf.training.reporting import write_test_results
from cloud_hf.training.trainer import CloudTrainer, build_trainer


@dataclass
class EvaluationResult:
    """Test-set outcome of :func:`train_and_evaluate`: metrics and per-row predictions (physical units)."""

    metrics: dict[str, float]
    ids: list[str]
    predictions: np.ndarray
    labels: np.ndarray
    train_seconds: float
    trainer: CloudTrainer


def train_and_evaluate(model: PreTrainedModel, tokenizer, training_args: CloudTrainingArguments, task: TaskSpec,
                       train_rows: datasets.Dataset, validation_rows: datasets.Dataset,
                       test_rows: datasets.Dataset | None, output_dir: str | os.PathLike, *,
                       quantity: str) -> EvaluationResult | None:
    """Fine-tune ``model`` (early stopping on the validation loss per the options), keep the best checkpoint,
    score the test set.

    Writes to ``output_dir``: Trainer checkpoints, ``model/`` (best model + tokenizer, safetensors),
    ``validation_metrics.json`` (the kept model's validation scores: what settings are chosen on),
    ``test_predictions.csv``, ``test_metrics.json`` and, for regression, ``parity_test.png``.
    Returns None when there is no test set.
    """
    output_dir = Path(output_dir)
    training_args = replace(training_args, output_dir=str(output_dir))  # a copy: build_trainer sets label_names
    trainer = build_trainer(model, tokenizer, training_args, model_inputs(train_rows, task),
                            model_inputs(validation_rows, task), task)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_checkpoint(training_args.resume_from_checkpoint))
    train_seconds = time.perf_counter() - started
    trainer.save_model(str(output_dir / "model"))
    validation = {key.removeprefix("eval_"): float(value) for key, value in trainer.evaluate().items()
                  if isinstance(value, (int, float))}  # the kept model's: what settings are chosen on
    if trainer.is_world_process_zero():
        (output_dir / "validation_metrics.json").write_text(json.dumps(validation, indent=2))
    if test_rows is None:
        return None
    outcome = trainer.predict(model_inputs(test_rows, task), metric_key_prefix="test")
    predictions, labels = np.asarray(outcome.predictions), np.asarray(outcome.label_ids)
    metrics = {key.removeprefix("test_"): float(value) for key, value in outcome.metrics.items()}
    if task.problem == "regression":
        train_mean = np.asarray([train_rows[name] for name in task.label_columns], dtype=float).mean(axis=1)
        baseline = regression_metrics(np.broadcast_to(train_mean, labels.reshape(len(labels), -1).shape), labels)
        metrics["mean_predictor_mae"] = baseline["mae"]
    result = EvaluationResult(metrics=metrics, ids=list(test_rows["id"]), predictions=predictions,
                              labels=labels, train_seconds=train_seconds, trainer=trainer)
    if trainer.is_world_process_zero():
        summary = {"metrics": metrics, "train_seconds": train_seconds, "n_train": len(train_rows),
                   "n_validation": len(validation_rows), "n_test": len(test_rows)}
        write_test_results(output_dir, task, result.ids, predictions, labels, summary, quantity=quantity)
    return result


def plot_debye_curves(result: EvaluationResult, rows: datasets.Dataset, task: TaskSpec, path: str | os.PathLike,
                      names: Sequence[str], n_atoms: Sequence[int]) -> Path:
    """Predict θ_D of ``rows`` with a trained ``CloudDebyeModel`` and plot their C_v(T), U(T) from 1 to 1000 K (PNG)."""
    from cloud_hf.plotting import plot_thermo_curves

    trainer = result.trainer
    previous_key, trainer.prediction_key = trainer.prediction_key, "debye_temperature"
    try:
        theta = np.asarray(trainer.predict(model_inputs(rows, task)).predictions, dtype=float).reshape(-1)
    finally:
        trainer.prediction_key = previous_key
    return plot_thermo_curves(dict(zip(names, theta.tolist())), n_atoms=dict(zip(names, n_atoms)), path=path)


__all__ = ["EvaluationResult", "plot_debye_curves", "train_and_evaluate"]
