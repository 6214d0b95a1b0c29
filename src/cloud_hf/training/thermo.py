"""Multi-fidelity training of the thermodynamics heads (``recipes/thermo.py``) on the training package.

Labels come from any mix of sources (``ThermoDataArguments.labels``), per crystal, NaN where absent:

* ``dos``: the per-atom phonon DOS (the ``dos`` head only);
* ``cv_curve``: DOS-derived C_v at ``label_temperatures``;
* ``entropy``: DOS-derived S at ``label_temperatures``;
* ``cv_300``: cloud_cv's C_v(300 K) label (the paper's CLOUD-DEBYE data), joined to the structures;
* ``agl``: AFLOW AGL θ_D of ``../shared/data/structures/aflow/debye_temperature/train.csv.gz`` crystals, as the
  heads' auxiliary output (these rows carry no other label).

Crystals are encoded to SCOPE with the tokenizer's recorded encoder (canonical for the bundled one). The test split
(``recipes/splits/phonons_test_ids.txt``) is never loaded for training; model choices use the validation split.
Examples and the collator are in :mod:`~cloud_hf.training.thermo_data`, scores in
:mod:`~cloud_hf.training.thermo_evaluation`; the Trainer is the package's :class:`~cloud_hf.training.CloudTrainer`.
"""

# ruff: noqa: RUF009  (option() returns a dataclasses.Field, built by transformers.HfArg)

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from transformers import PreTrainedModel, set_seed

from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.modeling_cloud_thermo import CloudThermoModel
from cloud_hf.phonons import DEFAULT_PHONON_FILE, load_phonon_table, phonon_splits
from cloud_hf.training.arguments import CloudTrainingArguments, ModelArguments, option
from cloud_hf.training.models import recipe_tokenizer
from cloud_hf.training.reporting import write_json
from cloud_hf.training.thermo_data import ThermoCollator, agl_examples, phonon_examples
from cloud_hf.training.thermo_evaluation import EVAL_TEMPERATURES, evaluate_on, fit_std_scale
from cloud_hf.training.trainer import build_trainer

logger = logging.getLogger("cloud_hf.training.thermo")

LABEL_SOURCES = ("dos", "cv_curve", "entropy", "cv_300", "agl")
HEADS = ("dos", "debye-einstein", "debye")
DEFAULT_LABEL_TEMPERATURES = [10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0, 650.0, 800.0]
PRETRAINED_ENCODER_DIR = Path(__file__).resolve().parents[1] / "bundled" / "debye_agl"
"""The pretrained encoder every head starts from: the previous bundled CloudDebyeModel (4 × 128, MLM-pretrained on
canonical SCOPE, then fine-tuned on AFLOW AGL θ_D), shipped beside the default model."""
_AGL_FILE = DEFAULT_PHONON_FILE.parents[1] / "structures" / "aflow" / "debye_temperature" / "train.csv.gz"


@dataclass
class ThermoDataArguments:
    """Which crystals and labels to train on (section ``data`` of the YAML).

    Not a :class:`~cloud_hf.training.DataArguments`: the phonon table has fixed columns and a committed test split,
    so that class's column, row-cap and table-reading options would be listed by ``--help`` and do nothing here.
    """

    _argument_group_name = "data options (YAML section data)"

    phonon_file: str = option(str(DEFAULT_PHONON_FILE), "The phonon DOS table (petretto_phdos_train.csv.gz).")
    labels: list[str] = option(["dos", "cv_curve", "entropy"], f"Label sources, any of {', '.join(LABEL_SOURCES)}.")
    label_temperatures: list[float] = option(DEFAULT_LABEL_TEMPERATURES, "Temperatures (K) of the C_v/S curve labels.")
    validation_fraction: float = option(0.1, "Share of the non-test crystals carved out for validation.")
    split_seed: int = option(0, "Seed of the train/validation carve.")
    agl_file: str = option(str(_AGL_FILE), "AFLOW AGL θ_D rows (columns cif, debye_temperature in K).")
    agl_max_rows: int | None = option(None, "Read only the first N AGL rows; None: all.")
    max_train_rows: int | None = option(None, "Train on only the first N phonon training crystals (smoke runs).")

    def __post_init__(self) -> None:
        unknown = set(self.labels) - set(LABEL_SOURCES)
        if unknown or not self.labels:
            raise CloudConfigError(f"labels must be a non-empty subset of {LABEL_SOURCES}, got {self.labels}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise CloudConfigError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")


@dataclass
class ThermoModelArguments(ModelArguments):
    """The head and where its encoder starts (section ``model``)."""

    head: Literal["dos", "debye-einstein", "debye"] = option("dos", f"The head, one of {', '.join(HEADS)}.")
    checkpoint: str = option(str(PRETRAINED_ENCODER_DIR), "Pretrained cloud-hf encoder the heads start from.")
    config_overrides: dict | str | None = option(
        None, "CloudConfig values set on the checkpoint's config (e.g. '{hidden_dropout_prob: 0.2}').")
    members: int = option(1, "Deep-ensemble members (thermo heads; each its own encoder copy and head).")
    num_einstein: int = option(4, "Einstein frequencies of the debye-einstein head.")
    bootstrap: bool = option(True, "Poisson(1) bootstrap weights per member and crystal.")
    calibrate_std: bool = option(True, "Fit the ensemble std scale on validation (95 per cent of truths within ±2σ).")
    head_dropout: float = option(0.1, "Dropout before the heads.")
    composition_features: bool = option(
        False, "Heads also read composition descriptors pooled from the SCOPE tokens (cloud_hf.composition).")
    dos_loss_weight: float = option(1.0, "Weight of the DOS loss per grid point (L1, against the C_v and S losses).")
    cumulative_dos_loss_weight: float = option(
        0.0, "Weight of the L1 loss of the cumulative mode count (the Wasserstein-1 distance of the spectra).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head not in HEADS:
            raise CloudConfigError(f"head must be one of {HEADS}, got {self.head!r}")


def build_model(model_args: ThermoModelArguments, train_examples: list[dict[str, Any]],
                tokenizer: Any = None) -> PreTrainedModel:
    """The head on the pretrained encoder (the DOS head's prior: the logit of the training crystals' mean DOS)."""
    checkpoint = Path(model_args.checkpoint)
    overrides = dict(model_args.config_overrides or {})
    if model_args.head == "debye":
        if model_args.composition_features:
            raise CloudConfigError("composition_features is an input of the dos and debye-einstein heads; the debye "
                                   "head (CloudDebyeModel, the paper's) reads the tokens only: set it to false")
        return CloudDebyeModel.from_pretrained(checkpoint, head_dropout=model_args.head_dropout, **overrides)
    prior = None
    if model_args.head == "dos":
        dos = np.stack([example["dos_labels"] for example in train_examples])
        mean = np.nanmean(dos, axis=0) if not np.isnan(dos).all() else np.full(dos.shape[1], 3.0 / 1000.0)
        mean = np.maximum(mean, 1e-5)
        prior = np.log(np.expm1(mean)).tolist()  # softplus⁻¹
    return CloudThermoModel.from_encoder(checkpoint, tokenizer, thermo_head=model_args.head,
                                         thermo_members=model_args.members, thermo_num_einstein=model_args.num_einstein,
                                         thermo_dos_prior=prior, head_dropout=model_args.head_dropout,
                                         thermo_composition_features=model_args.composition_features,
                                         thermo_dos_loss_weight=model_args.dos_loss_weight,
                                         thermo_cumulative_dos_loss_weight=model_args.cumulative_dos_loss_weight,
                                         **overrides)


@dataclass
class ThermoRun:
    """What :func:`train_thermo` produced."""

    model: PreTrainedModel
    tokenizer: Any
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    output_dir: Path


def train_thermo(data_args: ThermoDataArguments, model_args: ThermoModelArguments,
                 training_args: CloudTrainingArguments, evaluate_test: bool = True) -> ThermoRun:
    """Train, calibrate, save (``output_dir/model``) and evaluate (validation; test unless told not to); the scores
    go to ``output_dir/metrics.json``."""
    output_dir = Path(training_args.output_dir)
    tokenizer = recipe_tokenizer(model_args)
    table = load_phonon_table(data_args.phonon_file)
    train_table, validation_table, test_table = phonon_splits(table, data_args.validation_fraction,
                                                              data_args.split_seed)
    if data_args.max_train_rows is not None:
        train_table = train_table.select(range(min(data_args.max_train_rows, len(train_table))))
    temperatures = list(data_args.label_temperatures)
    phonon_labels = [source for source in data_args.labels if source != "agl"]
    train_examples = phonon_examples(train_table, tokenizer, phonon_labels, temperatures) if phonon_labels else []
    validation_examples = phonon_examples(validation_table, tokenizer, phonon_labels or ["cv_curve"], temperatures)
    if "agl" in data_args.labels:
        train_examples += agl_examples(data_args.agl_file, tokenizer, len(temperatures),
                                       len(table.frequencies) - 1, data_args.agl_max_rows)
    if not train_examples:
        raise CloudDataError("no training examples")
    logger.info("training on %d examples (%s), validating on %d crystals", len(train_examples),
                ", ".join(data_args.labels), len(validation_examples))

    set_seed(training_args.seed)  # new head weights: the same in every run (torch's own start seed is random)
    model = build_model(model_args, train_examples, tokenizer)
    if model_args.head != "debye":
        model.config.thermo_agl_trained = "agl" in data_args.labels
    members = getattr(model.config, "thermo_members", 1)
    collator = ThermoCollator(tokenizer.pad_token_id, temperatures, model, members, model_args.bootstrap,
                              training_args.seed)
    training_args.remove_unused_columns = False
    training_args.prediction_loss_only = True
    training_args.label_names = ["heat_capacity_labels"]
    trainer = build_trainer(model, tokenizer, training_args, train_examples, validation_examples, None,
                            data_collator=collator)
    trainer.train()
    model = trainer.model

    if model_args.head != "debye" and members > 1 and model_args.calibrate_std:
        model.config.thermo_std_scale = fit_std_scale(model, tokenizer, validation_table)
        logger.info("ensemble std scale fitted on validation: %.3f", model.config.thermo_std_scale)
    validation_metrics, _ = evaluate_on(model, tokenizer, validation_table,
                                        [example["input_ids"] for example in validation_examples])
    test_metrics = evaluate_on(model, tokenizer, test_table)[0] if evaluate_test else None
    model_dir = output_dir / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    write_json({"validation": validation_metrics, "test": test_metrics,
                "options": {"data": asdict(data_args), "model": asdict(model_args)},
                "train_examples": len(train_examples), "epochs": training_args.num_train_epochs},
               output_dir / "metrics.json")
    logger.info("validation %s", json.dumps(validation_metrics))
    if test_metrics is not None:
        logger.info("test %s", json.dumps(test_metrics))
    return ThermoRun(model, tokenizer, validation_metrics, test_metrics, output_dir)


__all__ = [
    "DEFAULT_LABEL_TEMPERATURES",
    "EVAL_TEMPERATURES",
    "HEADS",
    "LABEL_SOURCES",
    "PRETRAINED_ENCODER_DIR",
    "ThermoDataArguments",
    "ThermoModelArguments",
    "ThermoRun",
    "build_model",
    "evaluate_on",
    "train_thermo",
]
