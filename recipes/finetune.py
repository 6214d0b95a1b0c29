"""Fine-tune a CLOUD model for regression or classification on a table of crystals.

    python recipes/finetune.py recipes/configs/finetune_shear_smoke.yaml [--option value ...]
    accelerate launch recipes/finetune.py recipes/configs/finetune_shear.yaml

The model starts from ``checkpoint`` (any cloud-hf checkpoint, e.g. ``outputs/pretrain_small`` or a
converted reference one) or from scratch (``config_overrides``). Regression targets are standardised
with the training-set mean and standard deviation, saved in the model config (``target_mean``,
``target_std``), so the saved model predicts in physical units. Outputs under ``output_dir``: the best
model (``model/``), test metrics (MAE, RMSE, R², or accuracy and ROC-AUC), predictions, a parity plot and
the bad rows of each split.
"""

from __future__ import annotations

from cloud_hf.training import (
    SupervisedTrainingArguments,
    TaskSpec,
    head_descriptors,
    init_supervised_model,
    max_positions,
    recipe_main,
    recipe_splits,
    recipe_tokenizer,
    start_run,
    train_and_evaluate,
)
from cloud_hf.training.arguments import FinetuneDataArguments, SupervisedModelArguments

ARGUMENTS = (FinetuneDataArguments, SupervisedModelArguments, SupervisedTrainingArguments)
PROGRAM = "python recipes/finetune.py"


def run(data_args: FinetuneDataArguments, model_args: SupervisedModelArguments,
        training_args: SupervisedTrainingArguments) -> None:
    """Fine-tune and test with these options."""
    start_run(training_args)
    task = TaskSpec(label_columns=list(data_args.label_columns), problem=data_args.problem, units=data_args.units,
                    prediction_key="predictions" if data_args.problem == "regression" else "logits")
    tokenizer = recipe_tokenizer(model_args)
    features = head_descriptors(model_args)[1]
    train, validation, test = recipe_splits(data_args, task, tokenizer, max_positions(model_args),
                                            training_args.output_dir, training_args.seed, features)
    model = init_supervised_model(model_args, tokenizer, task, train, training_args.seed, data_args.num_classes)
    train_and_evaluate(model, tokenizer, training_args, task, train, validation, test, training_args.output_dir,
                       quantity=", ".join(task.label_columns))


def main(argv: list[str] | None = None) -> None:
    """Run the recipe from the command line; a configuration or data error exits with status 2 and one line."""
    recipe_main(ARGUMENTS, run, PROGRAM, __doc__, argv)


if __name__ == "__main__":
    main()
