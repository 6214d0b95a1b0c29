"""Pre-train a CLOUD encoder by masked language modelling on SCOPE strings.

    python recipes/pretrain_mlm.py recipes/configs/pretrain_mlm_smoke.yaml [--option value ...]
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/pretrain_mlm.py \\
        recipes/configs/pretrain_mlm.yaml

``train`` lists files, folders or glob patterns of crystals (any format ``cloud_hf.data.read_table``
reads) or of ready SCOPE strings. Structures are SCOPE-encoded with the tokenizer's settings, duplicate
strings are dropped (``deduplicate``), and a validation part (``validation_fraction``) is
held out from the distinct strings, so no validation string is seen in training. The model (a new
``CloudForMaskedLM`` with ``config_overrides`` sizes, or ``checkpoint`` to continue) and its tokenizer
are saved to ``output_dir`` (safetensors), with ``pretrain_metrics.json`` (throughput, wall time, eval loss).

The corpus streams: each file is read in chunks into a memory-mapped Arrow file, de-duplicated by 16-byte digests
and encoded by ``Dataset.map`` (``num_proc``), so it need not fit in memory (``benchmarks/bench_corpus_memory.py``).
"""

from __future__ import annotations

import glob
import logging
import time
from pathlib import Path
from typing import Any

import datasets

from cloud_hf.data import (
    STRUCTURE_COLUMN,
    add_scope_column,
    drop_duplicates,
    read_table,
    split_bad_rows,
)
from cloud_hf.errors import CloudDataError
from cloud_hf.modeling_cloud import CloudForMaskedLM
from cloud_hf.training import (
    CloudTrainingArguments,
    PreparedSplit,
    ReproducibleMLMCollator,
    build_trainer,
    carve_validation,
    limit_rows,
    load_or_init_model,
    max_positions,
    prepare_table,
    recipe_main,
    recipe_tokenizer,
    resume_checkpoint,
    scope_encoder_for,
    start_run,
    write_json,
)
from cloud_hf.training.arguments import CorpusDataArguments, PretrainModelArguments

logger = logging.getLogger("cloud_hf.recipes")

#: Columns every corpus table is reduced to before the tables are concatenated.
CORPUS_COLUMNS = ("id", "row", "source", "error")
ARGUMENTS = (CorpusDataArguments, PretrainModelArguments, CloudTrainingArguments)
PROGRAM = "python recipes/pretrain_mlm.py"


def corpus_paths(patterns: list[str]) -> list[str]:
    """Expand ``train`` entries (files, folders, glob patterns) into a sorted, duplicate-free list."""
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise CloudDataError(f"train pattern {pattern!r} matches no file")
        paths.extend(m for m in matches if m not in paths)
    return paths


def read_corpus(data_args: CorpusDataArguments, tokenizer) -> datasets.Dataset:
    """All crystals of ``train`` as one table of SCOPE strings (bad rows reported, duplicates dropped)."""
    options = {"num_proc": data_args.num_proc, "cache_dir": data_args.cache_dir}
    tables = []
    for path in corpus_paths(data_args.train):
        table = limit_rows(read_table(path), data_args.max_rows)
        if STRUCTURE_COLUMN in table.column_names and data_args.deduplicate:
            table = drop_duplicates(table, STRUCTURE_COLUMN)  # identical files within one source
        table = add_scope_column(table, scope_encoder_for(tokenizer), **options)
        tables.append(table.select_columns([*CORPUS_COLUMNS, "scope"]))
        logger.info("%s: %d rows", path, len(table))
    corpus = datasets.concatenate_datasets(tables)
    good, bad = split_bad_rows(corpus)
    distinct = drop_duplicates(good) if data_args.deduplicate else good
    logger.info("corpus: %d rows read, %d not encodable, %d distinct SCOPE strings", len(corpus), len(bad),
                len(distinct))
    return datasets.concatenate_datasets([distinct, bad])


def corpus_splits(data_args: CorpusDataArguments, model_args: PretrainModelArguments,
                  training_args: CloudTrainingArguments, tokenizer: Any, state: Any,
                  ) -> tuple[PreparedSplit, datasets.Dataset, datasets.Dataset]:
    """The corpus read, encoded and tokenized once (the main process first; bad rows written to ``output_dir``),
    and its ``(train, validation)`` token columns: validation carved from the distinct strings."""
    with state.main_process_first():
        corpus = read_corpus(data_args, tokenizer)
        prepared = prepare_table(corpus, "corpus", tokenizer, max_positions(model_args), training_args.output_dir,
                                 data_args)
    train, validation = carve_validation(prepared.rows, data_args.validation_fraction, training_args.seed)
    columns = ["input_ids", "attention_mask"]
    return prepared, train.select_columns(columns), validation.select_columns(columns)


def run(data_args: CorpusDataArguments, model_args: PretrainModelArguments,
        training_args: CloudTrainingArguments) -> None:
    """Pre-train with these options."""
    state = start_run(training_args)
    tokenizer = recipe_tokenizer(model_args)
    output_dir = Path(training_args.output_dir)
    prepared, train, validation = corpus_splits(data_args, model_args, training_args, tokenizer, state)
    model = load_or_init_model(CloudForMaskedLM, model_args, tokenizer, training_args.seed)
    logger.info("model: %.2fM parameters; %d train / %d validation strings", model.num_parameters() / 1e6,
                len(train), len(validation))
    collator = ReproducibleMLMCollator(tokenizer, mlm_probability=model_args.mlm_probability,
                                       mask_seed=training_args.seed)
    trainer = build_trainer(model, tokenizer, training_args, train, validation, None, data_collator=collator)
    started = time.perf_counter()
    outcome = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args.resume_from_checkpoint))
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


def main(argv: list[str] | None = None) -> None:
    """Run the recipe from the command line; a configuration or data error exits with status 2 and one line."""
    recipe_main(ARGUMENTS, run, PROGRAM, __doc__, argv)


if __name__ == "__main__":
    main()
