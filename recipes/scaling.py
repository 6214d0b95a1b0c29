"""The paper's scaling claim at the scale we have: masked-LM validation loss against model size and data size.

    python recipes/scaling.py recipes/configs/scaling_small.yaml            # CPU grid, ~25 min on one core
    accelerate launch recipes/scaling.py recipes/configs/scaling_small.yaml --sizes ...   # unchanged on GPUs

The corpus (``train``, as ``pretrain_mlm.py`` reads it: SCOPE-encoded, de-duplicated) is read once and one
validation part is held out (``validation_fraction``), the same for every run. Then every model size of ``sizes``
(``HIDDENxLAYERS``, e.g. ``64x2``; heads of 32 dimensions, feed-forward 4 × hidden) is trained on every training
fraction of ``data_fractions`` (the first part of one fixed shuffle, so each fraction holds the smaller ones),
with the training options of section ``training``, and scored on the fixed validation part.

A power law ``L = a · X^(−α)`` is fitted (least squares in log–log) to the validation loss against the
non-embedding parameters at the largest data fraction, and against the training strings at the largest model.
``output_dir`` gets ``scaling.json`` (every run, both fits) and ``scaling.png`` (both log–log plots with the fits).
"""

# ruff: noqa: RUF009  (option() returns a dataclasses.Field, as in cloud_hf.training.arguments)
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cloud_hf.errors import CloudConfigError
from cloud_hf.modeling_cloud import CloudForMaskedLM
from cloud_hf.training import (
    CloudTrainingArguments,
    ReproducibleMLMCollator,
    build_trainer,
    load_or_init_model,
    recipe_main,
    recipe_tokenizer,
    start_run,
    write_json,
)
from cloud_hf.training.arguments import CorpusDataArguments, PretrainModelArguments, option

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes are scripts: pretrain_mlm.py sits beside this one
from pretrain_mlm import corpus_splits

logger = logging.getLogger("cloud_hf.recipes")
PROGRAM = "python recipes/scaling.py"
HEAD_DIMENSION = 32


@dataclass
class ScalingArguments(PretrainModelArguments):
    """The grid (section ``model``): model sizes × training fractions."""

    sizes: list[str] = option(["32x1", "64x2", "128x3", "256x4"], "Model sizes HIDDENxLAYERS (≥ 4 for a fit).")
    data_fractions: list[float] = option([0.1, 0.3, 1.0], "Fractions of the training strings (≥ 3 for a fit).")

    def __post_init__(self) -> None:
        super().__post_init__()
        for size in self.sizes:
            parse_size(size)
        if any(not 0 < fraction <= 1 for fraction in self.data_fractions):
            raise CloudConfigError(f"data_fractions must lie in (0, 1], got {self.data_fractions}")


ARGUMENTS = (CorpusDataArguments, ScalingArguments, CloudTrainingArguments)


def parse_size(size: str) -> dict[str, int]:
    """``"128x4"`` → the encoder sizes of a CloudConfig (heads of :data:`HEAD_DIMENSION`, feed-forward 4 × hidden)."""
    try:
        hidden, layers = (int(part) for part in str(size).lower().split("x"))
    except ValueError:
        raise CloudConfigError(f"model size {size!r} is not HIDDENxLAYERS (e.g. 128x4)") from None
    if hidden < HEAD_DIMENSION or hidden % HEAD_DIMENSION or layers < 1:
        raise CloudConfigError(f"model size {size!r}: hidden must be a multiple of {HEAD_DIMENSION}, layers ≥ 1")
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": hidden // HEAD_DIMENSION,
            "intermediate_size": 4 * hidden}


def power_law(x: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """Least-squares fit of ``loss = a · x^(−alpha)`` in log–log: ``{"a", "alpha", "r2"}``."""
    log_x, log_loss = np.log(np.asarray(x, float)), np.log(np.asarray(loss, float))
    slope, intercept = np.polyfit(log_x, log_loss, 1)
    residual = log_loss - (slope * log_x + intercept)
    total = float(((log_loss - log_loss.mean()) ** 2).sum())
    return {"a": float(np.exp(intercept)), "alpha": float(-slope),
            "r2": float(1 - (residual ** 2).sum() / total) if total > 0 else float("nan")}


def non_embedding_parameters(model: CloudForMaskedLM) -> int:
    """Parameters outside the embedding tables (as scaling laws count them)."""
    return sum(parameter.numel() for name, parameter in model.named_parameters() if "embeddings" not in name)


def plot(runs: list[dict[str, Any]], fits: dict[str, dict[str, float]], path: Path) -> None:
    """Validation loss against parameters (largest fraction) and against strings (largest model), log–log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, fixed, label in ((axes[0], "parameters", "fraction", "non-embedding parameters"),
                                    (axes[1], "n_train", "size", "training strings")):
        largest = max(run[fixed] for run in runs) if fixed == "fraction" else runs[-1]["size"]
        chosen = sorted((run for run in runs if run[fixed] == largest), key=lambda run: run[key])
        x = np.array([run[key] for run in chosen], float)
        axis.loglog(x, [run["eval_loss"] for run in chosen], "o", label="validation loss")
        for run in runs:  # every other run, faint
            axis.loglog(run[key], run["eval_loss"], ".", color="0.75", zorder=0)
        fit = fits[key]
        grid = np.geomspace(x.min(), x.max(), 50)
        axis.loglog(grid, fit["a"] * grid ** -fit["alpha"], "-",
                    label=f"fit: α = {fit['alpha']:.3f} (R² {fit['r2']:.2f})")
        axis.set_xlabel(label)
        axis.set_ylabel("masked-LM validation loss")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run(data_args: CorpusDataArguments, model_args: ScalingArguments, training_args: CloudTrainingArguments) -> None:
    """Train the grid and fit both power laws."""
    state = start_run(training_args)
    tokenizer = recipe_tokenizer(model_args)
    output_dir = Path(training_args.output_dir)
    _, train, validation = corpus_splits(data_args, model_args, training_args, tokenizer, state)
    train = train.shuffle(seed=training_args.seed)
    runs: list[dict[str, Any]] = []
    base = dict(model_args.config_overrides or {})
    for size in model_args.sizes:
        for fraction in sorted(model_args.data_fractions):
            part = train.select(range(max(1, round(fraction * len(train)))))
            model_args.config_overrides = {**base, **parse_size(size)}
            model = load_or_init_model(CloudForMaskedLM, model_args, tokenizer, training_args.seed)
            folder = output_dir / f"{size}_{fraction:g}"
            arguments = replace(training_args, output_dir=str(folder))
            collator = ReproducibleMLMCollator(tokenizer, mlm_probability=model_args.mlm_probability,
                                               mask_seed=training_args.seed)
            trainer = build_trainer(model, tokenizer, arguments, part, validation, None, data_collator=collator)
            started = time.perf_counter()
            trainer.train()
            evaluation = trainer.evaluate()
            runs.append({"size": size, "fraction": fraction, "n_train": len(part),
                         "parameters": non_embedding_parameters(model), "all_parameters": model.num_parameters(),
                         "eval_loss": float(evaluation["eval_loss"]), "seconds": time.perf_counter() - started})
            logger.info("scaling %s on %d strings: %d non-embedding parameters, validation loss %.4f", size,
                        len(part), runs[-1]["parameters"], runs[-1]["eval_loss"])
    largest_fraction = max(model_args.data_fractions)
    by_size = [run for run in runs if run["fraction"] == largest_fraction]
    by_data = [run for run in runs if run["size"] == model_args.sizes[-1]]
    fits = {"parameters": power_law([r["parameters"] for r in by_size], [r["eval_loss"] for r in by_size]),
            "n_train": power_law([r["n_train"] for r in by_data], [r["eval_loss"] for r in by_data])}
    if state.is_main_process:
        write_json({"runs": runs, "fits": fits, "n_validation": len(validation)}, output_dir / "scaling.json")
        plot(runs, fits, output_dir / "scaling.png")
        logger.info("fits: loss ∝ N^-%.3f (parameters, R² %.2f), ∝ D^-%.3f (strings, R² %.2f); %s",
                    fits["parameters"]["alpha"], fits["parameters"]["r2"], fits["n_train"]["alpha"],
                    fits["n_train"]["r2"], json.dumps(fits))


def main(argv: list[str] | None = None) -> None:
    """Run the recipe from the command line; a configuration or data error exits with status 2 and one line."""
    recipe_main(ARGUMENTS, run, PROGRAM, __doc__, argv)


if __name__ == "__main__":
    main()
