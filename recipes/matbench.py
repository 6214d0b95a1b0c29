"""The MatBench v0.1 protocol for a structure task: official 5 folds, one fine-tuning per fold.

    python recipes/matbench.py recipes/configs/matbench_jdft2d.yaml \\
        --task matbench_jdft2d --data_file ../shared/data/structures/matbench/matbench_jdft2d.csv.gz

``--data_file`` is the task's matminer-format ``json.gz`` (``$MATMINER_DATA/matbench_NAME.json.gz``) or a CSV
with the structure column, rows in MatBench order (row i is ``mb-NAME-{i+1}``). The folds come from the
``matbench`` package's ``matbench_v0.1_validation.json`` (``pip install --no-deps matbench``; read as a
file, the package itself is not imported). For each fold the model is trained on the fold's training
rows, with its validation split carved out of those rows only (``validation_fraction``), and predicts the
test rows; ``--max_folds N`` runs only the first N folds. Outputs under ``output_dir``: ``fold_K/`` (model, predictions, parity plot),
``matbench_record.json`` (a ``MatbenchTask.as_dict()``-style record: per-fold predictions and scores) and
``results.json`` (per-fold and mean MAE / RMSE, or accuracy / ROC-AUC, with wall times).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from sklearn.metrics import max_error, mean_absolute_percentage_error

from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.training import (
    SupervisedTrainingArguments,
    TaskSpec,
    carve_validation,
    head_descriptors,
    init_supervised_model,
    max_positions,
    prepare_table,
    read_split,
    recipe_main,
    recipe_tokenizer,
    regression_metrics,
    start_run,
    train_and_evaluate,
    write_json,
)
from cloud_hf.training.arguments import MatbenchDataArguments, SupervisedModelArguments

logger = logging.getLogger("cloud_hf.recipes")

ARGUMENTS = (MatbenchDataArguments, SupervisedModelArguments, SupervisedTrainingArguments)
PROGRAM = "python recipes/matbench.py"
MATBENCH_VERSION = "matbench_v0.1"


def matbench_file(name: str) -> Path:
    """A data file shipped inside the ``matbench`` wheel, found without importing the package
    (``import matbench`` needs matminer, and would find this very script first)."""
    try:
        return Path(str(importlib.metadata.distribution("matbench").locate_file(f"matbench/{name}")))
    except importlib.metadata.PackageNotFoundError:
        raise CloudConfigError("the matbench package is needed for the official folds: "
                         "pip install --no-deps matbench") from None


def matbench_task(task_name: str) -> tuple[dict[str, Any], dict[str, dict[str, list[str]]]]:
    """``(metadata, folds)`` of a MatBench v0.1 task: target, task type, unit; per fold train/test ids."""
    metadata = json.loads(matbench_file("matbench_v0.1_dataset_metadata.json").read_text())
    splits = json.loads(matbench_file("matbench_v0.1_validation.json").read_text())["splits"]
    if task_name not in metadata or task_name not in splits:
        raise CloudConfigError(f"unknown MatBench task {task_name!r}; tasks: {sorted(splits)}")
    if metadata[task_name]["input_type"] != "structure":
        raise CloudConfigError(f"{task_name} is a composition task; this harness trains on crystal structures")
    return metadata[task_name], splits[task_name]


def matbench_ids(task_name: str, n_rows: int, folds: dict[str, dict[str, list[str]]]) -> list[str]:
    """The MatBench ids of rows 0..n_rows-1 (``mb-jdft2d-001`` is row 0), checked against the fold ids."""
    all_ids = {mbid for fold in folds.values() for mbid in fold["test"]}
    if len(all_ids) != n_rows:
        raise CloudDataError(f"the data file has {n_rows} rows but {task_name} has {len(all_ids)} samples")
    width = len(next(iter(all_ids)).rsplit("-", 1)[1])
    short_name = task_name.removeprefix("matbench_")
    ids = [f"mb-{short_name}-{index + 1:0{width}d}" for index in range(n_rows)]
    if set(ids) != all_ids:
        raise CloudDataError(f"row ids mb-{short_name}-N do not match the MatBench ids of {task_name}")
    return ids


def fold_tables(table: datasets.Dataset, fold: dict[str, list[str]], validation_fraction: float, seed: int,
                ) -> tuple[datasets.Dataset, datasets.Dataset, datasets.Dataset]:
    """``(train, validation, test)`` of one fold; validation is carved out of the fold's training rows only."""
    position = {mbid: index for index, mbid in enumerate(table["id"])}
    train_rows = table.select(sorted(position[m] for m in fold["train"] if m in position))
    test_rows = table.select(sorted(position[m] for m in fold["test"] if m in position))
    train_rows, validation_rows = carve_validation(train_rows, validation_fraction, seed)
    return train_rows, validation_rows, test_rows


def fold_scores(predictions: np.ndarray, labels: np.ndarray, problem: str) -> dict[str, float]:
    """MatBench's per-fold scores (regression: mae, rmse, mape, max_error) plus R²."""
    if problem != "regression":
        raise NotImplementedError("classification scores are computed by train_and_evaluate")
    metrics = regression_metrics(predictions, labels)
    return {"mae": metrics["mae"], "rmse": metrics["rmse"], "r2": metrics["r2"],
            "mape": float(mean_absolute_percentage_error(labels, predictions)),
            "max_error": float(max_error(labels, predictions))}


def run(data_args: MatbenchDataArguments, model_args: SupervisedModelArguments,
        training_args: SupervisedTrainingArguments) -> None:
    """Train and test every fold with these options."""
    state = start_run(training_args)
    task_name = data_args.task
    metadata, folds = matbench_task(task_name)
    problem = metadata["task_type"]
    task = TaskSpec(label_columns=[metadata["target"]], problem=problem, units=metadata.get("unit") or "",
                    prediction_key="predictions" if problem == "regression" else "logits")
    output_dir = Path(training_args.output_dir)
    tokenizer = recipe_tokenizer(model_args)
    with state.main_process_first():
        table = read_split(data_args, data_args.data_file, task)
        table = table.remove_columns("id").add_column("id", matbench_ids(task_name, len(table), folds))
        prepared = prepare_table(table, "all", tokenizer, max_positions(model_args), output_dir, data_args,
                                 head_descriptors(model_args)[1])
    fold_names = sorted(folds)[: data_args.max_folds or len(folds)]
    record: dict[str, Any] = {"@module": "matbench.task", "@class": "MatbenchTask",
                              "benchmark_name": MATBENCH_VERSION, "dataset_name": task_name, "results": {}}
    per_fold: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for fold_index, fold_name in enumerate(fold_names):
        train, validation, test = fold_tables(prepared.rows, folds[fold_name], data_args.validation_fraction,
                                              training_args.seed + fold_index)
        logger.info("%s %s: %d train, %d validation, %d test rows", task_name, fold_name, len(train),
                    len(validation), len(test))
        model = init_supervised_model(model_args, tokenizer, task, train, training_args.seed)
        result = train_and_evaluate(model, tokenizer, training_args, task, train, validation, test,
                                    output_dir / fold_name, quantity=f"{metadata['target']} ({fold_name})")
        predictions = result.predictions.reshape(-1) if problem == "regression" else result.predictions.argmax(-1)
        scores = (fold_scores(predictions, result.labels.reshape(-1), problem) if problem == "regression"
                  else {k: v for k, v in result.metrics.items() if k in ("accuracy", "roc_auc")})
        per_fold[fold_name] = {**scores, "train_seconds": result.train_seconds, "n_test": len(test)}
        record["results"][fold_name] = {
            "data": {mbid: (float(p) if problem == "regression" else bool(p)) for mbid, p in zip(result.ids, predictions)},
            "parameters": {"data_file": data_args.data_file, "n_train": len(train), "n_validation": len(validation)},
            "scores": scores,
        }
    if state.is_main_process:
        write_json(record, output_dir / "matbench_record.json")
        main_metric = "mae" if problem == "regression" else "roc_auc"
        values = [fold[main_metric] for fold in per_fold.values() if main_metric in fold]
        summary = {"task": task_name, "metric": main_metric, "unit": metadata.get("unit"),
                   f"mean_{main_metric}": float(np.mean(values)), f"std_{main_metric}": float(np.std(values)),
                   "dataset_mad": metadata.get("mad"), "folds": per_fold,
                   "n_skipped_rows": len(prepared.bad_rows), "wall_seconds": time.perf_counter() - started,
                   "model_checkpoint": model_args.checkpoint}
        write_json(summary, output_dir / "results.json")
        logger.info("%s: mean %s %.4g ± %.3g %s over %d folds", task_name, main_metric,
                    summary[f"mean_{main_metric}"], summary[f"std_{main_metric}"], metadata.get("unit") or "",
                    len(values))


def main(argv: list[str] | None = None) -> None:
    """Run the recipe from the command line; a configuration or data error exits with status 2 and one line."""
    recipe_main(ARGUMENTS, run, PROGRAM, __doc__, argv)


if __name__ == "__main__":
    main()
