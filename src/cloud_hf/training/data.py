"""Tasks and data of the recipes: which columns feed the model, and the tokenized train / validation / test rows."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from accelerate import PartialState
from cloud_hf.data import (
    add_feature_columns,
    add_scope_column,
    add_token_columns,
    error_reasons,
    random_split_indices,
    read_table,
    split_bad_rows,
    write_bad_rows,
)
from cloud_hf.training.arguments import DataArguments, SplitDataArguments

logger = logging.getLogger("cloud_hf.recipes")


@dataclass
class TaskSpec:
    """How a table's columns feed a model: labels, extra forward inputs and the output to score.

    ``label_columns`` are table columns in physical units; they are passed to ``forward`` as ``label_name``
    (one column: a float per row; several: a list). ``input_columns`` maps forward argument → table column
    (e.g. ``{"n_atoms": "n_atoms"}``), ``constant_inputs`` adds fixed inputs (e.g. ``{"temperature": 300.0}``,
    K). ``prediction_key`` names the output field compared with the labels.
    """

    label_columns: list[str]
    label_name: str = "labels"
    prediction_key: str = "predictions"
    problem: str = "regression"  # or "classification"
    units: str = ""
    input_columns: dict[str, str] = field(default_factory=dict)
    constant_inputs: dict[str, float] = field(default_factory=dict)


@dataclass
class PreparedSplit:
    """One data split: rows ready for the model, and the rows that were skipped (with their errors)."""

    name: str
    rows: datasets.Dataset
    bad_rows: datasets.Dataset
    n_input: int


def scope_encoder_for(tokenizer: Any) -> Any:
    """The ``ScopeEncoder`` a tokenizer was built for (so strings match its vocabulary)."""
    from cloud_hf.scope import ScopeEncoder

    settings = getattr(tokenizer, "scope_config", None)
    return ScopeEncoder.from_dict(settings) if settings else ScopeEncoder(mode="canonical")


def prepare_table(table: datasets.Dataset, name: str, tokenizer: Any, max_length: int,
                  output_dir: str | os.PathLike, data_args: DataArguments,
                  features: Sequence[str] = ()) -> PreparedSplit:
    """SCOPE-encode (where needed) and tokenize ``table``, and add the structure features ``features`` (registered
    names; each a column under its model input name); write its bad rows to ``OUTPUT_DIR/bad_rows_NAME.csv``.

    The log says how many rows were skipped and why; the returned split keeps only usable rows.
    """
    options = {"num_proc": data_args.num_proc, "cache_dir": data_args.cache_dir}
    encoder = scope_encoder_for(tokenizer)
    table = add_scope_column(table, encoder, **options)
    table = add_token_columns(table, tokenizer, max_length, **options)
    table = add_feature_columns(table, features, min_distance=encoder.min_distance, **options)
    good, bad = split_bad_rows(table)
    report = write_bad_rows(bad, Path(output_dir) / f"bad_rows_{name}.csv")
    if len(bad):
        reasons = "; ".join(f"{count} × {reason}" for reason, count in error_reasons(bad).most_common(5))
        logger.warning("%s: skipped %d of %d rows (%s); listed in %s", name, len(bad), len(table), reasons, report)
    else:
        logger.info("%s: all %d rows usable", name, len(table))
    return PreparedSplit(name=name, rows=good, bad_rows=bad, n_input=len(table))


def read_split(data_args: DataArguments, path: str | os.PathLike, task: TaskSpec) -> datasets.Dataset:
    """:func:`cloud_hf.data.read_table` with the data options' columns and the task's label and input columns."""
    extra = sorted(set(task.input_columns.values()) - set(task.label_columns))
    return read_table(path, structure_column=data_args.structure_column, scope_column=data_args.scope_column,
                      id_column=data_args.id_column, label_columns=task.label_columns, extra_columns=extra)


def carve_validation(table: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split ``table`` into disjoint ``(train, validation)`` parts; validation rows come from ``table`` only.

    Not ``Dataset.train_test_split``: that one draws the same permutation (``default_rng(seed)``) but rounds the
    validation size up (6 rows of 54 at 0.1, where this gives round() = 5) and returns the training rows in
    permuted order, so every recipe's data order, and with it its metrics, would change from earlier runs.
    Both parts here keep the table's order.
    """
    validation_index, train_index = random_split_indices(len(table), [fraction, 1 - fraction], seed)
    return table.select(train_index), table.select(validation_index)


def limit_rows(table: datasets.Dataset, max_rows: int | None) -> datasets.Dataset:
    """The first ``max_rows`` rows (all when None): smoke configurations train on a small real subset."""
    return table if max_rows is None or len(table) <= max_rows else table.select(range(int(max_rows)))


def model_inputs(split: datasets.Dataset, task: TaskSpec) -> datasets.Dataset:
    """Add the forward arguments (labels under ``task.label_name``, extra and constant inputs) to tokenized rows."""
    def add_inputs(batch: dict[str, list]) -> dict[str, list]:
        n_rows = len(batch["input_ids"])
        columns: dict[str, list] = {}
        if task.label_columns:
            values = [batch[name] for name in task.label_columns]
            if task.problem == "classification":
                columns[task.label_name] = [int(v) for v in values[0]]
            else:  # a missing label (Arrow null, e.g. NaN from pandas) stays NaN, so batches become float tensors
                rows = [[math.nan if v is None else float(v) for v in row] for row in zip(*values)]
                columns[task.label_name] = [row[0] for row in rows] if len(values) == 1 else rows
        for argument, column in task.input_columns.items():
            columns[argument] = [float(v) for v in batch[column]]
        for argument, value in task.constant_inputs.items():
            columns[argument] = [float(value)] * n_rows
        return columns

    return split.map(add_inputs, batched=True, desc="Model inputs")


def recipe_splits(data_args: SplitDataArguments, task: TaskSpec, tokenizer: Any, max_length: int,
                  output_dir: str | os.PathLike, seed: int, features: Sequence[str] = (),
                  ) -> tuple[datasets.Dataset, datasets.Dataset, datasets.Dataset | None]:
    """Train, validation and test rows of the data options, tokenized (with the structure features ``features``),
    bad rows reported.

    Without a validation file the validation rows are carved out of the training rows
    (``validation_fraction``), so validation never overlaps training; the test file is optional.
    """
    splits: dict[str, datasets.Dataset | None] = {}
    with PartialState().main_process_first():
        for name in ("train", "validation", "test"):
            path = getattr(data_args, name)
            if path is None:
                splits[name] = None
                continue
            table = limit_rows(read_split(data_args, path, task), data_args.max_rows)
            splits[name] = prepare_table(table, name, tokenizer, max_length, output_dir, data_args, features).rows
    train, validation = splits["train"], splits["validation"]
    if validation is None:
        train, validation = carve_validation(train, data_args.validation_fraction, seed)
    logger.info("rows: %d train, %d validation, %s test", len(train), len(validation),
                "no" if splits["test"] is None else len(splits["test"]))
    return train, validation, splits["test"]


__all__ = [
    "PreparedSplit",
    "TaskSpec",
    "carve_validation",
    "limit_rows",
    "model_inputs",
    "prepare_table",
    "read_split",
    "recipe_splits",
    "scope_encoder_for",
]
