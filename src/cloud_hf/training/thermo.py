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
import torch
from transformers import PreTrainedModel, set_seed

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.features import get_features
from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.modeling_cloud_thermo import CloudThermoModel
from cloud_hf.phonons import (
    DEFAULT_PHONON_FILE,
    JARVIS_METALS_FILE,
    PHONONDB_FILE,
    SOURCES,
    UNSTABLE_IMAGINARY_FRACTION,
    WIDE_FREQUENCIES,
    BadPhononRow,
    PhononCrystals,
    PhononTable,
    crystals_splits,
    load_phonon_crystals,
    load_phonon_table,
    phonon_splits,
)
from cloud_hf.training.arguments import CloudTrainingArguments, ModelArguments, option
from cloud_hf.training.models import recipe_tokenizer
from cloud_hf.training.reporting import write_json
from cloud_hf.training.thermo_data import (
    ThermoCollator,
    agl_examples,
    crystal_examples,
    pad_token_ids,
    phonon_examples,
    stacked_features,
)
from cloud_hf.training.thermo_evaluation import (
    EVAL_TEMPERATURES,
    crystal_metrics,
    crystal_prediction,
    crystal_split_metrics,
    crystal_std_scale,
    evaluate_on,
    fit_std_scale,
    fit_unseen_element_std,
    scaled_std,
    thermo_metrics,
    widened_std,
)
from cloud_hf.training.trainer import build_trainer
from cloud_hf.units import EVEN_DOS_PER_ATOM

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
    sources: list[str] = option(
        [], f"Train on the phonon crystals of these sources (any of {', '.join(SOURCES)}; cloud_hf.phonons."
            "load_phonon_crystals), split by the committed test ids of every source; empty: the Petretto table "
            "alone with its own split (phonon_file).")
    phonondb_file: str = option(str(PHONONDB_FILE), "The phonondb table (phonondb_train.csv.gz).")
    jarvis_file: str = option(str(JARVIS_METALS_FILE), "The JARVIS metals table (jarvis_metals_train.csv.gz).")
    max_imaginary_fraction: float | None = option(
        UNSTABLE_IMAGINARY_FRACTION, "phonondb crystals with a larger share of imaginary modes are left out "
                                     "(reported as bad rows); None keeps them.")
    holdout_elements: list[str] = option(
        [], "Non-test crystals containing any of these elements go to validation, not training (a shifted "
            "validation carve, for calibrating the std on chemistry unlike the training set).")
    cache_dir: str | None = option(
        "outputs/cache", "Where the crystals' encodings (token ids, structure features) are kept between runs; None: "
                         "encode every run.")
    final_fit: bool = option(
        False, "After the model choice: train on the validation carve too (every non-test crystal), for a fixed "
               "number of epochs (set eval_strategy 'no'); the ensemble std scale is then model.std_scale.")

    def __post_init__(self) -> None:
        unknown = set(self.labels) - set(LABEL_SOURCES)
        if unknown or not self.labels:
            raise CloudConfigError(f"labels must be a non-empty subset of {LABEL_SOURCES}, got {self.labels}")
        if set(self.sources) - set(SOURCES):
            raise CloudConfigError(f"sources must be a subset of {SOURCES}, got {self.sources}")
        if self.sources and set(self.labels) & {"cv_300", "agl"}:
            raise CloudConfigError("labels cv_300 and agl belong to the Petretto-only path; with sources use dos, "
                                   "cv_curve, entropy")
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
    calibrate_std: bool = option(True, "Fit the ensemble std scale on validation (95 per cent of truths within ±2σ) "
                                       "unless std_scale is given.")
    std_scale: float | None = option(
        None, "A given ensemble std scale, used instead of the fit whenever set (a final fit needs one: e.g. pooled "
              "over the validation carves' runs by benchmarks/sweep_thermo.py --std-scale).")
    unseen_element_std: float | None = option(
        None, "A given widening of the std for crystals with elements unseen in training (thermo_unseen_element_std),"
              " used instead of the fit on the validation carve whenever set (a final fit needs one).")
    head_dropout: float = option(0.1, "Dropout before the heads.")
    composition_features: bool = option(
        False, "Heads also read composition descriptors pooled from the SCOPE tokens (cloud_hf.composition).")
    dos_loss_weight: float = option(1.0, "Weight of the DOS loss per grid point (L1, against the C_v and S losses).")
    cumulative_dos_loss_weight: float = option(
        0.0, "Weight of the L1 loss of the cumulative mode count (the Wasserstein-1 distance of the spectra).")
    mass_scaling: bool = option(
        False, "The dos head predicts the DOS on a mass-reduced axis ω·√(m̄/m_ref), stretched per crystal by its "
               "mean atomic mass (needs composition_features).")
    loss_per_crystal: bool = option(
        False, "The C_v and S losses average each crystal's labels first, so a crystal with one label (a JARVIS "
               "metal's C_v at 300 K) weighs as much as one with a curve of 16.")
    source_embedding: bool = option(
        False, "Each member learns one offset of its [CLS] state per label source (data sources); predictions use "
               "the first source (phonondb).")
    cell_features: bool = option(
        False, "Heads also read the cell descriptors (ln volume per atom, density, neighbour distances; "
               "cloud_hf.cell_descriptors), standardised on the training crystals (needs composition_features).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head not in HEADS:
            raise CloudConfigError(f"head must be one of {HEADS}, got {self.head!r}")


def build_model(model_args: ThermoModelArguments, train_examples: list[dict[str, Any]],
                tokenizer: Any = None, **settings: Any) -> PreTrainedModel:
    """The head on the pretrained encoder (the DOS head's prior: the logit of the training crystals' mean DOS)."""
    checkpoint = Path(model_args.checkpoint)
    overrides = dict(model_args.config_overrides or {})
    if model_args.head == "debye":
        if model_args.composition_features or model_args.mass_scaling or model_args.cell_features:
            raise CloudConfigError("composition_features, mass_scaling and cell_features are options of the thermo "
                                   "heads; the debye head (CloudDebyeModel, the paper's) reads the tokens only: set "
                                   "them to false")
        return CloudDebyeModel.from_pretrained(checkpoint, head_dropout=model_args.head_dropout, **overrides)
    model = CloudThermoModel.from_encoder(checkpoint, tokenizer, thermo_head=model_args.head,
                                          thermo_members=model_args.members, thermo_num_einstein=model_args.num_einstein,
                                          head_dropout=model_args.head_dropout,
                                          thermo_composition_features=model_args.composition_features,
                                          thermo_dos_loss_weight=model_args.dos_loss_weight,
                                          thermo_cumulative_dos_loss_weight=model_args.cumulative_dos_loss_weight,
                                          thermo_mass_scaling=model_args.mass_scaling,
                                          thermo_cell_features=model_args.cell_features, **settings, **overrides)
    rows = stacked_features(train_examples, model.config.structure_feature_names)
    for feature in get_features(model.config.structure_feature_names):  # standardised as the training crystals
        model.config.set_feature_statistics(feature.name, feature.statistics(rows[feature.input_name]))
    if model_args.head == "dos":
        model.config.thermo_dos_prior = dos_prior(model, train_examples)
    return model


def model_features(model_args: ThermoModelArguments) -> list[str]:
    """The structure features the model of ``model_args`` reads, so every crystal is encoded with them: the cell
    descriptors with ``cell_features``, then any ``structure_features`` of ``config_overrides``."""
    overrides = dict(model_args.config_overrides or {})
    return CloudConfig(thermo_cell_features=model_args.cell_features,
                       structure_features=overrides.get("structure_features")).structure_feature_names


def dos_prior(model: CloudThermoModel, train_examples: list[dict[str, Any]]) -> list[float]:
    """The DOS head's start: softplus⁻¹ of the training crystals' mean per-atom DOS; an even spread where no DOS
    labels are. With ``thermo_mass_scaling`` the mean is on the mass-reduced axis: each crystal's labels read at u/s₀
    (not divided by s₀, so a crystal weighs in proportion to s₀; the head normalises whatever it predicts to 3N
    modes, and the README's prior figures were measured this way)."""
    dos = np.stack([example["dos_labels"] for example in train_examples])
    if np.isnan(dos).all():
        size = len(model.config.thermo_reduced_frequencies) if model.mass_scaling else dos.shape[1]
        return np.log(np.expm1(np.full(size, EVEN_DOS_PER_ATOM))).tolist()
    if model.mass_scaling:
        rows = np.flatnonzero(~np.isnan(dos).any(axis=1))
        ids, mask = pad_token_ids([train_examples[row]["input_ids"] for row in rows], model.config.pad_token_id)
        with torch.no_grad():
            stretch = model.mass_stretch(model.composition_features(ids, mask)).double().numpy()
        grid = np.r_[0.0, np.asarray(model.config.thermo_frequencies, dtype=np.float64)]
        reduced = np.asarray(model.config.thermo_reduced_frequencies)
        dos = np.stack([np.interp(reduced / s, grid, np.r_[0.0, dos[row]], right=0.0)
                        for s, row in zip(stretch, rows)])
    mean = np.maximum(np.nanmean(dos, axis=0), 1e-5)
    return np.log(np.expm1(mean)).tolist()  # softplus⁻¹


@dataclass
class ThermoRun:
    """What :func:`train_thermo` produced."""

    model: PreTrainedModel
    tokenizer: Any
    validation_metrics: dict[str, float] | None
    test_metrics: dict[str, float] | None
    output_dir: Path


def check_final_fit(data_args: ThermoDataArguments, model_args: ThermoModelArguments,
                    training_args: CloudTrainingArguments) -> None:
    """A final fit trains on the validation crystals: nothing may be chosen or calibrated on them."""
    if not data_args.final_fit:
        return
    if training_args.eval_strategy != "no" or training_args.load_best_model_at_end:
        raise CloudConfigError("final_fit trains on the validation crystals too: set eval_strategy 'no' and "
                               "load_best_model_at_end false (a fixed number of epochs)")
    if model_args.members > 1 and model_args.std_scale is None:
        raise CloudConfigError("final_fit leaves no validation crystals to fit the ensemble std scale on: give "
                               "std_scale")


def thermo_splits(data_args: ThermoDataArguments, table: PhononTable) -> tuple[PhononTable, PhononTable, PhononTable]:
    """Train, validation and test tables of a run: the committed test split, the seeded validation carve, and the
    rest (with ``final_fit``, every non-test crystal; ``max_train_rows`` then caps it)."""
    train_table, validation_table, test_table = phonon_splits(table, data_args.validation_fraction,
                                                              data_args.split_seed)
    if data_args.final_fit:
        held_out = set(test_table.mp_ids)
        train_table = table.select([row for row, mp_id in enumerate(table.mp_ids) if mp_id not in held_out])
    if data_args.max_train_rows is not None:
        train_table = train_table.select(range(min(data_args.max_train_rows, len(train_table))))
    return train_table, validation_table, test_table


def fit_thermo(model: PreTrainedModel, tokenizer: Any, training_args: CloudTrainingArguments,
               temperatures: list[float], members: int, bootstrap: bool, train_examples: list[dict[str, Any]],
               validation_examples: list[dict[str, Any]] | None) -> PreTrainedModel:
    """Train ``model`` on the examples with a :class:`ThermoCollator` (label temperatures in K, bootstrap weights
    per member) on the package's Trainer; returns the trained model."""
    collator = ThermoCollator(tokenizer.pad_token_id, temperatures, model, members, bootstrap, training_args.seed)
    training_args.remove_unused_columns = False
    training_args.prediction_loss_only = True
    training_args.label_names = ["heat_capacity_labels"]
    trainer = build_trainer(model, tokenizer, training_args, train_examples, validation_examples, None,
                            data_collator=collator)
    trainer.train()
    return trainer.model


def crystal_sets(data_args: ThermoDataArguments) -> tuple[PhononCrystals, PhononCrystals, PhononCrystals,
                                                           list[BadPhononRow]]:
    """Train, validation and test crystals of ``data_args.sources`` (test: the committed ids of every source;
    with ``final_fit`` the validation crystals train too) and the rows left out, with reasons."""
    crystals, bad = load_phonon_crystals(
        data_args.phonon_file if "petretto" in data_args.sources else None,
        data_args.phonondb_file if "phonondb" in data_args.sources else None,
        data_args.jarvis_file if "jarvis" in data_args.sources else None,
        data_args.max_imaginary_fraction, WIDE_FREQUENCIES)
    train, validation, test = crystals_splits(crystals, data_args.validation_fraction, data_args.split_seed,
                                              holdout_elements=data_args.holdout_elements)
    if data_args.final_fit:
        train = PhononCrystals.concatenate([train, validation])
    if data_args.max_train_rows is not None:
        train = train.select(range(min(data_args.max_train_rows, len(train))))
    return train, validation, test, bad


def write_bad_phonon_rows(rows: list[BadPhononRow], path: Path) -> None:
    """The rows a run could not use, one per line (CSV: source, file, row, id, reason), written even when empty."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([asdict(row) for row in rows], columns=["source", "file", "row", "id", "reason"]).to_csv(
        path, index=False)


def train_thermo_sources(data_args: ThermoDataArguments, model_args: ThermoModelArguments,
                         training_args: CloudTrainingArguments, evaluate_test: bool = True) -> ThermoRun:
    """:func:`train_thermo` on the phonon crystals of every source in ``data_args.sources``: labels at the
    phonondb temperatures, the DOS on the wide grid (:data:`~cloud_hf.phonons.WIDE_FREQUENCIES`), bad rows (and
    the unstable crystals the rule leaves out) in ``output_dir/bad_rows_phonons.csv``; metrics per source and for
    the metals."""
    if model_args.head != "dos":
        raise CloudConfigError("training on the phonon sources needs the dos head (the DOS labels reach 4000 cm⁻¹)")
    output_dir = Path(training_args.output_dir)
    tokenizer = recipe_tokenizer(model_args)
    check_final_fit(data_args, model_args, training_args)
    train, validation, test, bad = crystal_sets(data_args)
    sources = list(SOURCES) if model_args.source_embedding else None
    cache, features = data_args.cache_dir, model_features(model_args)
    train_examples, bad_train = crystal_examples(train, tokenizer, data_args.labels, sources, cache, features)
    validation_examples, bad_validation = (  # a final fit trains on the validation crystals: already encoded above
        ([], []) if data_args.final_fit
        else crystal_examples(validation, tokenizer, data_args.labels, sources, cache, features))
    test_examples, bad_test = (crystal_examples(test, tokenizer, data_args.labels, sources, cache, features)
                               if evaluate_test else ([], []))
    bad += bad_train + bad_validation + bad_test
    write_bad_phonon_rows(bad, output_dir / "bad_rows_phonons.csv")
    if not train_examples:
        raise CloudDataError("no training examples")
    logger.info("training on %d crystals (%s; %d rows left out, see bad_rows_phonons.csv), validating on %d",
                len(train_examples), ", ".join(data_args.sources), len(bad), len(validation_examples))

    set_seed(training_args.seed)
    elements = sorted(frozenset().union(*train.elements()))
    model = build_model(model_args, train_examples, tokenizer, thermo_frequencies=WIDE_FREQUENCIES,
                        thermo_sources=sources, thermo_training_elements=elements,
                        thermo_loss_per_crystal=model_args.loss_per_crystal)
    model.config.thermo_agl_trained = False
    members = model.config.thermo_members
    model = fit_thermo(model, tokenizer, training_args, train.temperatures.tolist(), members, model_args.bootstrap,
                       train_examples, None if data_args.final_fit else validation_examples)

    ensemble = members > 1
    if ensemble and model_args.std_scale is not None:
        model.config.thermo_std_scale = float(model_args.std_scale)
    if ensemble and model_args.unseen_element_std is not None:
        model.config.thermo_unseen_element_std = float(model_args.unseen_element_std)
    validation_metrics = None
    if not data_args.final_fit:
        fit = ensemble and model_args.calibrate_std and model_args.std_scale is None
        given_scale = float(model.config.thermo_std_scale)
        model.config.thermo_std_scale, model.config.thermo_unseen_element_std = 1.0, 0.0
        prediction = crystal_prediction(model, validation_examples, validation)
        scale = crystal_std_scale([(prediction, validation)]) if fit else given_scale
        widen = (float(model_args.unseen_element_std) if model_args.unseen_element_std is not None
                 else fit_unseen_element_std(prediction, validation, scale) if ensemble and model_args.calibrate_std
                 else 0.0)
        model.config.thermo_std_scale, model.config.thermo_unseen_element_std = scale, widen
        logger.info("ensemble std scale %.4f, unseen-element widening %.4f (fitted on validation)", scale, widen)
        prediction = widened_std(prediction, scale, widen)
        validation_metrics = crystal_split_metrics(prediction, validation)
        unseen = prediction["unseen_element_share"] > 0
        if unseen.any():  # the shifted carve: crystals with an element the training crystals lack
            validation_metrics.update(crystal_metrics({name: value[unseen] for name, value in prediction.items()},
                                                      validation.where(unseen), prefix="shifted_"))
    test_metrics = (crystal_split_metrics(crystal_prediction(model, test_examples, test), test)
                    if evaluate_test else None)
    model_dir = output_dir / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    write_json({"validation": validation_metrics, "test": test_metrics,
                "options": {"data": asdict(data_args), "model": asdict(model_args)},
                "train_examples": len(train_examples), "bad_rows": len(bad),
                "epochs": training_args.num_train_epochs}, output_dir / "metrics.json")
    logger.info("validation %s", json.dumps(validation_metrics))
    if test_metrics is not None:
        logger.info("test %s", json.dumps(test_metrics))
    return ThermoRun(model, tokenizer, validation_metrics, test_metrics, output_dir)


def train_thermo(data_args: ThermoDataArguments, model_args: ThermoModelArguments,
                 training_args: CloudTrainingArguments, evaluate_test: bool = True) -> ThermoRun:
    """Train, calibrate, save (``output_dir/model``) and evaluate (validation; test unless told not to); the scores
    go to ``output_dir/metrics.json``. With ``data_args.sources``: :func:`train_thermo_sources`."""
    if data_args.sources:
        return train_thermo_sources(data_args, model_args, training_args, evaluate_test)
    output_dir = Path(training_args.output_dir)
    tokenizer = recipe_tokenizer(model_args)
    check_final_fit(data_args, model_args, training_args)
    train_table, validation_table, test_table = thermo_splits(data_args, load_phonon_table(data_args.phonon_file))
    temperatures = list(data_args.label_temperatures)
    phonon_labels = [source for source in data_args.labels if source != "agl"]
    features = model_features(model_args)
    train_examples = (phonon_examples(train_table, tokenizer, phonon_labels, temperatures, features) if phonon_labels
                      else [])
    validation_examples = phonon_examples(validation_table, tokenizer, phonon_labels or ["cv_curve"], temperatures,
                                          features)
    if "agl" in data_args.labels:
        train_examples += agl_examples(data_args.agl_file, tokenizer, len(temperatures),
                                       len(train_table.frequencies) - 1, data_args.agl_max_rows, features)
    if not train_examples:
        raise CloudDataError("no training examples")
    logger.info("training on %d examples (%s), validating on %d crystals%s", len(train_examples),
                ", ".join(data_args.labels), len(validation_examples),
                " (trained on too: final fit)" if data_args.final_fit else "")

    set_seed(training_args.seed)  # new head weights: the same in every run (torch's own start seed is random)
    model = build_model(model_args, train_examples, tokenizer)
    if model_args.head != "debye":
        model.config.thermo_agl_trained = "agl" in data_args.labels
    members = model.config.thermo_members
    model = fit_thermo(model, tokenizer, training_args, temperatures, members, model_args.bootstrap, train_examples,
                       None if data_args.final_fit else validation_examples)

    ensemble = model_args.head != "debye" and members > 1
    if ensemble and model_args.std_scale is not None:
        model.config.thermo_std_scale = float(model_args.std_scale)
        logger.info("ensemble std scale given: %.4f", model.config.thermo_std_scale)
    validation_metrics = None  # a final fit trained on the validation crystals: their scores would be training ones
    if not data_args.final_fit:
        fit = ensemble and model_args.calibrate_std and model_args.std_scale is None
        if fit:
            model.config.thermo_std_scale = 1.0
        _, prediction = evaluate_on(model, tokenizer, validation_table, (
            [example["input_ids"] for example in validation_examples],
            stacked_features(validation_examples, model.config.structure_feature_names)))
        if fit:
            model.config.thermo_std_scale = fit_std_scale(prediction, validation_table)
            prediction = scaled_std(prediction, model.config.thermo_std_scale)
            logger.info("ensemble std scale fitted on validation: %.4f", model.config.thermo_std_scale)
        validation_metrics = thermo_metrics(prediction, validation_table)
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
    "check_final_fit",
    "dos_prior",
    "evaluate_on",
    "fit_thermo",
    "thermo_splits",
    "train_thermo",
    "train_thermo_sources",
]
