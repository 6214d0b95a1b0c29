"""Scores of the thermodynamics heads: per-atom C_v and S errors, ±1σ/±2σ coverage, ensemble std calibration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from cloud_hf.phonons import PhononTable
from cloud_hf.training.thermo_data import encode_crystals, pad_token_ids

EVAL_TEMPERATURES = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0)
"""Temperatures (K) of the per-atom C_v metrics (and S at 300 K)."""


@torch.no_grad()
def predict_thermo(model: PreTrainedModel, input_ids: Sequence[list[int]], n_atoms: Sequence[float],
                   temperatures: Sequence[float], pad_token_id: int, batch_size: int = 128,
                   cell_features: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """C_v and S per mole of cells (and their std where the model has one), ``(n, n_T)``, in evaluation mode;
    ``cell_features`` `(n, 4)` go to models whose config asks for them (``thermo_cell_features``)."""
    cells_wanted = bool(getattr(model.config, "thermo_cell_features", False))
    model.eval()
    collected: dict[str, list[np.ndarray]] = {}
    temperature = torch.tensor(list(temperatures), dtype=torch.float32)
    for start in range(0, len(input_ids), batch_size):
        chunk = input_ids[start: start + batch_size]
        ids, mask = pad_token_ids(chunk, pad_token_id)
        atoms = torch.tensor(list(n_atoms[start: start + batch_size]), dtype=torch.float32)
        extra = {}
        if cells_wanted:
            extra["cell_features"] = torch.as_tensor(cell_features[start: start + batch_size]).to(model.device)
        output = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                       temperature=temperature.expand(len(chunk), -1).to(model.device), n_atoms=atoms.to(model.device),
                       **extra)
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
                encoded: tuple[Sequence[list[int]], np.ndarray] | None = None,
                ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """:func:`thermo_metrics` of ``model`` on ``table`` (crystals encoded unless ``encoded`` = (token ids, cell
    descriptors), as :func:`~cloud_hf.training.thermo_data.encode_crystals` gives them, are given)."""
    ids, cells = encoded if encoded is not None else encode_crystals(tokenizer, table.cifs, table.mp_ids)
    prediction = predict_thermo(model, ids, table.n_atoms, [*list(EVAL_TEMPERATURES), 300.0], tokenizer.pad_token_id,
                                cell_features=cells)
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


__all__ = ["EVAL_TEMPERATURES", "evaluate_on", "fit_std_scale", "pooled_std_scale", "predict_thermo", "scaled_std",
           "thermo_metrics"]
