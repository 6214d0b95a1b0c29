"""Train CLOUD-DEBYE on heat capacities at 300 K (the paper's CLOUD-DEBYE data) and test it.

    python recipes/debye_cv.py recipes/configs/debye_cv_smoke.yaml [--option value ...]

Data: ``../shared/data/reference/cloud_cv_train_and_val.csv`` (reference SCOPE strings in ``cloud``,
C_v at 300 K in J/(mol-cell·K) in ``cv``, atoms per cell in ``n_atoms``), tested on ``cloud_cv_test.csv``;
the validation split is carved out of the training file. The strings are reference SCOPE, so the
tokenizer is the reference one (``tokenizer: reference:../shared/data/reference/tokenizer``) or a
converted reference checkpoint's. ``head: debye`` trains ``CloudDebyeModel`` (θ_D → Debye C_v);
``head: regression`` trains a plain ``CloudForRegression`` on C_v with the same encoder and budget
(the baseline of ``benchmarks/bench_debye_vs_regression.py``). Outputs under ``output_dir``: model,
test metrics (MAE, MAE/MAD), predictions, parity plot and, for the Debye head, C_v(T) and U(T) curves of a
few test crystals (``thermo_curves_test.png``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cloud_hf.debye import median_debye_temperature
from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.training import (
    SupervisedTrainingArguments,
    TaskSpec,
    init_supervised_model,
    load_or_init_model,
    max_positions,
    plot_debye_curves,
    recipe_main,
    recipe_splits,
    recipe_tokenizer,
    start_run,
    train_and_evaluate,
)
from cloud_hf.training.arguments import DebyeCvDataArguments, DebyeCvModelArguments

logger = logging.getLogger("cloud_hf.recipes")

ARGUMENTS = (DebyeCvDataArguments, DebyeCvModelArguments, SupervisedTrainingArguments)
PROGRAM = "python recipes/debye_cv.py"
MEASUREMENT_TEMPERATURE = 300.0  # K, the temperature of the C_v labels
HEAT_CAPACITY_UNITS = "J/(mol·K)"


def run(data_args: DebyeCvDataArguments, model_args: DebyeCvModelArguments,
        training_args: SupervisedTrainingArguments) -> None:
    """Train and test with these options."""
    start_run(training_args)
    label, atoms_column = data_args.label_column, data_args.n_atoms_column
    if model_args.head == "debye":
        task = TaskSpec(label_columns=[label], label_name="heat_capacity_labels", prediction_key="heat_capacity",
                        units=HEAT_CAPACITY_UNITS, input_columns={"n_atoms": atoms_column},
                        constant_inputs={"temperature": MEASUREMENT_TEMPERATURE})
    else:
        task = TaskSpec(label_columns=[label], units=HEAT_CAPACITY_UNITS)
    tokenizer = recipe_tokenizer(model_args)
    train, validation, test = recipe_splits(data_args, task, tokenizer, max_positions(model_args),
                                            training_args.output_dir, training_args.seed)
    if model_args.head == "debye":
        theta_scale = model_args.theta_scale_kelvin
        if theta_scale is None:
            theta_scale = median_debye_temperature(train[label], train[atoms_column], MEASUREMENT_TEMPERATURE)
            logger.info("debye_theta_scale: %.1f K, the median θ_D implied by the training C_v", theta_scale)
        model = load_or_init_model(CloudDebyeModel, model_args, tokenizer, training_args.seed,
                                   debye_theta_scale=theta_scale)
    else:
        model = init_supervised_model(model_args, tokenizer, task, train, training_args.seed)
    result = train_and_evaluate(model, tokenizer, training_args, task, train, validation, test,
                                training_args.output_dir, quantity="C_v(300 K)")
    if model_args.head == "debye" and result is not None and result.trainer.is_world_process_zero():
        subset = test.select(range(min(4, len(test))))
        names = [f"{row['id']}: {row['scope'].split(' | ')[-1]}" for row in subset]
        path = plot_debye_curves(result, subset, task, Path(training_args.output_dir) / "thermo_curves_test.png",
                                 names, [int(n) for n in subset[atoms_column]])
        logger.info("C_v(T), U(T) curves of %d test crystals: %s", len(names), path)


def main(argv: list[str] | None = None) -> None:
    """Run the recipe from the command line; a configuration or data error exits with status 2 and one line."""
    recipe_main(ARGUMENTS, run, PROGRAM, __doc__, argv)


if __name__ == "__main__":
    main()
