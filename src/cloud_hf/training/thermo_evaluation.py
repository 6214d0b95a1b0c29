"""Scores of the thermodynamics heads: per-atom C_v and S errors, ±1σ/±2σ coverage, ensemble std calibration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from cloud_hf.errors import CloudDataError
from cloud_hf.features import input_names
from cloud_hf.phonons import PhononCrystals, PhononTable
from cloud_hf.training.thermo_data import encode_crystals, pad_token_ids, stacked_features
from cloud_hf.units import per_atom

EVAL_TEMPERATURES = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0)
"""Temperatures (K) of the per-atom C_v metrics (and S at 300 K)."""


@torch.no_grad()
def predict_thermo(model: PreTrainedModel, input_ids: Sequence[list[int]], n_atoms: Sequence[float],
                   temperatures: Sequence[float], pad_token_id: int, batch_size: int = 128,
                   features: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """C_v and S per mole of cells (and their std where the model has one), ``(n, n_T)``, in evaluation mode;
    ``features``: structure features by model input name, `(n, size)` each, of which those the model's config
    declares are passed."""
    wanted = input_names(model.config.structure_feature_names)
    missing = sorted(set(wanted) - set(features or {}))
    if missing:
        raise CloudDataError(f"this model reads the structure features {missing}: pass them in features")
    model.eval()
    collected: dict[str, list[np.ndarray]] = {}
    temperature = torch.tensor(list(temperatures), dtype=torch.float32)
    for start in range(0, len(input_ids), batch_size):
        chunk = input_ids[start: start + batch_size]
        ids, mask = pad_token_ids(chunk, pad_token_id)
        atoms = torch.tensor(list(n_atoms[start: start + batch_size]), dtype=torch.float32)
        extra = {name: torch.as_tensor(features[name][start: start + batch_size]).to(model.device) for name in wanted}
        output = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                       temperature=temperature.expand(len(chunk), -1).to(model.device), n_atoms=atoms.to(model.device),
                       **extra)
        for name in ("heat_capacity", "heat_capacity_std", "entropy", "entropy_std", "dos", "unseen_element_share"):
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
    error = per_atom(np.abs(prediction["heat_capacity"] - heat), table.n_atoms)
    metrics = {f"cv_mae_{int(t)}K": float(error[:, i].mean()) for i, t in enumerate(temperatures)}
    metrics["s_mae_300K"] = float(per_atom(np.abs(prediction["entropy"][:, -1] - entropy[:, -1]), table.n_atoms).mean())
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
                encoded: tuple[Sequence[list[int]], Mapping[str, np.ndarray]] | None = None,
                ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """:func:`thermo_metrics` of ``model`` on ``table`` (crystals encoded with the structure features the model
    reads unless ``encoded`` = (token ids, structure features), as
    :func:`~cloud_hf.training.thermo_data.encode_crystals` gives them, are given)."""
    ids, features = encoded if encoded is not None else encode_crystals(tokenizer, table.cifs, table.mp_ids,
                                                                        model.config.structure_feature_names)
    prediction = predict_thermo(model, ids, table.n_atoms, [*list(EVAL_TEMPERATURES), 300.0], tokenizer.pad_token_id,
                                features=features)
    return thermo_metrics(prediction, table), prediction


def fit_std_scale(prediction: dict[str, np.ndarray], table: PhononTable, target_coverage: float = 0.95) -> float:
    """The factor on the ensemble std that puts ``target_coverage`` of the C_v truths within ±2σ (pooled over the
    metric temperatures), from an :func:`evaluate_on` prediction made with ``thermo_std_scale`` 1; the members' raw
    spread is usually too narrow."""
    return pooled_std_scale([(prediction, table)], target_coverage)


def pooled_std_scale(predictions: Sequence[tuple[dict[str, np.ndarray], PhononTable]],
                     target_coverage: float = 0.95) -> float:
    """:func:`fit_std_scale` over several (prediction, table) pairs, their |error|/σ ratios pooled: e.g. the three
    validation carves' runs, for the one scale a final fit on all non-test crystals needs (it has no validation
    crystals left to fit one on)."""
    ratios = []
    for prediction, table in predictions:
        heat, _ = table.thermo_labels([*list(EVAL_TEMPERATURES), 300.0])
        ratio = np.abs(prediction["heat_capacity"] - heat) / np.maximum(prediction["heat_capacity_std"], 1e-12)
        ratios.append(ratio[:, :-1].ravel())
    return float(np.quantile(np.concatenate(ratios), target_coverage) / 2.0)


def scaled_std(prediction: dict[str, np.ndarray], scale: float) -> dict[str, np.ndarray]:
    """``prediction`` with every ``*_std`` times ``scale`` (what the model gives with ``thermo_std_scale = scale``)."""
    return {name: value * scale if name.endswith("_std") else value for name, value in prediction.items()}


def crystal_prediction(model: PreTrainedModel, examples: Sequence[dict[str, Any]], crystals: PhononCrystals,
                       temperatures: Sequence[float] = EVAL_TEMPERATURES) -> dict[str, np.ndarray]:
    """Per-atom C_v and S (J/(mol·K)) with their std, ``(n, n_T)``, of the encoded ``examples`` (from
    :func:`~cloud_hf.training.thermo_data.crystal_examples`, each with its ``row`` in ``crystals``) at
    ``temperatures``; rows whose crystal could not be encoded stay NaN. The default source is used (what a user
    gets)."""
    n = len(crystals)
    prediction = {name: np.full((n, len(temperatures)), np.nan) for name in
                  ("heat_capacity", "heat_capacity_std", "entropy", "entropy_std")}
    if not examples:
        return prediction
    rows = np.asarray([example["row"] for example in examples])
    raw = predict_thermo(model, [example["input_ids"] for example in examples], crystals.n_atoms[rows].tolist(),
                         temperatures, model.config.pad_token_id,
                         features=stacked_features(examples, model.config.structure_feature_names))
    for name in list(prediction):
        if name in raw:
            prediction[name][rows] = per_atom(raw[name], crystals.n_atoms[rows])
    prediction["unseen_element_share"] = np.zeros(n)
    if "unseen_element_share" in raw:
        prediction["unseen_element_share"][rows] = raw["unseen_element_share"]
    return prediction


def crystal_metrics(prediction: dict[str, np.ndarray], crystals: PhononCrystals,
                    temperatures: Sequence[float] = EVAL_TEMPERATURES, prefix: str = "") -> dict[str, float]:
    """Per-atom MAE of C_v at each of ``temperatures`` where labels exist and of S(300 K), J/(mol·K), and the
    share of truths within ±1σ/±2σ where a std is given; NaN labels or predictions are skipped; ``n`` counts."""
    columns = [crystals.label_column(t) for t in temperatures]
    truth_heat, truth_entropy = crystals.heat_capacity[:, columns], crystals.entropy[:, columns]
    metrics: dict[str, float] = {f"{prefix}n": float(len(crystals))}
    std = prediction.get("heat_capacity_std")
    for i, t in enumerate(temperatures):
        error = np.abs(prediction["heat_capacity"][:, i] - truth_heat[:, i])
        present = np.isfinite(error)
        if present.any():
            metrics[f"{prefix}cv_mae_{int(t)}K"] = float(error[present].mean())
            if std is not None and np.nanmax(std) > 0:
                ratio = error[present] / np.maximum(std[present, i], 1e-12)
                metrics[f"{prefix}cv_within_1sigma_{int(t)}K"] = float((ratio <= 1).mean())
                metrics[f"{prefix}cv_within_2sigma_{int(t)}K"] = float((ratio <= 2).mean())
    if 300.0 in list(temperatures):
        i = list(temperatures).index(300.0)
        error = np.abs(prediction["entropy"][:, i] - truth_entropy[:, i])
        if np.isfinite(error).any():
            metrics[f"{prefix}s_mae_300K"] = float(np.nanmean(error))
    return metrics


def crystal_split_metrics(prediction: dict[str, np.ndarray], crystals: PhononCrystals,
                          temperatures: Sequence[float] = EVAL_TEMPERATURES) -> dict[str, float]:
    """:func:`crystal_metrics` over all crystals and per part: each source's non-metals, and the metals."""
    metrics = crystal_metrics(prediction, crystals, temperatures)
    parts = {f"{source}_": crystals.source_mask(source) & ~crystals.all_metal for source in
             sorted(set(crystals.sources))}
    parts["metals_"] = crystals.all_metal.copy()
    for prefix, mask in parts.items():
        if mask.any():
            rows = np.flatnonzero(mask)
            metrics.update(crystal_metrics({name: value[rows] for name, value in prediction.items()},
                                           crystals.select(rows.tolist()), temperatures, prefix))
    return metrics


def crystal_std_scale(predictions: Sequence[tuple[dict[str, np.ndarray], PhononCrystals]],
                      temperatures: Sequence[float] = EVAL_TEMPERATURES, target_coverage: float = 0.95) -> float:
    """The ensemble std factor that puts ``target_coverage`` of the C_v truths within ±2σ, pooled over
    ``temperatures`` and over every (prediction made with std scale 1, crystals) pair; crystals with an element
    unseen in training are left to :func:`fit_unseen_element_std`."""
    ratios = []
    for prediction, crystals in predictions:
        truth = crystals.heat_capacity[:, [crystals.label_column(t) for t in temperatures]]
        ratio = np.abs(prediction["heat_capacity"] - truth) / np.maximum(prediction["heat_capacity_std"], 1e-12)
        ratio = ratio[prediction.get("unseen_element_share", np.zeros(len(ratio))) == 0]
        ratios.append(ratio[np.isfinite(ratio)])
    return float(np.quantile(np.concatenate(ratios), target_coverage) / 2.0)


def fit_unseen_element_std(prediction: dict[str, np.ndarray], crystals: PhononCrystals, std_scale: float,
                           temperatures: Sequence[float] = EVAL_TEMPERATURES, target_coverage: float = 0.95) -> float:
    """The widening κ of ``thermo_unseen_element_std`` that puts ``target_coverage`` of the C_v truths of crystals
    with unseen elements (share u > 0) within ±2σ, σ² = (std_scale·σ_members)² + (κ·u·|C_v|)², from a prediction
    made with std scale 1 and κ = 0; 0 when no crystal has an unseen element."""
    share = prediction["unseen_element_share"]
    rows = np.flatnonzero(share > 0)
    if not len(rows):
        return 0.0
    truth = crystals.heat_capacity[rows][:, [crystals.label_column(t) for t in temperatures]]
    value, spread = prediction["heat_capacity"][rows], std_scale * prediction["heat_capacity_std"][rows]
    needed = np.sqrt(np.clip((np.abs(value - truth) / 2.0) ** 2 - spread**2, 0.0, None)) / np.maximum(
        share[rows, None] * np.abs(value), 1e-12)
    return float(np.quantile(needed[np.isfinite(needed)], target_coverage))


def widened_std(prediction: dict[str, np.ndarray], std_scale: float, unseen_element_std: float,
                ) -> dict[str, np.ndarray]:
    """``prediction`` (made with std scale 1, κ = 0) as the model gives it with ``thermo_std_scale`` and
    ``thermo_unseen_element_std`` set."""
    result = dict(prediction)
    share = prediction.get("unseen_element_share", np.zeros(len(prediction["heat_capacity"])))
    for name in ("heat_capacity", "entropy"):
        result[f"{name}_std"] = np.sqrt((std_scale * prediction[f"{name}_std"]) ** 2
                                        + (unseen_element_std * share[:, None] * np.abs(prediction[name])) ** 2)
    return result


__all__ = [
    "EVAL_TEMPERATURES",
    "crystal_metrics",
    "crystal_prediction",
    "crystal_split_metrics",
    "crystal_std_scale",
    "evaluate_on",
    "fit_std_scale",
    "fit_unseen_element_std",
    "pooled_std_scale",
    "predict_thermo",
    "scaled_std",
    "thermo_metrics",
    "widened_std",
]
