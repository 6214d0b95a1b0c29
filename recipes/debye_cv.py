"""Train CLOUD-DEBYE on heat capacities at 300 K (the paper's CLOUD-DEBYE data) and test it.

    python recipes/debye_cv.py recipes/configs/debye_cv_smoke.yaml [--key value ...]

Data: ``../shared/data/reference/cloud_cv_train_and_val.csv`` (reference SCOPE strings in ``cloud``,
C_v at 300 K in J/(mol-cell·K) in ``cv``, atoms per cell in ``n_atoms``), tested on ``cloud_cv_test.csv``;
the validation split is carved out of the training file. The strings are reference SCOPE, so the
tokenizer is the reference one (``model.tokenizer: reference:../shared/data/reference/tokenizer``) or a
converted reference checkpoint's. ``model.head: debye`` trains ``CloudDebyeModel`` (θ_D → Debye C_v);
``model.head: regression`` trains a plain ``CloudForRegression`` on C_v with the same encoder and budget
(the baseline of ``benchmarks/bench_debye_vs_regression.py``). Outputs under ``output_dir``: model,
test metrics (MAE, MAE/MAD), predictions, parity plot and, for the Debye head, C_v(T) and U(T) curves of a
few test crystals (``thermo_curves_test.png``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.training import (
    TaskSpec,
    init_supervised_model,
    load_config,
    load_or_init_model,
    max_positions,
    plot_debye_curves,
    recipe_splits,
    recipe_tokenizer,
    start_run,
    train_and_evaluate,
)

logger = logging.getLogger("cloud_hf.recipes")

MEASUREMENT_TEMPERATURE = 300.0  # K, the temperature of the C_v labels
HEAT_CAPACITY_UNITS = "J/(mol·K)"


def median_debye_temperature(heat_capacity: list[float], n_atoms: list[float], temperature: float) -> float:
    """Median θ_D (K) implied by C_v labels: each C_v (J/(mol·K), N atoms per cell, at ``temperature`` K) is
    inverted through the Debye function by bisection on θ_D in [1, 5000] K (C_v falls as θ_D rises).

    The Debye head's ``debye_theta_scale`` set to this value starts the model at the data's typical θ_D, as
    target standardisation does for a plain regression head.
    """
    from cloud_hf.debye import heat_capacity as debye_heat_capacity

    labels = torch.tensor(heat_capacity, dtype=torch.float64)
    atoms = torch.tensor(n_atoms, dtype=torch.float64)
    low, high = torch.full_like(labels, 1.0), torch.full_like(labels, 5000.0)
    for _ in range(60):
        middle = (low + high) / 2
        too_low = debye_heat_capacity(middle, torch.tensor(temperature, dtype=torch.float64), atoms) > labels
        low, high = torch.where(too_low, middle, low), torch.where(too_low, high, middle)
    return float(((low + high) / 2).median())


def main() -> None:
    """Run the recipe from the command line."""
    config = load_config()
    start_run(config)
    head = config["model"].get("head", "debye")
    label = config["data"].get("label_column", "cv")
    atoms_column = config["data"].get("n_atoms_column", "n_atoms")
    if head == "debye":
        task = TaskSpec(label_columns=[label], label_name="heat_capacity_labels", prediction_key="heat_capacity",
                        units=HEAT_CAPACITY_UNITS, input_columns={"n_atoms": atoms_column},
                        constant_inputs={"temperature": MEASUREMENT_TEMPERATURE})
    elif head == "regression":
        task = TaskSpec(label_columns=[label], units=HEAT_CAPACITY_UNITS)
    else:
        raise SystemExit(f"model.head must be 'debye' or 'regression', got {head!r}")
    tokenizer = recipe_tokenizer(config)
    train, validation, test = recipe_splits(config, task, tokenizer, max_positions(config))
    if head == "debye":
        theta_scale = config["model"].get("debye_theta_scale", "auto")
        if theta_scale == "auto":
            theta_scale = median_debye_temperature(train[label], train[atoms_column], MEASUREMENT_TEMPERATURE)
            logger.info("debye_theta_scale: %.1f K, the median θ_D implied by the training C_v", theta_scale)
        model = load_or_init_model(CloudDebyeModel, config, tokenizer, debye_theta_scale=float(theta_scale))
    else:
        model = init_supervised_model(config, tokenizer, task, train)
    result = train_and_evaluate(model, tokenizer, config, task, train, validation, test, config["output_dir"],
                                quantity="C_v(300 K)")
    if head == "debye" and result is not None and result.trainer.is_world_process_zero():
        subset = test.select(range(min(4, len(test))))
        names = [f"{row['id']}: {row['scope'].split(' | ')[-1]}" for row in subset]
        path = plot_debye_curves(result, subset, task, Path(config["output_dir"]) / "thermo_curves_test.png",
                                 names, [int(n) for n in subset[atoms_column]])
        logger.info("C_v(T), U(T) curves of %d test crystals: %s", len(names), path)


if __name__ == "__main__":
    main()
