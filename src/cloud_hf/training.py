"""Shared machinery of the training recipes (``recipes/*.py``): configuration, data, Trainer, metrics, plots.

Every recipe is ``python recipes/NAME.py CONFIG.yaml [--key value ...]`` and runs unchanged under
``accelerate launch``. A configuration is a YAML mapping with the sections ``data``, ``model`` and
``training`` (the last one is passed to ``transformers.TrainingArguments``) plus top-level keys such as
``output_dir``, ``seed`` and ``early_stopping_patience``. An override ``--section.key value`` (or
``--key value`` when the key is unique) replaces one entry; values are parsed as YAML (``--max_steps 10``
is an int, ``--label_columns '[a, b]'`` a list).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import yaml
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    set_seed,
)

from accelerate import PartialState
from cloud_hf.data import (
    add_scope_column,
    add_token_columns,
    error_reasons,
    random_split_indices,
    read_table,
    split_bad_rows,
    write_bad_rows,
)

logger = logging.getLogger("cloud_hf.recipes")

CONFIG_SECTIONS = ("data", "model", "training")
REFERENCE_TOKENIZER_PREFIX = "reference:"


# ----------------------------------------------------------------------------------------------------
# configuration: YAML + --key value overrides
# ----------------------------------------------------------------------------------------------------


def apply_override(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``config[section][key]`` from ``section.key`` (or a unique bare ``key``) in place."""
    if "." in key:
        section, _, name = key.partition(".")
        config.setdefault(section, {})[name] = value
        return
    if key in config or key in ("resume_from_checkpoint", "output_dir", "seed"):
        config[key] = value
        return
    sections = [s for s in CONFIG_SECTIONS if isinstance(config.get(s), dict) and key in config[s]]
    if len(sections) > 1:
        raise SystemExit(f"override --{key} is ambiguous: it is in sections {sections}; write --SECTION.{key}")
    if not sections:
        raise SystemExit(f"unknown override --{key}: not a top-level key nor in any of {CONFIG_SECTIONS}; "
                         f"write --SECTION.{key} to add a new entry")
    config[sections[0]][key] = value


def parse_value(raw: str) -> Any:
    """An override value as YAML, with numbers YAML 1.1 leaves as text (``2e-3``) read as floats."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_config(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``CONFIG.yaml [--key value ...]`` (``sys.argv[1:]`` by default) into a configuration dict."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("--"):
        raise SystemExit("usage: python recipes/NAME.py CONFIG.yaml [--key value ...]")
    with open(argv[0], encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    config["config_file"] = argv[0]
    rest = argv[1:]
    while rest:
        key = rest.pop(0)
        if not key.startswith("--"):
            raise SystemExit(f"expected --key value, got {key!r}")
        key = key[2:]
        if "=" in key:
            key, _, raw = key.partition("=")
        elif rest and not rest[0].startswith("--"):
            raw = rest.pop(0)
        else:
            raw = "true"
        apply_override(config, key, parse_value(raw))
    return config


def resume_argument(config: dict[str, Any]) -> str | bool | None:
    """The ``resume_from_checkpoint`` value for ``Trainer.train``: a path, True (latest in output_dir) or None."""
    value = config.get("resume_from_checkpoint")
    if value in (None, False, "false", "none"):
        return None
    if value in (True, "true", "last", "latest"):
        return True
    return str(value)


def start_run(config: dict[str, Any]) -> PartialState:
    """Set up the (possibly distributed) process state and logging; returns the state.

    The state is created on CPU when ``training.use_cpu`` is set or no GPU exists, so that processes started by
    ``accelerate launch --multi_gpu --num_processes N`` on a CPU machine join one gloo group (a state created
    first without ``cpu=True`` would leave each process on its own). INFO logs come from the main process only.
    """
    use_cpu = bool(config.get("training", {}).get("use_cpu")) or not torch.cuda.is_available()
    state = PartialState(cpu=use_cpu)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if state.is_main_process else logging.WARNING)
    return state


# ----------------------------------------------------------------------------------------------------
# tokenizer, SCOPE encoder, data sets
# ----------------------------------------------------------------------------------------------------


def load_tokenizer(spec: str | os.PathLike) -> Any:
    """A ``CloudTokenizerFast`` from a folder, or ``"reference:FOLDER"`` for the reference tokenizer files."""
    from cloud_hf.tokenization_cloud import CloudTokenizerFast

    spec = str(spec)
    if spec.startswith(REFERENCE_TOKENIZER_PREFIX):
        return CloudTokenizerFast.from_reference_files(spec[len(REFERENCE_TOKENIZER_PREFIX):])
    return CloudTokenizerFast.from_pretrained(spec)


def recipe_tokenizer(config: dict[str, Any]) -> Any:
    """The tokenizer saved with ``model.checkpoint`` when there is one (so strings match the checkpoint's
    vocabulary), else ``model.tokenizer`` (a folder, or ``reference:FOLDER``)."""
    model_config = config.get("model", {})
    checkpoint = model_config.get("checkpoint")
    if checkpoint and (Path(checkpoint) / "tokenizer_config.json").is_file():
        return load_tokenizer(checkpoint)
    if not model_config.get("tokenizer"):
        raise SystemExit("the configuration needs model.tokenizer (or a model.checkpoint saved with its tokenizer)")
    return load_tokenizer(model_config["tokenizer"])


def scope_encoder_for(tokenizer: Any) -> Any:
    """The ``ScopeEncoder`` a tokenizer was built for (so strings match its vocabulary)."""
    from cloud_hf.scope import ScopeEncoder

    settings = getattr(tokenizer, "scope_config", None)
    return ScopeEncoder.from_dict(settings) if settings else ScopeEncoder(mode="canonical")


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


def prepare_table(
    table: datasets.Dataset,
    name: str,
    tokenizer: Any,
    max_length: int,
    output_dir: str | os.PathLike,
    *,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> PreparedSplit:
    """SCOPE-encode (where needed) and tokenize ``table``; write its bad rows to ``OUTPUT_DIR/bad_rows_NAME.csv``.

    The log says how many rows were skipped and why; the returned split keeps only usable rows.
    """
    encoder = scope_encoder_for(tokenizer)
    table = add_scope_column(table, encoder, num_proc=num_proc, cache_dir=cache_dir)
    table = add_token_columns(table, tokenizer, max_length, num_proc=num_proc, cache_dir=cache_dir)
    good, bad = split_bad_rows(table)
    report = write_bad_rows(bad, Path(output_dir) / f"bad_rows_{name}.csv")
    if len(bad):
        reasons = "; ".join(f"{count} × {reason}" for reason, count in error_reasons(bad).most_common(5))
        logger.warning("%s: skipped %d of %d rows (%s); listed in %s", name, len(bad), len(table), reasons, report)
    else:
        logger.info("%s: all %d rows usable", name, len(table))
    return PreparedSplit(name=name, rows=good, bad_rows=bad, n_input=len(table))


def read_split(data_config: dict[str, Any], path: str | os.PathLike, task: TaskSpec) -> datasets.Dataset:
    """:func:`cloud_hf.data.read_table` with the columns named in the ``data`` section and the task."""
    extra = sorted(set(task.input_columns.values()) - set(task.label_columns))
    return read_table(path, structure_column=data_config.get("structure_column"),
                      scope_column=data_config.get("scope_column"), id_column=data_config.get("id_column"),
                      label_columns=task.label_columns, extra_columns=extra)


def carve_validation(table: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split ``table`` into disjoint ``(train, validation)`` parts; validation rows come from ``table`` only."""
    validation_index, train_index = random_split_indices(len(table), [fraction, 1 - fraction], seed)
    return table.select(train_index), table.select(validation_index)


def model_inputs(split: datasets.Dataset, task: TaskSpec) -> datasets.Dataset:
    """Add the forward arguments (labels under ``task.label_name``, extra and constant inputs) to tokenized rows."""
    def add_inputs(batch: dict[str, list]) -> dict[str, list]:
        n_rows = len(batch["input_ids"])
        columns: dict[str, list] = {}
        if task.label_columns:
            values = [batch[name] for name in task.label_columns]
            if task.problem == "classification":
                columns[task.label_name] = [int(v) for v in values[0]]
            else:
                columns[task.label_name] = values[0] if len(values) == 1 else [list(row) for row in zip(*values)]
        for argument, column in task.input_columns.items():
            columns[argument] = [float(v) for v in batch[column]]
        for argument, value in task.constant_inputs.items():
            columns[argument] = [float(value)] * n_rows
        return columns

    return split.map(add_inputs, batched=True, desc="Model inputs")


def limit_rows(table: datasets.Dataset, max_rows: int | None) -> datasets.Dataset:
    """The first ``max_rows`` rows (all when None): smoke configurations train on a small real subset."""
    return table if max_rows is None or len(table) <= max_rows else table.select(range(int(max_rows)))


def recipe_splits(config: dict[str, Any], task: TaskSpec, tokenizer: Any, max_length: int,
                  ) -> tuple[datasets.Dataset, datasets.Dataset, datasets.Dataset | None]:
    """Train, validation and test rows from the ``data`` section, tokenized, bad rows reported.

    ``data.train`` is required; ``data.validation`` may be a file, or is otherwise carved out of the
    training rows (``data.validation_fraction``, default 0.1), so validation never overlaps training;
    ``data.test`` is optional. ``data.max_rows`` caps each file (smoke runs).
    """
    data_config = config["data"]
    output_dir = Path(config["output_dir"])
    options = {"num_proc": data_config.get("num_proc"), "cache_dir": data_config.get("cache_dir")}
    splits: dict[str, datasets.Dataset | None] = {}
    with PartialState().main_process_first():
        for name in ("train", "validation", "test"):
            path = data_config.get(name)
            if path is None:
                splits[name] = None
                continue
            table = limit_rows(read_split(data_config, path, task), data_config.get("max_rows"))
            splits[name] = prepare_table(table, name, tokenizer, max_length, output_dir, **options).rows
    train = splits["train"]
    if train is None:
        raise SystemExit("the configuration needs data.train (a file or folder of crystals)")
    validation = splits["validation"]
    if validation is None:
        train, validation = carve_validation(train, float(data_config.get("validation_fraction", 0.1)),
                                             int(config.get("seed", 42)))
    logger.info("rows: %d train, %d validation, %s test", len(train), len(validation),
                "no" if splits["test"] is None else len(splits["test"]))
    return train, validation, splits["test"]


def load_or_init_model(model_class: type[PreTrainedModel], config: dict[str, Any], tokenizer: Any,
                       **config_updates: Any) -> PreTrainedModel:
    """``model.checkpoint`` loaded with ``from_pretrained`` (new heads initialised), or a new model.

    A new model takes its encoder sizes from ``model.config`` and its vocabulary and SCOPE settings from
    the tokenizer. ``config_updates`` (e.g. target names and statistics) are set on the config either way.
    """
    from cloud_hf.configuration_cloud import CloudConfig

    set_seed(int(config.get("seed", 42)))  # new weights (encoder or head) are the same in every run
    model_config = config.get("model", {})
    checkpoint = model_config.get("checkpoint")
    if checkpoint:
        return model_class.from_pretrained(checkpoint, **config_updates)
    sizes = dict(model_config.get("config", {}))
    cloud_config = CloudConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                               scope=getattr(tokenizer, "scope_config", None), **{**sizes, **config_updates})
    return model_class(cloud_config)


def init_supervised_model(config: dict[str, Any], tokenizer: Any, task: TaskSpec,
                          train_rows: datasets.Dataset) -> PreTrainedModel:
    """``CloudForRegression`` with target statistics from ``train_rows`` (physical units, saved in the config),
    or ``CloudForClassification`` with ``data.num_classes`` classes, per ``task.problem``."""
    from cloud_hf.data import label_statistics
    from cloud_hf.modeling_cloud import CloudForClassification, CloudForRegression

    if task.problem == "classification":
        return load_or_init_model(CloudForClassification, config, tokenizer,
                                  num_labels=int(config["data"].get("num_classes", 2)))
    mean, std = label_statistics(train_rows, task.label_columns)
    units = [task.units] * len(task.label_columns) if task.units else None
    return load_or_init_model(CloudForRegression, config, tokenizer, target_names=list(task.label_columns),
                              target_mean=mean, target_std=std, target_units=units)


def max_positions(config: dict[str, Any]) -> int:
    """``max_position_embeddings`` of the model the recipe will train (checkpoint or new config)."""
    from cloud_hf.configuration_cloud import CloudConfig

    model_config = config.get("model", {})
    if model_config.get("checkpoint"):
        return int(CloudConfig.from_pretrained(model_config["checkpoint"]).max_position_embeddings)
    return int(model_config.get("config", {}).get("max_position_embeddings",
                                                  CloudConfig().max_position_embeddings))


# ----------------------------------------------------------------------------------------------------
# metrics and plots
# ----------------------------------------------------------------------------------------------------


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R² and MAE/MAD (MAD = mean absolute deviation of the labels from their mean), physical units."""
    predictions = np.asarray(predictions, dtype=float).reshape(len(labels), -1)
    labels = np.asarray(labels, dtype=float).reshape(len(labels), -1)
    known = np.isfinite(labels)
    error = np.where(known, predictions - labels, 0.0)
    mae = float(np.abs(error).sum() / known.sum())
    rmse = float(math.sqrt((error**2).sum() / known.sum()))
    mean = np.nanmean(np.where(known, labels, np.nan), axis=0)
    deviation = np.where(known, labels - mean, 0.0)
    total = float((deviation**2).sum())
    mad = float(np.abs(deviation).sum() / known.sum())
    return {"mae": mae, "rmse": rmse, "r2": 1.0 - float((error**2).sum()) / total if total > 0 else float("nan"),
            "mad": mad, "mae_over_mad": mae / mad if mad > 0 else float("nan")}


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and (for two classes) ROC-AUC from logits."""
    from sklearn.metrics import roc_auc_score

    logits = np.asarray(logits, dtype=float)
    labels = np.asarray(labels).astype(int).reshape(-1)
    metrics = {"accuracy": float((logits.argmax(-1) == labels).mean())}
    if logits.shape[-1] == 2 and len(np.unique(labels)) == 2:
        shifted = logits - logits.max(-1, keepdims=True)
        probability = np.exp(shifted[:, 1]) / np.exp(shifted).sum(-1)
        metrics["roc_auc"] = float(roc_auc_score(labels, probability))
    return metrics


def metrics_function(task: TaskSpec):
    """The ``compute_metrics`` callable for ``Trainer`` (predictions are ``task.prediction_key`` outputs)."""
    def compute_metrics(evaluation: EvalPrediction) -> dict[str, float]:
        predictions = evaluation.predictions
        if task.problem == "classification":
            return classification_metrics(predictions, evaluation.label_ids)
        return regression_metrics(predictions, evaluation.label_ids)

    return compute_metrics


def parity_plot(predictions: np.ndarray, labels: np.ndarray, path: str | os.PathLike, *, title: str,
                quantity: str, units: str) -> Path:
    """Save a predicted-vs-true scatter plot (PNG) with the y = x line and MAE / R² in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predictions = np.asarray(predictions, dtype=float).reshape(-1)
    labels = np.asarray(labels, dtype=float).reshape(-1)
    metrics = regression_metrics(predictions, labels)
    low, high = float(min(labels.min(), predictions.min())), float(max(labels.max(), predictions.max()))
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([low, high], [low, high], color="grey", linewidth=1, label="y = x")
    axes.scatter(labels, predictions, s=8, alpha=0.6,
                 label=f"MAE {metrics['mae']:.3g} {units}, R² {metrics['r2']:.3f}, n={len(labels)}")
    unit = f" ({units})" if units else ""
    axes.set(xlabel=f"true {quantity}{unit}", ylabel=f"predicted {quantity}{unit}", title=title)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150)
    plt.close(figure)
    return path


# ----------------------------------------------------------------------------------------------------
# optimizer with layer-wise learning-rate decay, Trainer
# ----------------------------------------------------------------------------------------------------


BLOCK_PATTERN = re.compile(r"\.layers?\.(\d+)\.")  # cloud.layers.3. (cloud-hf) or encoder.layer.3. (BERT)


def layer_depth(parameter_name: str, num_layers: int) -> int:
    """Depth of a parameter: 0 for embeddings, i + 1 for encoder block i, num_layers + 1 for heads."""
    if ".embeddings." in f".{parameter_name}":
        return 0
    block = BLOCK_PATTERN.search(f".{parameter_name}")
    return int(block.group(1)) + 1 if block else num_layers + 1


def layerwise_parameter_groups(model: PreTrainedModel, learning_rate: float, decay: float,
                               weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups where block i's learning rate is ``learning_rate * decay ** (num_layers + 1 - depth)``.

    The head trains at the full rate, the embeddings at the smallest; biases and LayerNorm weights get no
    weight decay (as in ``Trainer``'s default).
    """
    num_layers = model.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        depth = layer_depth(name, num_layers)
        decays = parameter.ndim > 1 and "norm" not in name.lower()
        group = groups.setdefault((depth, decays), {
            "params": [], "weight_decay": weight_decay if decays else 0.0,
            "lr": learning_rate * decay ** (num_layers + 1 - depth)})
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


class CloudTrainer(Trainer):
    """``Trainer`` that scores one named model output and optionally decays learning rates layer by layer.

    ``prediction_key`` names the output compared with the labels in evaluation (e.g. ``"predictions"``
    in physical units, ``"heat_capacity"``); ``layer_lr_decay`` (e.g. 0.9) turns on layer-wise decay.
    """

    def __init__(self, *args: Any, prediction_key: str = "predictions", layer_lr_decay: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prediction_key = prediction_key
        self.layer_lr_decay = layer_lr_decay

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.layer_lr_decay is None or self.optimizer is not None:
            return super().create_optimizer(model)
        groups = layerwise_parameter_groups(self.model if model is None else model, self.args.learning_rate,
                                            self.layer_lr_decay, self.args.weight_decay)
        self.optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate,
                                           betas=(self.args.adam_beta1, self.args.adam_beta2),
                                           eps=self.args.adam_epsilon)
        return self.optimizer

    def prediction_step(self, model: torch.nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None):
        inputs = self._prepare_inputs(inputs)
        labels = None
        if self.label_names:
            labels = inputs.get(self.label_names[0])
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs)
        loss = outputs.get("loss")
        loss = loss.mean().detach() if loss is not None else None
        if prediction_loss_only:
            return loss, None, None
        predictions = outputs[self.prediction_key].detach()
        return loss, predictions, None if labels is None else labels.detach()


@dataclass
class ReproducibleMLMCollator(DataCollatorForLanguageModeling):
    """Masked-LM collator whose masks depend only on ``mask_seed`` and the batch's token ids.

    The global RNG is consumed in a different order by a resumed run (the data loader prefetches the next
    batch before the current step's dropout), so masks drawn from it differ after a resume; seeding each
    batch from its content makes an interrupted-and-resumed pre-training end in the same state as an
    uninterrupted one. Batches differ from epoch to epoch (reshuffled), so masks do too.

    The base class's own ``seed`` stays None: with a seed, ``DataCollatorForLanguageModeling`` replaces the
    generator by ``Generator(seed)`` on the first batch of every process (its ``_generator_pid`` check), so
    the first batch after a resume was masked differently from the same batch in the uninterrupted run.
    """

    mask_seed: int = 42

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        digest = hashlib.blake2b(repr([list(e["input_ids"]) for e in examples]).encode(), digest_size=8).digest()
        self.generator = torch.Generator().manual_seed((int(self.mask_seed) * 1_000_003
                                                        + int.from_bytes(digest, "little")) % 2**63)
        return super().torch_call(examples)


def training_arguments(config: dict[str, Any], **defaults: Any) -> TrainingArguments:
    """``TrainingArguments`` from the ``training`` section, with the run's ``output_dir`` and ``seed``."""
    values = {"report_to": "none", **defaults, **config.get("training", {})}
    values.setdefault("output_dir", config["output_dir"])
    values.setdefault("seed", int(config.get("seed", 42)))
    return TrainingArguments(**values)


def build_trainer(
    model: PreTrainedModel,
    tokenizer: Any,
    arguments: TrainingArguments,
    train_rows: datasets.Dataset,
    eval_rows: datasets.Dataset | None,
    task: TaskSpec | None,
    *,
    data_collator: Any | None = None,
    layer_lr_decay: float | None = None,
    early_stopping_patience: int | None = None,
) -> CloudTrainer:
    """A :class:`CloudTrainer` wired for ``task`` (metrics, label name, early stopping on the eval loss)."""
    callbacks = []
    if early_stopping_patience and eval_rows is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=int(early_stopping_patience)))
    if task is not None:
        arguments.label_names = [task.label_name]
    return CloudTrainer(
        model=model,
        args=arguments,
        data_collator=data_collator or DataCollatorWithPadding(tokenizer),
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        processing_class=tokenizer,
        compute_metrics=metrics_function(task) if task is not None else None,
        callbacks=callbacks,
        prediction_key=task.prediction_key if task is not None else "logits",
        layer_lr_decay=layer_lr_decay,
    )


def write_json(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` as indented JSON (non-finite floats as null-safe strings are avoided by the callers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
    return path


def config_snapshot(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of the run configuration, for the results file."""
    return copy.deepcopy(config)


@dataclass
class EvaluationResult:
    """Test-set outcome of :func:`train_and_evaluate`: metrics and per-row predictions (physical units)."""

    metrics: dict[str, float]
    ids: list[str]
    predictions: np.ndarray
    labels: np.ndarray
    train_seconds: float
    trainer: CloudTrainer


def train_and_evaluate(
    model: PreTrainedModel,
    tokenizer: Any,
    config: dict[str, Any],
    task: TaskSpec,
    train_rows: datasets.Dataset,
    validation_rows: datasets.Dataset,
    test_rows: datasets.Dataset | None,
    output_dir: str | os.PathLike,
    *,
    quantity: str,
) -> EvaluationResult | None:
    """Fine-tune ``model`` with early stopping on the validation loss, keep the best checkpoint, score the test set.

    Writes to ``output_dir``: Trainer checkpoints, ``model/`` (best model + tokenizer, safetensors),
    ``test_predictions.csv``, ``test_metrics.json`` and, for regression, ``parity_test.png``.
    Returns None when there is no test set.
    """
    import time

    import pandas as pd

    output_dir = Path(output_dir)
    evaluation_defaults = {"eval_strategy": "epoch", "save_strategy": "epoch", "logging_strategy": "epoch",
                           "load_best_model_at_end": True, "metric_for_best_model": "loss",
                           "greater_is_better": False, "save_total_limit": 2}
    arguments = training_arguments({**config, "output_dir": str(output_dir)}, **evaluation_defaults)
    trainer = build_trainer(model, tokenizer, arguments, model_inputs(train_rows, task),
                            model_inputs(validation_rows, task), task,
                            layer_lr_decay=config.get("model", {}).get("layer_lr_decay"),
                            early_stopping_patience=config.get("early_stopping_patience"))
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_argument(config))
    train_seconds = time.perf_counter() - started
    trainer.save_model(str(output_dir / "model"))
    if test_rows is None:
        return None
    outcome = trainer.predict(model_inputs(test_rows, task), metric_key_prefix="test")
    predictions = np.asarray(outcome.predictions)
    labels = np.asarray(outcome.label_ids)
    metrics = {key.removeprefix("test_"): float(value) for key, value in outcome.metrics.items()}
    if task.problem == "regression":
        train_mean = np.asarray([train_rows[name] for name in task.label_columns], dtype=float).mean(axis=1)
        baseline = regression_metrics(np.broadcast_to(train_mean, labels.reshape(len(labels), -1).shape), labels)
        metrics["mean_predictor_mae"] = baseline["mae"]
    result = EvaluationResult(metrics=metrics, ids=list(test_rows["id"]), predictions=predictions,
                              labels=labels, train_seconds=train_seconds, trainer=trainer)
    if trainer.is_world_process_zero():
        table = {"id": result.ids}
        flat_predictions = predictions.reshape(len(result.ids), -1)
        flat_labels = labels.reshape(len(result.ids), -1)
        for index, name in enumerate(task.label_columns):
            table[f"{name}_true"] = flat_labels[:, index] if task.problem == "regression" else labels
            table[f"{name}_predicted"] = flat_predictions[:, index] if task.problem == "regression" else \
                flat_predictions.argmax(-1)
        pd.DataFrame(table).to_csv(output_dir / "test_predictions.csv", index=False)
        write_json({"metrics": metrics, "train_seconds": train_seconds, "n_train": len(train_rows),
                    "n_validation": len(validation_rows), "n_test": len(test_rows)},
                   output_dir / "test_metrics.json")
        if task.problem == "regression":
            parity_plot(flat_predictions[:, 0], flat_labels[:, 0], output_dir / "parity_test.png",
                        title=f"{quantity}: test set", quantity=quantity, units=task.units)
        logger.info("test metrics: %s", json.dumps(metrics))
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


__all__ = [
    "CloudTrainer",
    "EvaluationResult",
    "PreparedSplit",
    "ReproducibleMLMCollator",
    "TaskSpec",
    "apply_override",
    "build_trainer",
    "carve_validation",
    "classification_metrics",
    "init_supervised_model",
    "layer_depth",
    "layerwise_parameter_groups",
    "limit_rows",
    "load_config",
    "load_or_init_model",
    "load_tokenizer",
    "max_positions",
    "metrics_function",
    "model_inputs",
    "parity_plot",
    "parse_value",
    "plot_debye_curves",
    "prepare_table",
    "read_split",
    "recipe_splits",
    "recipe_tokenizer",
    "regression_metrics",
    "resume_argument",
    "scope_encoder_for",
    "start_run",
    "train_and_evaluate",
    "training_arguments",
    "write_json",
]
