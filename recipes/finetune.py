"""Fine-tune a CLOUD model for regression or classification on a table of crystals.

    python recipes/finetune.py recipes/configs/finetune_shear_smoke.yaml [--key value ...]
    accelerate launch recipes/finetune.py recipes/configs/finetune_shear.yaml

The model starts from ``model.checkpoint`` (any cloud-hf checkpoint, e.g. ``outputs/pretrain_small``
or a converted reference one) or from scratch (``model.config``). Regression targets are standardised
with the training-set mean and standard deviation, saved in the model config (``target_mean``,
``target_std``), so the saved model predicts in physical units. Outputs under ``output_dir``: the best
model (``model/``), test metrics (MAE, RMSE, R², or accuracy and ROC-AUC), predictions, a parity plot and
the bad rows of each split.
"""

from __future__ import annotations

from cloud_hf.training import (
    TaskSpec,
    init_supervised_model,
    load_config,
    max_positions,
    recipe_splits,
    recipe_tokenizer,
    start_run,
    train_and_evaluate,
)


def main() -> None:
    """Run the recipe from the command line."""
    config = load_config()
    start_run(config)
    data_config = config["data"]
    problem = data_config.get("problem", "regression")
    task = TaskSpec(label_columns=list(data_config["label_columns"]), problem=problem,
                    prediction_key="predictions" if problem == "regression" else "logits",
                    units=data_config.get("units", ""))
    tokenizer = recipe_tokenizer(config)
    train, validation, test = recipe_splits(config, task, tokenizer, max_positions(config))
    model = init_supervised_model(config, tokenizer, task, train)
    train_and_evaluate(model, tokenizer, config, task, train, validation, test, config["output_dir"],
                       quantity=", ".join(task.label_columns))


if __name__ == "__main__":
    main()
