"""Model choice for the thermodynamics heads, on validation only: variants × train/validation carves.

    OMP_NUM_THREADS=1 python benchmarks/sweep_thermo.py --variant base --variant composition [--split-seeds 0 1 2]
    python benchmarks/sweep_thermo.py --table            # the table of every finished run under --output
    python benchmarks/sweep_thermo.py --std-scale ens5_mixed_80ep  # the ensemble std scale pooled over carves 0-2

Each variant is a list of recipe options on top of ``recipes/configs/thermo_dos.yaml``; every run trains on one
seeded carve of the 887 non-test phonon crystals and is scored on that carve's validation crystals (89). The test
split is never loaded or scored here (``train_thermo(..., evaluate_test=False)``): this is where choices are made,
and ``benchmarks/bench_thermo.py`` reports the chosen ones on test. Runs already finished are reused.
``--std-scale`` pools a variant's carve runs' validation |error|/σ ratios into the one std scale a final fit on
all non-test crystals (recipe option ``final_fit``, which leaves no validation to fit it on) is given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cloud_hf.training import CloudTrainingArguments, parse_recipe_arguments
from cloud_hf.training.thermo import (
    EVAL_TEMPERATURES,
    ThermoDataArguments,
    ThermoModelArguments,
    train_thermo,
)

BASE_CONFIG = "recipes/configs/thermo_dos.yaml"
PREVIOUS = {"composition_features": "false", "dos_loss_weight": "1", "cumulative_dos_loss_weight": "0",
            "num_train_epochs": "40", "members": "1"}
"""The settings before this sweep; every variant states its changes to them, so a variant means the same run
whatever ``BASE_CONFIG`` (which carries the settings chosen here) says now."""
COMPOSITION = {"composition_features": "true"}
CUMULATIVE = {"dos_loss_weight": "0", "cumulative_dos_loss_weight": "1"}  # the README's runs of it spelt this
# as the then option `dos_loss: cumulative` (the cumulative term in place of the per-point one): the same loss
MIXED = {"dos_loss_weight": "0.1", "cumulative_dos_loss_weight": "1"}
ENSEMBLE = {"members": "5", "bootstrap": "false"}
EPOCHS_80 = {"num_train_epochs": "80"}
MASS_SCALING = {"mass_scaling": "true"}
DROPOUT_02 = {"head_dropout": "0.2", "config_overrides": "{hidden_dropout_prob: 0.2}"}
AGL = {"labels": ["dos", "cv_curve", "entropy", "agl"]}
CELL = {"cell_features": "true"}


def options(*changes: dict[str, str | list[str]]) -> list[str]:
    """The command-line options of a variant: :data:`PREVIOUS` updated by ``changes`` in turn."""
    argv: list[str] = []
    for key, value in {key: value for settings in (PREVIOUS, *changes) for key, value in settings.items()}.items():
        argv += [f"--{key}", *(value if isinstance(value, list) else [value])]
    return argv


VARIANTS: dict[str, list[str]] = {
    "base": options(),
    "composition": options(COMPOSITION),
    "composition_80ep": options(COMPOSITION, EPOCHS_80),
    "composition_agl": options(COMPOSITION, AGL),
    "composition_lr1e-3": options(COMPOSITION, {"learning_rate": "1e-3"}),
    "composition_wd0.1": options(COMPOSITION, {"weight_decay": "0.1"}),
    "composition_drop0.2": options(COMPOSITION, {"head_dropout": "0.2"}),
    "composition_cv_only": options(COMPOSITION, {"labels": ["cv_curve", "entropy"]}),
    "composition_no_entropy": options(COMPOSITION, {"labels": ["dos", "cv_curve"]}),
    "composition_dos0.1": options(COMPOSITION, {"dos_loss_weight": "0.1"}),
    "composition_cumulative": options(COMPOSITION, CUMULATIVE),
    "cumulative_80ep": options(COMPOSITION, CUMULATIVE, EPOCHS_80),
    "cumulative_lld0.7": options(COMPOSITION, CUMULATIVE, {"layer_lr_decay": "0.7"}),
    "cumulative_agl": options(COMPOSITION, CUMULATIVE, AGL),
    "mixed": options(COMPOSITION, MIXED),
    "mixed_agl": options(COMPOSITION, MIXED, AGL),
    "ens5_bins": options(COMPOSITION, ENSEMBLE),
    "ens5_bins_bootstrap": options(COMPOSITION, ENSEMBLE, {"bootstrap": "true"}),
    "ens5_dos0.1": options(COMPOSITION, ENSEMBLE, {"dos_loss_weight": "0.1"}),
    "ens5_cumulative": options(COMPOSITION, ENSEMBLE, CUMULATIVE),
    "ens5_cumulative_80ep": options(COMPOSITION, ENSEMBLE, CUMULATIVE, EPOCHS_80),
    "ens5_mixed": options(COMPOSITION, ENSEMBLE, MIXED),
    "ens5_mixed_80ep": options(COMPOSITION, ENSEMBLE, MIXED, EPOCHS_80),
    "ens5_mixed_80ep_mass": options(COMPOSITION, ENSEMBLE, MIXED, EPOCHS_80, MASS_SCALING),
    "ens5_mixed_80ep_dropout0.2": options(COMPOSITION, ENSEMBLE, MIXED, EPOCHS_80, DROPOUT_02),
    "ens5_mixed_80ep_cell": options(COMPOSITION, ENSEMBLE, MIXED, EPOCHS_80, CELL),
    "ens5_mixed_80ep_lld0.8": options(COMPOSITION, ENSEMBLE, MIXED, EPOCHS_80, {"layer_lr_decay": "0.8"}),
    "ens5_mixed_80ep_lr1e-3": options(COMPOSITION, ENSEMBLE, MIXED, EPOCHS_80, {"learning_rate": "1e-3"}),
    "ens5_mixed_80ep_cell_lr1e-3": options(COMPOSITION, ENSEMBLE, MIXED, EPOCHS_80, CELL, {"learning_rate": "1e-3"}),
    "ens5_mixed_120ep": options(COMPOSITION, ENSEMBLE, MIXED, {"num_train_epochs": "120"}),
    "mixed_80ep": options(COMPOSITION, MIXED, EPOCHS_80),
    "mixed_80ep_mass": options(COMPOSITION, MIXED, EPOCHS_80, MASS_SCALING),
}
METRICS = [f"cv_mae_{int(t)}K" for t in EVAL_TEMPERATURES] + ["s_mae_300K"]


def run_variant(name: str, split_seed: int, output: Path) -> dict[str, float]:
    """Validation metrics of ``name`` on carve ``split_seed`` (trained unless a finished run is there)."""
    folder = output / f"{name}_split{split_seed}"
    if (folder / "metrics.json").is_file():
        return json.loads((folder / "metrics.json").read_text())["validation"]
    options = (ThermoDataArguments, ThermoModelArguments, CloudTrainingArguments)
    data, model, training = parse_recipe_arguments(options, [
        BASE_CONFIG, "--output_dir", str(folder), "--split_seed", str(split_seed), *VARIANTS[name]])
    return train_thermo(data, model, training, evaluate_test=False).validation_metrics


def carves_std_scale(name: str, output: Path, split_seeds: list[int]) -> float:
    """The ensemble std scale pooled over the finished carve runs of ``name`` on the carves ``split_seeds`` (each
    on its own validation)."""
    from transformers import AutoTokenizer

    from cloud_hf.modeling_cloud_thermo import CloudThermoModel
    from cloud_hf.phonons import load_phonon_table, phonon_splits
    from cloud_hf.training.thermo_evaluation import evaluate_on, pooled_std_scale

    table = load_phonon_table(ThermoDataArguments().phonon_file)
    predictions, alone, crystals = [], [], set()
    for path in sorted(output.glob(f"{name}_split*/metrics.json")):
        data = json.loads(path.read_text())["options"]["data"]
        if data["split_seed"] not in split_seeds:
            continue
        validation = phonon_splits(table, data["validation_fraction"], data["split_seed"])[1]
        model = CloudThermoModel.from_pretrained(path.parent / "model")
        alone.append(model.config.thermo_std_scale)
        model.config.thermo_std_scale = 1.0  # the members' raw spread
        predictions.append((evaluate_on(model, AutoTokenizer.from_pretrained(path.parent / "model"), validation)[1],
                            validation))
        crystals.update(validation.mp_ids)
    if not predictions:
        raise SystemExit(f"no finished runs of {name} under {output}")
    scale = pooled_std_scale(predictions)
    print(f"{name}: std scale pooled over {len(predictions)} carves ({sum(len(t) for _, t in predictions)} "
          f"crystal-carve pairs, {len(crystals)} distinct crystals): {scale:.4f} (each alone: "
          f"{', '.join(f'{value:.3f}' for value in alone)})")
    return scale


def print_table(output: Path) -> None:
    """Mean ± standard error over carves of every variant's validation metrics."""
    rows: dict[str, list[dict[str, float]]] = {}
    for path in sorted(output.glob("*_split*/metrics.json")):
        rows.setdefault(path.parent.name.rsplit("_split", 1)[0], []).append(
            json.loads(path.read_text())["validation"])
    print("| variant | carves | " + " | ".join(METRICS) + " |")
    print("|---" * (len(METRICS) + 2) + "|")
    for name, runs in rows.items():
        cells = []
        for metric in METRICS:
            values = np.array([run[metric] for run in runs])
            error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
            cells.append(f"{values.mean():.3f} ± {error:.3f}")
        print(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), default=[])
    parser.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", default="outputs/sweep_thermo")
    parser.add_argument("--table", action="store_true", help="only print the table of finished runs")
    parser.add_argument("--std-scale", metavar="VARIANT", help="only print VARIANT's std scale pooled over its carves")
    arguments = parser.parse_args()
    output = Path(arguments.output)
    if arguments.std_scale:
        carves_std_scale(arguments.std_scale, output, arguments.split_seeds)
        return
    if not arguments.table:
        for name in arguments.variant:
            for seed in arguments.split_seeds:
                metrics = run_variant(name, seed, output)
                print(f"{name} carve {seed}: " + ", ".join(f"{m} {metrics[m]:.3f}" for m in METRICS), flush=True)
    print_table(output)


if __name__ == "__main__":
    main()
