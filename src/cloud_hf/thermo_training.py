"""Multi-fidelity training of the thermodynamics heads with one ``transformers.Trainer``.

Labels come from any mix of sources (``ThermoDataOptions.labels``), per crystal, NaN where absent:

* ``dos``: the per-atom phonon DOS (the ``dos`` head only);
* ``cv_curve``: DOS-derived C_v at ``label_temperatures``;
* ``entropy``: DOS-derived S at ``label_temperatures``;
* ``cv_300``: cloud_cv's C_v(300 K) label (the paper's CLOUD-DEBYE data), joined to the structures;
* ``agl``: AFLOW AGL θ_D of ``../shared/data/structures/aflow/debye_temperature/train.csv.gz`` crystals, as the
  heads' auxiliary output (these rows carry no other label).

Crystals are encoded to SCOPE with the tokenizer's recorded encoder (canonical for the bundled one). The test split
(``recipes/splits/phonons_test_ids.txt``) is never loaded for training; model choices use the validation split.
This module is self-contained (options, data, collator, Trainer call, evaluation) so that it can later move onto
the project's shared training package.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from transformers import AutoTokenizer, HfArgumentParser, PreTrainedModel, Trainer, TrainingArguments

from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.modeling_cloud_thermo import CloudThermoModel
from cloud_hf.phonons import DEFAULT_PHONON_FILE, PhononTable, load_phonon_table, phonon_splits
from cloud_hf.scope import ScopeEncoder
from cloud_hf.structures import load_cell

logger = logging.getLogger("cloud_hf.thermo_training")

LABEL_SOURCES = ("dos", "cv_curve", "entropy", "cv_300", "agl")
HEADS = ("dos", "debye-einstein", "debye")
EVAL_TEMPERATURES = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0)
"""Temperatures (K) of the per-atom C_v metrics (and S at 300 K)."""
DEFAULT_LABEL_TEMPERATURES = [10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0, 650.0, 800.0]
PRETRAINED_ENCODER_DIR = Path(__file__).resolve().parent / "bundled" / "debye_agl"
"""The pretrained encoder every head starts from: the previous bundled CloudDebyeModel (4 × 128, MLM-pretrained on
canonical SCOPE, then fine-tuned on AFLOW AGL θ_D), shipped beside the default model."""
_AGL_FILE = DEFAULT_PHONON_FILE.parents[1] / "structures" / "aflow" / "debye_temperature" / "train.csv.gz"


@dataclass
class ThermoDataOptions:
    """Which crystals and labels to train on."""

    phonon_file: str = field(default=str(DEFAULT_PHONON_FILE), metadata={"help": "the phonon DOS table"})
    labels: list[str] = field(default_factory=lambda: ["dos", "cv_curve", "entropy"],
                              metadata={"help": f"label sources, any of {LABEL_SOURCES}"})
    label_temperatures: list[float] = field(default_factory=lambda: list(DEFAULT_LABEL_TEMPERATURES),
                                            metadata={"help": "temperatures (K) of the C_v/S curve labels"})
    validation_fraction: float = field(default=0.1, metadata={"help": "share of non-test crystals for validation"})
    split_seed: int = field(default=0, metadata={"help": "seed of the train/validation carve"})
    agl_file: str = field(default=str(_AGL_FILE), metadata={"help": "AFLOW AGL θ_D rows (cif, debye_temperature)"})
    agl_max_rows: int | None = field(default=None, metadata={"help": "cap on AGL rows (None: all)"})
    max_train_rows: int | None = field(default=None, metadata={"help": "cap on phonon training crystals (smoke runs)"})


@dataclass
class ThermoModelOptions:
    """The head and where its encoder starts."""

    head: str = field(default="dos", metadata={"help": f"one of {HEADS}"})
    checkpoint: str = field(default=str(PRETRAINED_ENCODER_DIR), metadata={"help": "encoder to start from"})
    members: int = field(default=1, metadata={"help": "deep-ensemble members (thermo heads)"})
    num_einstein: int = field(default=4, metadata={"help": "Einstein frequencies of the debye-einstein head"})
    bootstrap: bool = field(default=True, metadata={"help": "Poisson(1) bootstrap weights per member and crystal"})
    calibrate_std: bool = field(default=True, metadata={"help": "fit the ensemble std scale on validation"})
    head_dropout: float = field(default=0.1, metadata={"help": "dropout before the heads"})


def parse_options(argv: Sequence[str] | None = None) -> tuple[ThermoDataOptions, ThermoModelOptions, TrainingArguments]:
    """Options from ``[config.yaml] [--key value ...]`` (YAML keys as the flags; the command line wins)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    yaml_args: list[str] = []
    if argv and argv[0].endswith((".yaml", ".yml")):
        path = Path(argv.pop(0))
        if not path.is_file():
            raise CloudConfigError(f"{path}: configuration file not found")
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            if value is None:  # null: the option's default (every optional option defaults to None)
                continue
            values = value if isinstance(value, list) else [value]
            yaml_args += [f"--{key}", *(str(item) for item in values)]
    parser = HfArgumentParser((ThermoDataOptions, ThermoModelOptions, TrainingArguments))
    try:
        data, model, training = parser.parse_args_into_dataclasses(yaml_args + argv)
    except SystemExit as error:
        raise CloudConfigError(f"invalid options {yaml_args + argv}") from error
    unknown = set(data.labels) - set(LABEL_SOURCES)
    if unknown or not data.labels:
        raise CloudConfigError(f"labels must be a non-empty subset of {LABEL_SOURCES}, got {data.labels}")
    if model.head not in HEADS:
        raise CloudConfigError(f"head must be one of {HEADS}, got {model.head!r}")
    return data, model, training


# --- data ----------------------------------------------------------------------------------------------------------


def encode_crystals(tokenizer: Any, cifs: Sequence[str], names: Sequence[str]) -> list[list[int]]:
    """Token ids of each crystal's SCOPE string (the tokenizer's recorded encoder; canonical by default)."""
    encoder = scope_encoder_for(tokenizer)
    return [tokenizer(encoder.encode(cif, name=name))["input_ids"] for cif, name in zip(cifs, names)]


def scope_encoder_for(tokenizer: Any) -> ScopeEncoder:
    """The ``ScopeEncoder`` a tokenizer was built for (``tokenizer.scope_config``; canonical when unrecorded)."""
    settings = getattr(tokenizer, "scope_config", None)
    return ScopeEncoder.from_dict(settings) if settings else ScopeEncoder(mode="canonical")


def _nan(*shape: int) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float32)


def phonon_examples(table: PhononTable, tokenizer: Any, labels: Sequence[str],
                    temperatures: Sequence[float]) -> list[dict[str, Any]]:
    """Training examples of phonon crystals with the chosen label sources (others NaN)."""
    heat, entropy = table.thermo_labels(temperatures)
    per_atom_dos = table.per_atom_dos()[:, 1:]  # the DOS head's grid starts at the first bin (20 cm⁻¹)
    ids = encode_crystals(tokenizer, table.cifs, table.mp_ids)
    column_300 = list(temperatures).index(300.0) if 300.0 in temperatures else None
    if "cv_300" in labels and column_300 is None:
        raise CloudConfigError("label source cv_300 needs 300 K among label_temperatures")
    examples = []
    for row in range(len(table)):
        heat_labels = heat[row].astype(np.float32) if "cv_curve" in labels else _nan(len(temperatures))
        if "cv_300" in labels and "cv_curve" not in labels:
            heat_labels[column_300] = table.cv_label_300[row]
        examples.append({
            "input_ids": ids[row], "n_atoms": float(table.n_atoms[row]),
            "heat_capacity_labels": heat_labels,
            "entropy_labels": entropy[row].astype(np.float32) if "entropy" in labels else _nan(len(temperatures)),
            "dos_labels": per_atom_dos[row].astype(np.float32) if "dos" in labels else _nan(per_atom_dos.shape[1]),
            "agl_theta_labels": np.float32(np.nan),
        })
    return examples


def agl_examples(path: str | Path, tokenizer: Any, n_temperatures: int, n_frequencies: int,
                 max_rows: int | None = None) -> list[dict[str, Any]]:
    """AFLOW AGL θ_D rows (structures that encode; the others are skipped with a count in the log)."""
    frame = pd.read_csv(path)
    if max_rows is not None:
        frame = frame.iloc[:max_rows]
    encoder = scope_encoder_for(tokenizer)
    examples, skipped = [], 0
    for index, (cif, theta) in enumerate(zip(frame["cif"], frame["debye_temperature"])):
        try:
            cell = load_cell(cif, name=f"{path}:{index}")
            input_ids = tokenizer(encoder.encode(cell))["input_ids"]
        except Exception:  # a row that cannot be encoded is left out of this auxiliary source
            skipped += 1
            continue
        examples.append({
            "input_ids": input_ids, "n_atoms": float(len(cell)),
            "heat_capacity_labels": _nan(n_temperatures), "entropy_labels": _nan(n_temperatures),
            "dos_labels": _nan(n_frequencies), "agl_theta_labels": np.float32(theta),
        })
    logger.info("AGL θ_D rows: %d used, %d not encodable", len(examples), skipped)
    return examples


class ThermoCollator:
    """Pads token ids and stacks labels; adds the label temperatures and each member's bootstrap weights.

    Only the keyword arguments the model's ``forward`` accepts are passed (CloudDebyeModel takes no S or DOS).
    """

    def __init__(self, pad_token_id: int, temperatures: Sequence[float], model: PreTrainedModel,
                 members: int = 1, bootstrap: bool = False, seed: int = 0):
        self.pad_token_id = pad_token_id
        self.temperatures = torch.tensor(list(temperatures), dtype=torch.float32)
        self.accepted = set(inspect.signature(model.forward).parameters)
        self.members = members
        self.bootstrap = bootstrap
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(example["input_ids"]) for example in examples)
        input_ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
        for row, example in enumerate(examples):
            input_ids[row, : len(example["input_ids"])] = torch.tensor(example["input_ids"])
            attention_mask[row, : len(example["input_ids"])] = 1
        batch: dict[str, torch.Tensor] = {
            "input_ids": input_ids, "attention_mask": attention_mask,
            "n_atoms": torch.tensor([example["n_atoms"] for example in examples]),
            "temperature": self.temperatures.expand(len(examples), -1),
        }
        for name in ("heat_capacity_labels", "entropy_labels", "dos_labels", "agl_theta_labels"):
            batch[name] = torch.as_tensor(np.stack([example[name] for example in examples]))
        if self.bootstrap and self.members > 1:
            rates = torch.ones(len(examples), self.members)
            batch["member_weights"] = torch.poisson(rates, generator=self.generator)
        return {name: value for name, value in batch.items() if name in self.accepted}


# --- model ------------------------------------------------------------------------------------------------------


def build_model(options: ThermoModelOptions, train_examples: list[dict[str, Any]]) -> PreTrainedModel:
    """The head on the pretrained encoder (the DOS head's prior: the logit of the training crystals' mean DOS)."""
    checkpoint = Path(options.checkpoint)
    if options.head == "debye":
        return CloudDebyeModel.from_pretrained(checkpoint, head_dropout=options.head_dropout)
    prior = None
    if options.head == "dos":
        dos = np.stack([example["dos_labels"] for example in train_examples])
        mean = np.nanmean(dos, axis=0) if not np.isnan(dos).all() else np.full(dos.shape[1], 3.0 / 1000.0)
        mean = np.maximum(mean, 1e-5)
        prior = np.log(np.expm1(mean)).tolist()  # softplus⁻¹
    return CloudThermoModel.from_encoder(checkpoint, thermo_head=options.head, thermo_members=options.members,
                                         thermo_num_einstein=options.num_einstein, thermo_dos_prior=prior,
                                         head_dropout=options.head_dropout)


# --- evaluation -------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_thermo(model: PreTrainedModel, input_ids: Sequence[list[int]], n_atoms: Sequence[float],
                   temperatures: Sequence[float], pad_token_id: int, batch_size: int = 128) -> dict[str, np.ndarray]:
    """C_v and S per mole of cells (and their std where the model has one), ``(n, n_T)``, in evaluation mode."""
    model.eval()
    collected: dict[str, list[np.ndarray]] = {}
    temperature = torch.tensor(list(temperatures), dtype=torch.float32)
    for start in range(0, len(input_ids), batch_size):
        chunk = input_ids[start: start + batch_size]
        length = max(len(ids) for ids in chunk)
        ids = torch.full((len(chunk), length), pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, token_ids in enumerate(chunk):
            ids[row, : len(token_ids)] = torch.tensor(token_ids)
            mask[row, : len(token_ids)] = 1
        atoms = torch.tensor(list(n_atoms[start: start + batch_size]), dtype=torch.float32)
        output = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                       temperature=temperature.expand(len(chunk), -1).to(model.device), n_atoms=atoms.to(model.device))
        for name in ("heat_capacity", "heat_capacity_std", "entropy", "entropy_std", "dos"):
            value = getattr(output, name, None)
            if value is not None:
                collected.setdefault(name, []).append(value.float().cpu().numpy())
    return {name: np.concatenate(values) for name, values in collected.items()}


def thermo_metrics(prediction: dict[str, np.ndarray], table: PhononTable,
                   temperatures: Sequence[float] = EVAL_TEMPERATURES) -> dict[str, float]:
    """Per-atom MAE of C_v at each temperature and of S(300 K), J/(mol·K); calibration where std is given.

    ``prediction`` holds C_v/S at ``temperatures`` then 300 K last (as :func:`evaluate_on` asks for them).
    """
    heat, entropy = table.thermo_labels([*list(temperatures), 300.0])
    atoms = table.n_atoms[:, None]
    error = np.abs(prediction["heat_capacity"] - heat) / atoms
    metrics = {f"cv_mae_{int(t)}K": float(error[:, i].mean()) for i, t in enumerate(temperatures)}
    metrics["s_mae_300K"] = float((np.abs(prediction["entropy"][:, -1] - entropy[:, -1]) / table.n_atoms).mean())
    if "heat_capacity_std" in prediction and float(prediction["heat_capacity_std"].max()) > 0:
        ratio = np.abs(prediction["heat_capacity"] - heat) / np.maximum(prediction["heat_capacity_std"], 1e-12)
        for i, t in enumerate(temperatures):
            metrics[f"cv_within_1sigma_{int(t)}K"] = float((ratio[:, i] <= 1).mean())
            metrics[f"cv_within_2sigma_{int(t)}K"] = float((ratio[:, i] <= 2).mean())
        s_ratio = np.abs(prediction["entropy"][:, -1] - entropy[:, -1]) / np.maximum(prediction["entropy_std"][:, -1],
                                                                                     1e-12)
        metrics["s_within_1sigma_300K"] = float((s_ratio <= 1).mean())
        metrics["s_within_2sigma_300K"] = float((s_ratio <= 2).mean())
    return metrics


def evaluate_on(model: PreTrainedModel, tokenizer: Any, table: PhononTable,
                input_ids: Sequence[list[int]] | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """:func:`thermo_metrics` of ``model`` on ``table`` (crystals encoded unless ``input_ids`` are given)."""
    ids = input_ids if input_ids is not None else encode_crystals(tokenizer, table.cifs, table.mp_ids)
    prediction = predict_thermo(model, ids, table.n_atoms, [*list(EVAL_TEMPERATURES), 300.0], tokenizer.pad_token_id)
    return thermo_metrics(prediction, table), prediction


def fit_std_scale(model: CloudThermoModel, tokenizer: Any, validation: PhononTable,
                  target_coverage: float = 0.95) -> float:
    """The factor on the ensemble std that puts ``target_coverage`` of validation C_v truths within ±2σ
    (pooled over the metric temperatures); the members' raw spread is usually too narrow."""
    model.config.thermo_std_scale = 1.0
    _, prediction = evaluate_on(model, tokenizer, validation)
    heat, _ = validation.thermo_labels([*list(EVAL_TEMPERATURES), 300.0])
    ratio = np.abs(prediction["heat_capacity"] - heat) / np.maximum(prediction["heat_capacity_std"], 1e-12)
    return float(np.quantile(ratio[:, :-1], target_coverage) / 2.0)


# --- the run ----------------------------------------------------------------------------------------------------


@dataclass
class ThermoRun:
    """What :func:`train_thermo` produced."""

    model: PreTrainedModel
    tokenizer: Any
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    output_dir: Path


def train_thermo(data: ThermoDataOptions, model_options: ThermoModelOptions, training: TrainingArguments,
                 evaluate_test: bool = True) -> ThermoRun:
    """Train, calibrate, save (``output_dir/model``) and evaluate (validation; test unless told not to)."""
    output_dir = Path(training.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_options.checkpoint)
    table = load_phonon_table(data.phonon_file)
    train_table, validation_table, test_table = phonon_splits(table, data.validation_fraction, data.split_seed)
    if data.max_train_rows is not None:
        train_table = train_table.select(range(min(data.max_train_rows, len(train_table))))
    temperatures = list(data.label_temperatures)
    phonon_labels = [source for source in data.labels if source != "agl"]
    if not phonon_labels and "agl" not in data.labels:
        raise CloudConfigError("no label source chosen")
    train_examples = phonon_examples(train_table, tokenizer, phonon_labels, temperatures) if phonon_labels else []
    validation_examples = phonon_examples(validation_table, tokenizer, phonon_labels or ["cv_curve"], temperatures)
    if "agl" in data.labels:
        train_examples += agl_examples(data.agl_file, tokenizer, len(temperatures),
                                       len(table.frequencies) - 1, data.agl_max_rows)
    if not train_examples:
        raise CloudDataError("no training examples")
    logger.info("training on %d examples (%s), validating on %d crystals", len(train_examples),
                ", ".join(data.labels), len(validation_examples))

    model = build_model(model_options, train_examples)
    if model_options.head != "debye":
        model.config.thermo_agl_trained = "agl" in data.labels
    members = getattr(model.config, "thermo_members", 1)
    collator = ThermoCollator(tokenizer.pad_token_id, temperatures, model, members, model_options.bootstrap,
                              training.seed)
    training.remove_unused_columns = False
    training.prediction_loss_only = True
    training.label_names = ["heat_capacity_labels"]
    trainer = Trainer(model=model, args=training, train_dataset=train_examples, eval_dataset=validation_examples,
                      data_collator=collator)
    trainer.train()
    model = trainer.model

    if model_options.head != "debye" and members > 1 and model_options.calibrate_std:
        model.config.thermo_std_scale = fit_std_scale(model, tokenizer, validation_table)
        logger.info("ensemble std scale fitted on validation: %.3f", model.config.thermo_std_scale)
    validation_metrics, _ = evaluate_on(model, tokenizer, validation_table,
                                        [example["input_ids"] for example in validation_examples])
    test_metrics = evaluate_on(model, tokenizer, test_table)[0] if evaluate_test else None
    model_dir = output_dir / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    report = {"validation": validation_metrics, "test": test_metrics,
              "options": {"data": asdict(data), "model": asdict(model_options)},
              "train_examples": len(train_examples), "epochs": training.num_train_epochs}
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2, default=str))
    logger.info("validation %s", json.dumps(validation_metrics))
    if test_metrics is not None:
        logger.info("test %s", json.dumps(test_metrics))
    return ThermoRun(model, tokenizer, validation_metrics, test_metrics, output_dir)

