"""Train CLOUD-DEBYE directly on Debye temperatures θ_D (AFLOW AGL) from crystal structures.

    python recipes/debye_theta.py recipes/configs/debye_theta_smoke.yaml [--option value ...]

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
    SupervisedTrainingArguments,
    TaskSpec,
    load_or_init_model,
    max_positions,
    plot_debye_curves,
    recipe_main,
    recipe_splits,
    recipe_tokenizer,
    start_run,
    train_and_evaluate,
)
from cloud_hf.training.arguments import DebyeThetaDataArguments, DebyeThetaModelArguments

logger = logging.getLogger("cloud_hf.recipes")

ARGUMENTS = (DebyeThetaDataArguments, DebyeThetaModelArguments, SupervisedTrainingArguments)
PROGRAM = "python recipes/debye_theta.py"


def run(data_args: DebyeThetaDataArguments, model_args: DebyeThetaModelArguments,
        training_args: SupervisedTrainingArguments) -> None:
    """Train and test with these options."""
    start_run(training_args)
    task = TaskSpec(label_columns=[data_args.label_column], label_name="theta_labels",
                    prediction_key="debye_temperature", units="K")
    tokenizer = recipe_tokenizer(model_args)
    train, validation, test = recipe_splits(data_args, task, tokenizer, max_positions(model_args),
                                            training_args.output_dir, training_args.seed)
    model = load_or_init_model(CloudDebyeModel, model_args, tokenizer, training_args.seed,
                               debye_theta_scale=model_args.debye_theta_scale)
    result = train_and_evaluate(model, tokenizer, training_args, task, train, validation, test,
                                training_args.output_dir, quantity="θ_D")
    if result is not None and result.trainer.is_world_process_zero():
        logger.info("θ_D test MAE %.1f K; mean predictor %.1f K", result.metrics["mae"],
                    result.metrics["mean_predictor_mae"])
        subset = test.select(range(min(4, len(test))))
        path = plot_debye_curves(result, subset, task, Path(training_args.output_dir) / "thermo_curves_test.png",
                                 list(subset["scope"]), [1] * len(subset))
        logger.info("C_v(T), U(T) curves (per mole of atoms) of %d test crystals: %s", len(subset), path)


def main(argv: list[str] | None = None) -> None:
    """Run the recipe from the command line; a configuration or data error exits with status 2 and one line."""
    recipe_main(ARGUMENTS, run, PROGRAM, __doc__, argv)


if __name__ == "__main__":
    main()
