"""Pre-train a CLOUD encoder by masked language modelling on SCOPE strings.

    python recipes/pretrain_mlm.py recipes/configs/pretrain_mlm_smoke.yaml [--key value ...]
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/pretrain_mlm.py \\
        recipes/configs/pretrain_mlm.yaml

``data.train`` lists files, folders or glob patterns of crystals (any format ``cloud_hf.data.read_table``
reads) or of ready SCOPE strings. Structures are SCOPE-encoded with the tokenizer's settings, duplicate
strings are dropped (``data.deduplicate``), and a validation part (``data.validation_fraction``) is
held out from the distinct strings, so no validation string is seen in training. The model (a new
``CloudForMaskedLM`` with ``model.config`` sizes, or ``model.checkpoint`` to continue) and its tokenizer
are saved to ``output_dir`` (safetensors), with ``pretrain_metrics.json`` (throughput, wall time, eval loss).
"""

from __future__ import annotations

import glob
import logging
import time
from pathlib import Path

import datasets

from cloud_hf.data import (
    STRUCTURE_COLUMN,
    add_scope_column,
    drop_duplicates,
    read_table,
    split_bad_rows,
)
from cloud_hf.modeling_cloud import CloudForMaskedLM
from cloud_hf.training import (
    ReproducibleMLMCollator,
    build_trainer,
    carve_validation,
    limit_rows,
    load_config,
    load_or_init_model,
    max_positions,
    prepare_table,
    recipe_tokenizer,
    resume_argument,
    scope_encoder_for,
    start_run,
    training_arguments,
    write_json,
)

logger = logging.getLogger("cloud_hf.recipes")

#: Columns every corpus table is reduced to before the tables are concatenated.
CORPUS_COLUMNS = ("id", "row", "source", "error")


def corpus_paths(patterns: list[str] | str) -> list[str]:
    """Expand ``data.train`` entries (files, folders, glob patterns) into a sorted, duplicate-free list."""
    patterns = [patterns] if isinstance(patterns, str) else patterns
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise SystemExit(f"data.train pattern {pattern!r} matches no file")
        paths.extend(m for m in matches if m not in paths)
    return paths


def read_corpus(config: dict, tokenizer) -> datasets.Dataset:
    """All crystals of ``data.train`` as one table of SCOPE strings (bad rows reported, duplicates dropped)."""
    data_config = config["data"]
    options = {"num_proc": data_config.get("num_proc"), "cache_dir": data_config.get("cache_dir")}
    tables = []
    for path in corpus_paths(data_config["train"]):
        table = limit_rows(read_table(path), data_config.get("max_rows"))
        if STRUCTURE_COLUMN in table.column_names and data_config.get("deduplicate", True):
            table = drop_duplicates(table, STRUCTURE_COLUMN)  # identical files within one source
        table = add_scope_column(table, scope_encoder_for(tokenizer), **options)
        tables.append(table.select_columns([*CORPUS_COLUMNS, "scope"]))
        logger.info("%s: %d rows", path, len(table))
    corpus = datasets.concatenate_datasets(tables)
    good, bad = split_bad_rows(corpus)
    distinct = drop_duplicates(good) if data_config.get("deduplicate", True) else good
    logger.info("corpus: %d rows read, %d not encodable, %d distinct SCOPE strings", len(corpus), len(bad),
                len(distinct))
    return datasets.concatenate_datasets([distinct, bad])


def main() -> None:
    """Run the recipe from the command line."""
    config = load_config()
    state = start_run(config)
    tokenizer = recipe_tokenizer(config)
    output_dir = Path(config["output_dir"])
    with state.main_process_first():
        corpus = read_corpus(config, tokenizer)
        prepared = prepare_table(corpus, "corpus", tokenizer, max_positions(config), output_dir,
                                 num_proc=config["data"].get("num_proc"), cache_dir=config["data"].get("cache_dir"))
    train, validation = carve_validation(prepared.rows, float(config["data"].get("validation_fraction", 0.02)),
                                         int(config.get("seed", 42)))
    train = train.select_columns(["input_ids", "attention_mask"])
    validation = validation.select_columns(["input_ids", "attention_mask"])
    model = load_or_init_model(CloudForMaskedLM, config, tokenizer)
    logger.info("model: %.2fM parameters; %d train / %d validation strings", model.num_parameters() / 1e6,
                len(train), len(validation))
    collator = ReproducibleMLMCollator(tokenizer, mlm_probability=float(config["model"].get("mlm_probability", 0.15)),
                                       mask_seed=int(config.get("seed", 42)))
    arguments = training_arguments(config)
    trainer = build_trainer(model, tokenizer, arguments, train, validation, None, data_collator=collator,
                            early_stopping_patience=config.get("early_stopping_patience"))
    started = time.perf_counter()
    outcome = trainer.train(resume_from_checkpoint=resume_argument(config))
    wall_seconds = time.perf_counter() - started
    evaluation = trainer.evaluate()
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        write_json({"train": outcome.metrics, "eval": evaluation, "wall_seconds": wall_seconds,
                    "n_parameters": model.num_parameters(), "n_train": len(train), "n_validation": len(validation),
                    "n_skipped": len(prepared.bad_rows), "world_size": state.num_processes},
                   output_dir / "pretrain_metrics.json")
        logger.info("pre-training: %.1f samples/s, %.0f s wall, eval loss %.4f",
                    outcome.metrics.get("train_samples_per_second", float("nan")), wall_seconds,
                    evaluation.get("eval_loss", float("nan")))


if __name__ == "__main__":
    main()
