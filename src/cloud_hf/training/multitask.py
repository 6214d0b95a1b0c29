"""Multi-task pre-training data: labelled property tasks joined with an unlabelled corpus, one row per SCOPE string.

A task is one property (``formation_energy``, ``shear_modulus``, ...) read from one or more tables, each naming the
column that holds it. Every table of the tasks and of the corpus is read and SCOPE-encoded once; the strings of the
``exclude`` tables (every task's own test split, benchmark crystals) are removed from all of them; rows with the same
string are merged (a property given twice is averaged). A crystal keeps NaN for the properties it lacks, and the
model's masked loss trains each property on the crystals that have it.

The join is a pandas ``groupby`` over the strings, so the labelled part must fit in memory: the ~200k labelled rows
beside the project take ~0.2 GB here. The unlabelled corpus goes through the same join; a corpus of millions of
strings should be pre-trained with ``recipes/pretrain_mlm.py`` (streamed), then continued here.
"""

from __future__ import annotations

import glob
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

from cloud_hf.data import (
    ERROR_COLUMN,
    ID_COLUMN,
    ROW_COLUMN,
    SCOPE_COLUMN,
    SOURCE_COLUMN,
    add_scope_column,
    read_table,
    split_bad_rows,
)
from cloud_hf.errors import CloudConfigError, CloudDataError

logger = logging.getLogger("cloud_hf.recipes")

#: Column of the pre-training rows that holds each crystal's property vector (NaN = no label).
PROPERTY_LABELS = "property_labels"


@dataclass
class PropertyTask:
    """One property learnt during pre-training.

    ``sources`` maps each table (file path) to the column holding the property there; ``units`` names its units
    (after ``log10``: the model then learns ``log10(value / 1 unit)``, for properties spanning decades such as moduli
    or conductivities; a value <= 0 is then no label).
    """

    name: str
    sources: dict[str, str]
    units: str = ""
    log10: bool = False

    @property
    def label_units(self) -> str:
        """Units of what the model predicts (``log10(units)`` for a log task)."""
        return f"log10({self.units})" if self.log10 else self.units


def parse_tasks(spec: Mapping[str, Any]) -> list[PropertyTask]:
    """The tasks of the YAML mapping ``{name: {sources: {path: column}, units: str, log10: bool}}``, in order.

    A task without sources, an unknown key or a source that is not ``path: column`` is a ``CloudConfigError``
    naming the task.
    """
    if not isinstance(spec, Mapping) or not spec:
        raise CloudConfigError("tasks must be a non-empty mapping {task name: {sources: {path: column}, ...}}")
    tasks = []
    for name, settings in spec.items():
        if not isinstance(settings, Mapping):
            raise CloudConfigError(f"task {name}: expected a mapping with sources, units, log10; got {settings!r}")
        unknown = set(settings) - {"sources", "units", "log10"}
        if unknown:
            raise CloudConfigError(f"task {name}: unknown keys {sorted(unknown)} (allowed: sources, units, log10)")
        sources = settings.get("sources")
        if not isinstance(sources, Mapping) or not sources:
            raise CloudConfigError(f"task {name}: sources must map at least one table path to its column")
        for path, column in sources.items():
            if not isinstance(column, str) or not column:
                raise CloudConfigError(f"task {name}: source {path} must name its column, got {column!r}")
        tasks.append(PropertyTask(name=str(name), sources={str(p): c for p, c in sources.items()},
                                  units=str(settings.get("units", "")), log10=bool(settings.get("log10", False))))
    return tasks


def expand_patterns(patterns: Sequence[str]) -> list[str]:
    """Files of ``patterns`` (paths or glob patterns), sorted and without repeats; a pattern matching nothing is a
    ``CloudDataError`` naming it."""
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise CloudDataError(f"pattern {pattern!r} matches no file")
        paths.extend(str(Path(m)) for m in matches if str(Path(m)) not in paths)
    return paths


@dataclass
class MultiTaskCorpus:
    """The joined pre-training rows: ``rows`` (columns ``id``, ``scope``, one per task in the model's units),
    the rows that could not be encoded, and counts for the log and the model card."""

    rows: pd.DataFrame
    bad_rows: datasets.Dataset
    tasks: list[PropertyTask]
    n_read: int = 0
    n_excluded: int = 0
    labels_per_task: dict[str, int] = field(default_factory=dict)


def _encoded(path: str, columns: Sequence[str], encoder: Any, options: Mapping[str, Any],
             max_rows: int | None = None) -> datasets.Dataset:
    """``path`` read (its first ``max_rows`` rows, with ``columns`` as they are) and SCOPE-encoded; a table that
    cannot be read is a ``CloudDataError`` naming it."""
    try:
        table = read_table(path, extra_columns=list(columns))
        if max_rows is not None and len(table) > max_rows:
            table = table.select(range(int(max_rows)))
    except CloudDataError:
        raise
    except Exception as error:  # a corrupt gzip, an unparseable JSON: name the file before any training
        raise CloudDataError(f"{path}: cannot be read ({type(error).__name__}: {error})") from None
    return add_scope_column(table, encoder, **options)


def _label_values(values: Sequence[Any], task: PropertyTask) -> np.ndarray:
    """The column's values as floats in the model's units (NaN where missing, or <= 0 for a log task)."""
    numbers = pd.to_numeric(pd.Series(list(values)), errors="coerce").to_numpy(dtype=float)
    if task.log10:
        with np.errstate(divide="ignore", invalid="ignore"):
            numbers = np.where(numbers > 0, np.log10(np.where(numbers > 0, numbers, 1.0)), np.nan)
    return numbers


def read_multitask_corpus(tasks: Sequence[PropertyTask], corpus: Sequence[str], exclude: Sequence[str],
                          encoder: Any, options: Mapping[str, Any], max_rows: int | None = None,
                          ) -> MultiTaskCorpus:
    """Read, encode, filter and join the tables of ``tasks`` and the unlabelled ``corpus`` patterns.

    Raises ``CloudDataError`` before any training when a table cannot be read or lacks its column, when a task's
    column holds no value at all, or when a task has no labelled row left after ``exclude``. ``max_rows`` reads only
    the first rows of each table (smoke runs).
    """
    columns_of: dict[str, list[tuple[PropertyTask, str]]] = {}
    for task in tasks:
        for path, column in task.sources.items():
            columns_of.setdefault(str(Path(path)), []).append((task, column))
    for path in expand_patterns(corpus):
        columns_of.setdefault(path, [])
    excluded = set()
    for path in expand_patterns(exclude):
        table = _encoded(path, [], encoder, options, max_rows)
        good, _ = split_bad_rows(table)
        excluded.update(good[SCOPE_COLUMN])
    frames, bad_tables, n_read = [], [], 0
    for path, pairs in columns_of.items():
        table = _encoded(path, sorted({column for _, column in pairs}), encoder, options, max_rows)
        n_read += len(table)
        good, bad = split_bad_rows(table)
        bad_tables.append(bad.select_columns([ID_COLUMN, ROW_COLUMN, SOURCE_COLUMN, ERROR_COLUMN]))
        frame = pd.DataFrame({ID_COLUMN: good[ID_COLUMN], SCOPE_COLUMN: good[SCOPE_COLUMN]})
        for task, column in pairs:
            values = _label_values(good[column], task)
            if np.isnan(values).all():
                raise CloudDataError(f"task {task.name}: column {column!r} of {path} holds no usable value "
                                     f"({'all NaN or <= 0 for log10' if task.log10 else 'all NaN'})")
            frame[task.name] = values
        frames.append(frame)
        logger.info("%s: %d rows (%d not encodable), labels %s", path, len(table), len(bad),
                    ", ".join(task.name for task, _ in pairs) or "none (masked-LM only)")
    joined = pd.concat(frames, ignore_index=True)
    for task in tasks:
        if task.name not in joined:
            joined[task.name] = np.nan
    keep = ~joined[SCOPE_COLUMN].isin(excluded)
    n_excluded = int((~keep).sum())
    names = [task.name for task in tasks]
    grouped = joined[keep].groupby(SCOPE_COLUMN, sort=False)
    rows = grouped[names].mean()
    rows.insert(0, ID_COLUMN, grouped[ID_COLUMN].first())
    rows = rows.reset_index()[[ID_COLUMN, SCOPE_COLUMN, *names]]
    labels_per_task = {name: int(rows[name].notna().sum()) for name in names}
    for name, count in labels_per_task.items():
        if count == 0:
            raise CloudDataError(f"task {name}: no labelled crystal left after removing the exclude tables' crystals")
    bad_rows = datasets.concatenate_datasets(bad_tables) if bad_tables else datasets.Dataset.from_dict({})
    logger.info("multi-task corpus: %d rows read, %d in exclude tables dropped, %d distinct strings; labels %s",
                n_read, n_excluded, len(rows), labels_per_task)
    return MultiTaskCorpus(rows=rows, bad_rows=bad_rows, tasks=list(tasks), n_read=n_read, n_excluded=n_excluded,
                           labels_per_task=labels_per_task)


def property_statistics(rows: pd.DataFrame, names: Sequence[str]) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each property over its labelled rows (std 1 where it would be 0 or NaN)."""
    means, stds = [], []
    for name in names:
        values = rows[name].dropna().to_numpy(dtype=float)
        mean = float(values.mean())
        std = float(values.std()) if len(values) > 1 else 1.0
        means.append(mean)
        stds.append(std if std > 0 and math.isfinite(std) else 1.0)
    return means, stds


def balanced_sample_weights(labels: np.ndarray, exponent: float) -> np.ndarray:
    """Sampling weight of each row for task-balanced pre-training.

    A task with ``n_t`` labelled rows weighs ``(n_max / n_t) ** exponent`` (0: proportional to its size, as plain
    shuffling; 1: every task drawn equally often); a row takes the largest weight of the tasks it has, and a row
    without labels weighs 1. ``labels`` is ``(rows, tasks)`` with NaN for missing labels.
    """
    present = ~np.isnan(labels)
    counts = present.sum(axis=0)
    task_weight = np.where(counts > 0, (counts.max() / np.maximum(counts, 1)) ** exponent, 0.0)
    weights = np.where(present, task_weight[None, :], 0.0).max(axis=1, initial=0.0)
    return np.where(present.any(axis=1), weights, 1.0)


__all__ = [
    "PROPERTY_LABELS",
    "MultiTaskCorpus",
    "PropertyTask",
    "balanced_sample_weights",
    "expand_patterns",
    "parse_tasks",
    "property_statistics",
    "read_multitask_corpus",
]
