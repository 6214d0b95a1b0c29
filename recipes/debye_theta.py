"""Train CLOUD-DEBYE directly on Debye temperatures θ_D (AFLOW AGL) from crystal structures.

    python recipes/debye_theta.py recipes/configs/debye_theta_smoke.yaml [--key value ...]

Data: ``../shared/data/structures/aflow/debye_temperature/{train,val,test}.csv.gz`` (CIF in ``cif``, θ_D
in K in ``debye_temperature``), encoded as canonical SCOPE with the tokenizer's settings; the official
validation split is used, so validation never overlaps training. Outputs under ``output_dir``: model,
test metrics (MAE in K, with the MAE of always predicting the training mean for comparison), predictions,
parity plot, and C_v(T), U(T) curves (per mole of atoms) of a few test crystals.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.training import (
    TaskSpec,
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


def main() -> None:
    """Run the recipe from the command line."""
    config = load_config()
    start_run(config)
    task = TaskSpec(label_columns=[config["data"].get("label_column", "debye_temperature")],
                    label_name="theta_labels", prediction_key="debye_temperature", units="K")
    tokenizer = recipe_tokenizer(config)
    train, validation, test = recipe_splits(config, task, tokenizer, max_positions(config))
    model = load_or_init_model(CloudDebyeModel, config, tokenizer,
                               debye_theta_scale=float(config["model"].get("debye_theta_scale", 300.0)))
    result = train_and_evaluate(model, tokenizer, config, task, train, validation, test, config["output_dir"],
                                quantity="θ_D")
    if result is not None and result.trainer.is_world_process_zero():
        logger.info("θ_D test MAE %.1f K; mean predictor %.1f K", result.metrics["mae"],
                    result.metrics["mean_predictor_mae"])
        subset = test.select(range(min(4, len(test))))
        path = plot_debye_curves(result, subset, task, Path(config["output_dir"]) / "thermo_curves_test.png",
                                 [scope for scope in subset["scope"]], [1] * len(subset))
        logger.info("C_v(T), U(T) curves (per mole of atoms) of %d test crystals: %s", len(subset), path)


if __name__ == "__main__":
    main()
