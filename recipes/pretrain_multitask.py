"""Pre-train a CLOUD encoder on the masked-LM loss and every labelled property at once (multi-task).

    python recipes/pretrain_multitask.py recipes/configs/pretrain_multitask_smoke.yaml [--option value ...]
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/pretrain_multitask.py \\
        recipes/configs/pretrain_multitask_small.yaml

``tasks`` names each property and the tables (and columns) that hold it; ``train`` adds unlabelled corpus tables;
``exclude`` lists tables whose crystals are removed everywhere (each task's test split, benchmark crystals). Every
table is SCOPE-encoded once, rows are joined by string (a crystal keeps NaN for the properties it lacks), a validation
part is carved from the distinct strings, and each property is standardised on the training rows. The model
(:class:`~cloud_hf.modeling_cloud.CloudForMultiTaskPretraining`) learns the masked-LM loss plus
``multitask_loss_weight`` × the masked property loss, drawing rows task-balanced (``balance_exponent``).

Outputs under ``output_dir``: the backbone (a ``CloudForMaskedLM`` with its tokenizer: any recipe's ``--checkpoint``),
the whole model in ``multitask/`` (it predicts every property), ``pretrain_metrics.json`` (each property's validation
MAE beside the MAE of predicting its training mean, wall time, label counts) and the bad rows of the tables.
Resumable with ``--resume_from_checkpoint true``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from cloud_hf.data import ERROR_COLUMN, write_bad_rows
from cloud_hf.errors import CloudDataError
from cloud_hf.modeling_cloud import CloudForMultiTaskPretraining
from cloud_hf.training import (
    CloudTrainingArguments,
    ReproducibleMLMCollator,
    TaskSpec,
    build_trainer,
    carve_validation,
    load_or_init_model,
    max_positions,
    model_inputs,
    prepare_table,
    recipe_main,
    recipe_tokenizer,
    resume_checkpoint,
    scope_encoder_for,
    start_run,
    write_json,
)
from cloud_hf.training.arguments import MultiTaskDataArguments, MultiTaskModelArguments
from cloud_hf.training.multitask import (
    PROPERTY_LABELS,
    balanced_sample_weights,
    parse_tasks,
    property_statistics,
    read_multitask_corpus,
)

logger = logging.getLogger("cloud_hf.recipes")

ARGUMENTS = (MultiTaskDataArguments, MultiTaskModelArguments, CloudTrainingArguments)
PROGRAM = "python recipes/pretrain_multitask.py"


def label_matrix(rows: datasets.Dataset, names: list[str]) -> np.ndarray:
    """``(rows, tasks)`` labels of ``rows`` (NaN where missing)."""
    return np.column_stack([np.asarray(rows[name], dtype=float) for name in names])


def run(data_args: MultiTaskDataArguments, model_args: MultiTaskModelArguments,
        training_args: CloudTrainingArguments) -> None:
    """Pre-train with these options."""
    state = start_run(training_args)
    tokenizer = recipe_tokenizer(model_args)
    tasks = parse_tasks(data_args.tasks)
    names = [task.name for task in tasks]
    output_dir = Path(training_args.output_dir)
    options = {"num_proc": data_args.num_proc, "cache_dir": data_args.cache_dir}
    with state.main_process_first():
        corpus = read_multitask_corpus(tasks, data_args.train, data_args.exclude, scope_encoder_for(tokenizer),
                                       options, max_rows=data_args.max_rows)
        frame = corpus.rows.assign(**{ERROR_COLUMN: pd.array([None] * len(corpus.rows), dtype="string")})
        prepared = prepare_table(datasets.Dataset.from_pandas(frame, preserve_index=False), "corpus", tokenizer,
                                 max_positions(model_args), output_dir, data_args)
    if state.is_main_process:
        write_bad_rows(corpus.bad_rows, output_dir / "bad_rows_tables.csv")
    train, validation = carve_validation(prepared.rows, data_args.validation_fraction, training_args.seed)
    train_labels, validation_labels = label_matrix(train, names), label_matrix(validation, names)
    for index, name in enumerate(names):
        if np.isnan(train_labels[:, index]).all():
            raise CloudDataError(f"task {name}: no labelled crystal in the training part")
    mean, std = property_statistics(pd.DataFrame(train_labels, columns=names), names)
    task = TaskSpec(label_columns=names, label_name=PROPERTY_LABELS, prediction_key="predictions")
    columns = ["input_ids", "attention_mask", PROPERTY_LABELS]
    train_rows = model_inputs(train, task).select_columns(columns)
    validation_rows = model_inputs(validation, task).select_columns(columns)
    updates = {"target_names": names, "target_mean": mean, "target_std": std,
               "target_units": [t.label_units for t in tasks], "multitask_loss_weight": model_args.multitask_loss_weight}
    if model_args.element_property_embeddings is not None:
        updates["element_property_embeddings"] = model_args.element_property_embeddings
    model = load_or_init_model(CloudForMultiTaskPretraining, model_args, tokenizer, training_args.seed, **updates)
    if not model.cloud.embeddings.has_element_tables:
        model.cloud.embeddings.set_element_tables(tokenizer)
    weights = balanced_sample_weights(train_labels, data_args.balance_exponent)
    logger.info("model: %.2fM parameters; %d train / %d validation strings; labels per task (train) %s",
                model.num_parameters() / 1e6, len(train_rows), len(validation_rows),
                dict(zip(names, (~np.isnan(train_labels)).sum(axis=0).tolist())))
    collator = ReproducibleMLMCollator(tokenizer, mlm_probability=model_args.mlm_probability,
                                       mask_seed=training_args.seed)
    trainer = build_trainer(model, tokenizer, training_args, train_rows, validation_rows, task,
                            data_collator=collator, sample_weights=weights)
    started = time.perf_counter()
    outcome = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args.resume_from_checkpoint))
    wall_seconds = time.perf_counter() - started
    evaluation = trainer.evaluate()
    if trainer.is_world_process_zero():
        trainer.save_model(str(output_dir / "multitask"))
        backbone = trainer.model.backbone()
        backbone.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        baseline = {f"mae_{name}": float(np.nanmean(np.abs(validation_labels[:, i] - mean[i])))
                    if not np.isnan(validation_labels[:, i]).all() else None for i, name in enumerate(names)}
        write_json({"train": outcome.metrics, "eval": evaluation, "eval_train_mean_baseline": baseline,
                    "units": {t.name: t.label_units for t in tasks}, "labels_per_task": corpus.labels_per_task,
                    "n_read": corpus.n_read, "n_excluded": corpus.n_excluded, "n_train": len(train_rows),
                    "n_validation": len(validation_rows), "n_skipped": len(prepared.bad_rows) + len(corpus.bad_rows),
                    "wall_seconds": wall_seconds, "n_parameters": backbone.num_parameters(),
                    "world_size": state.num_processes}, output_dir / "pretrain_metrics.json")
        logger.info("multi-task pre-training: %.0f s wall, eval loss %.4f; validation MAE %s (train-mean baseline %s)",
                    wall_seconds, evaluation.get("eval_loss", float("nan")),
                    {n: round(evaluation.get(f"eval_mae_{n}", float("nan")), 4) for n in names},
                    {n: None if v is None else round(v, 4) for n, v in baseline.items()})


def main(argv: list[str] | None = None) -> None:
    """Run the recipe from the command line; a configuration or data error exits with status 2 and one line."""
    recipe_main(ARGUMENTS, run, PROGRAM, __doc__, argv)


if __name__ == "__main__":
    main()
