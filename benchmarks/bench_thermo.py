"""Per-atom heat-capacity accuracy of the thermodynamics heads on the held-out phonon test split.

    OMP_NUM_THREADS=1 python benchmarks/bench_thermo.py [--epochs 80] [--output outputs/bench_thermo] [--quick]

Rows (every model is trained on the same training crystals, chosen on the same validation carve, and scored on
the committed test split ``recipes/splits/phonons_test_ids.txt``; truths are DOS-derived harmonic C_v(T), S(T)):

* constant θ: one Debye θ for every crystal, the median of the θ that reproduce the training C_v(300 K);
* GB baseline: scikit-learn gradient boosting on composition descriptors (mean/min/max atomic mass,
  electronegativity mean and spread, mean atomic radius) plus atoms per cell and space-group number, no
  coordinates; one regressor per temperature on per-atom C_v (and one on S(300 K));
* debye (C_v 300 K only): ``CloudDebyeModel`` on cloud_cv's 300 K labels joined to the structures (the paper's setting);
* debye (DOS curves), debye-einstein, dos: the heads trained on DOS-derived C_v(T) (and S(T), the DOS);
* previous bundled: the CloudDebyeModel on AFLOW AGL θ_D (``src/cloud_hf/bundled/debye_agl``), as shipped before;
* bundled ensemble: the model in ``src/cloud_hf/bundled`` (trained by ``recipes/configs/thermo_bundled.yaml``).

It prints the table of per-atom MAE (J/(mol·K)) at 50, 100, 200, 300, 500, 800 K and of S(300 K), the bundled
ensemble's calibration (fraction of truths within ±1σ and ±2σ), writes ``bench_thermo.json`` and the plot
``bench_thermo.png`` (error against temperature) under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from sklearn.ensemble import GradientBoostingRegressor
from transformers import AutoTokenizer

from cloud_hf.debye import entropy as debye_entropy
from cloud_hf.debye import heat_capacity as debye_heat_capacity
from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.modeling_cloud_thermo import CloudThermoModel
from cloud_hf.phonons import PhononTable, load_phonon_table, phonon_splits
from cloud_hf.pipeline_cloud import BUNDLED_MODEL_DIR
from cloud_hf.thermodynamics import equivalent_debye_temperature
from cloud_hf.training import CloudTrainingArguments, parse_recipe_arguments
from cloud_hf.training.thermo import (
    EVAL_TEMPERATURES,
    PRETRAINED_ENCODER_DIR,
    ThermoDataArguments,
    ThermoModelArguments,
    evaluate_on,
    train_thermo,
)

METRIC_TEMPERATURES = [*EVAL_TEMPERATURES, 300.0]  # the last column is S(300 K)


def composition_descriptors(table: PhononTable) -> np.ndarray:
    """The GB baseline's features: mean/min/max atomic mass, electronegativity mean and spread (max − min), mean
    atomic radius (all composition-weighted, from pymatgen), atoms per cell and space-group number (symprec 0.1 Å)."""
    rows = []
    for cif in table.cifs:
        structure = Structure.from_str(cif, fmt="cif")
        composition = structure.composition.fractional_composition
        elements = list(composition)
        fractions = np.array([composition[element] for element in elements])
        mass = np.array([float(element.atomic_mass) for element in elements])
        electronegativity = np.array([element.X for element in elements])
        radius = np.array([float(element.atomic_radius or element.average_ionic_radius) for element in elements])
        space_group = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number()
        rows.append([
            fractions @ mass, mass.min(), mass.max(), fractions @ electronegativity,
            electronegativity.max() - electronegativity.min(), fractions @ radius, len(structure), space_group,
        ])
    return np.array(rows, dtype=np.float64)


def per_atom_targets(table: PhononTable) -> np.ndarray:
    """Per-atom C_v at the metric temperatures and S(300 K) (last column), J/(mol·K)."""
    heat, entropy = table.thermo_labels(METRIC_TEMPERATURES)
    targets = heat / table.n_atoms[:, None]
    targets[:, -1] = entropy[:, -1] / table.n_atoms
    return targets


def per_atom_errors(prediction_heat: np.ndarray, prediction_entropy: np.ndarray, table: PhononTable) -> np.ndarray:
    """|error| per atom of C_v at the metric temperatures and S(300 K) (last column), ``(n, 7)``."""
    targets = per_atom_targets(table)
    predicted = prediction_heat / table.n_atoms[:, None]
    predicted[:, -1] = prediction_entropy[:, -1] / table.n_atoms
    return np.abs(predicted - targets)


def constant_theta_row(train: PhononTable, test: PhononTable) -> tuple[np.ndarray, float]:
    """Errors of one Debye θ for all crystals: the median θ reproducing each training crystal's C_v(300 K)."""
    heat, _ = train.thermo_labels([300.0])
    theta = float(np.median(equivalent_debye_temperature(heat[:, 0] / train.n_atoms, 300.0, 1).numpy()))
    temperature = torch.tensor(METRIC_TEMPERATURES, dtype=torch.float64)
    heat = debye_heat_capacity(theta, temperature, torch.as_tensor(test.n_atoms)[:, None]).numpy()
    entropy = debye_entropy(theta, temperature, torch.as_tensor(test.n_atoms)[:, None]).numpy()
    return per_atom_errors(heat, entropy, test), theta


def gradient_boosting_row(train: PhononTable, test: PhononTable) -> np.ndarray:
    """Errors of the scikit-learn gradient-boosting peer baseline (default settings, seeded)."""
    features_train, features_test = composition_descriptors(train), composition_descriptors(test)
    targets = per_atom_targets(train)
    predicted = np.column_stack([
        GradientBoostingRegressor(random_state=0).fit(features_train, targets[:, column]).predict(features_test)
        for column in range(targets.shape[1])
    ])
    return np.abs(predicted - per_atom_targets(test))


def head_row(name: str, head: str, labels: list[str], epochs: int, output: Path, members: int = 1) -> dict:
    """Train one head with the recipe's machinery (validation for model choice) and score it on test.

    The options are ``recipes/configs/thermo_dos.yaml`` (the settings chosen on validation by
    ``benchmarks/sweep_thermo.py``) with this row's head, labels, members and epochs. A finished run in
    ``output/name`` with exactly these options (its ``metrics.json``) is reused, not retrained.
    """
    options = (ThermoDataArguments, ThermoModelArguments, CloudTrainingArguments)
    data, model, training = parse_recipe_arguments(options, [
        "recipes/configs/thermo_dos.yaml", "--output_dir", str(output / name), "--head", head, "--labels", *labels,
        "--members", str(members), "--num_train_epochs", str(epochs),
        *(["--composition_features", "false"] if head == "debye" else []),  # CloudDebyeModel reads tokens only
        *(["--mass_scaling", "false"] if head != "dos" else []),  # a stretch of the DOS head's frequency axis
    ])
    previous = output / name / "metrics.json"
    if previous.is_file():
        report = json.loads(previous.read_text())
        wanted = json.loads(json.dumps({"data": asdict(data), "model": asdict(model)}))
        defaults = json.loads(json.dumps({"data": asdict(ThermoDataArguments()), "model": asdict(ThermoModelArguments())}))
        # an option added after that run was made: it ran with the option's default
        stored = {section: {**defaults[section], **report["options"][section]} for section in wanted}
        if stored == wanted and report["epochs"] == epochs:
            print(f"{name}: reusing {previous}", flush=True)
            return report["test"]
    run = train_thermo(data, model, training)
    return run.test_metrics


def metrics_to_errors(metrics: dict) -> list[float]:
    return [metrics[f"cv_mae_{int(t)}K"] for t in EVAL_TEMPERATURES] + [metrics["s_mae_300K"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=80, help="epochs of every head training")
    parser.add_argument("--output", default="outputs/bench_thermo")
    parser.add_argument("--quick", action="store_true", help="2 epochs per head (a smoke run; numbers meaningless)")
    parser.add_argument("--skip-training", action="store_true", help="only the baselines and the bundled model")
    parser.add_argument("--no-cloud-cv", dest="cloud_cv", action="store_false",
                        help="skip the cloud_cv_test.csv row (a reference-SCOPE debye head, ~5 min)")
    parser.add_argument("--ensemble", default=str(BUNDLED_MODEL_DIR), help="the ensemble folder (default: bundled)")
    parser.add_argument("--wait-minutes", type=int, default=0, help="wait this long for --ensemble to appear")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    output = Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    epochs = 2 if arguments.quick else arguments.epochs

    table = load_phonon_table(ThermoDataArguments().phonon_file)
    train, _validation, test = phonon_splits(table)
    results: dict[str, list[float]] = {}
    started = time.perf_counter()
    errors, theta = constant_theta_row(train, test)
    results[f"constant θ ({theta:.0f} K)"] = errors.mean(0).tolist()
    results["GB baseline (composition + SG)"] = gradient_boosting_row(train, test).mean(0).tolist()
    previous = CloudDebyeModel.from_pretrained(PRETRAINED_ENCODER_DIR)
    metrics, _ = evaluate_on(previous, AutoTokenizer.from_pretrained(PRETRAINED_ENCODER_DIR), test)
    results["previous bundled (AGL θ_D debye)"] = metrics_to_errors(metrics)
    print(f"baselines: {time.perf_counter() - started:.0f} s", flush=True)
    if not arguments.skip_training:
        for name, slug, head, labels in (
            ("debye (C_v 300 K only)", "debye_300", "debye", ["cv_300"]),
            ("debye (DOS curves)", "debye_curves", "debye", ["cv_curve"]),
            ("debye-einstein", "debye_einstein", "debye-einstein", ["cv_curve", "entropy"]),
            ("dos", "dos", "dos", ["dos", "cv_curve", "entropy"]),
        ):
            started = time.perf_counter()
            results[name] = metrics_to_errors(head_row(slug, head, labels, epochs, output))
            print(f"{name}: {time.perf_counter() - started:.0f} s; per-atom MAE {results[name]}", flush=True)
            (output / "bench_thermo_partial.json").write_text(json.dumps(results, indent=2))
    ensemble_dir = Path(arguments.ensemble)
    for _ in range(arguments.wait_minutes * 6):  # a training of the ensemble may still be writing it
        if (ensemble_dir / "model.safetensors").is_file():
            break
        time.sleep(10)
    bundled = CloudThermoModel.from_pretrained(ensemble_dir) if _is_thermo(ensemble_dir) else None
    calibration = {}
    if bundled is not None:
        tokenizer = AutoTokenizer.from_pretrained(ensemble_dir)
        metrics, _ = evaluate_on(bundled, tokenizer, test)
        results[f"bundled ensemble ({bundled.config.thermo_members} × {bundled.config.thermo_head})"] = (
            metrics_to_errors(metrics))
        calibration = {key: value for key, value in metrics.items() if "sigma" in key}

    cloud_cv = None
    if arguments.cloud_cv:
        cloud_cv = cloud_cv_reference_row(output, epochs)
        print(f"cloud_cv_test (reference SCOPE, debye head, reference tokenizer, from scratch): {cloud_cv}")

    header = "| model | " + " | ".join(f"C_v {int(t)} K" for t in EVAL_TEMPERATURES) + " | S 300 K |"
    lines = [header, "|---" * (len(EVAL_TEMPERATURES) + 2) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{value:.3f}" for value in values) + " |" for name, values in results.items()]
    print(f"\nper-atom MAE, J/(mol·K), on {len(test)} held-out phonon crystals\n" + "\n".join(lines))
    if calibration:
        print("\nbundled ensemble calibration (fraction of test truths within):")
        for t in EVAL_TEMPERATURES:
            print(f"  {int(t):>4} K: ±1σ {calibration[f'cv_within_1sigma_{int(t)}K']:.3f}   "
                  f"±2σ {calibration[f'cv_within_2sigma_{int(t)}K']:.3f}")
        print(f"  S(300 K): ±1σ {calibration['s_within_1sigma_300K']:.3f}   ±2σ {calibration['s_within_2sigma_300K']:.3f}")
    if cloud_cv is not None:
        print(f"\ncloud_cv_test.csv, C_v(300 K) per cell: MAE {cloud_cv['mae']:.2f} J/(mol·K), MAE/MAD "
              f"{cloud_cv['mae_over_mad']:.3f} (the paper: 0.057 with its pretrained 110M model)")
    (output / "bench_thermo.json").write_text(json.dumps({"mae": results, "calibration": calibration,
                                                          "cloud_cv_test": cloud_cv,
                                                          "n_test": len(test), "epochs": epochs}, indent=2))
    plot_errors(results, output / "bench_thermo.png")
    print(f"\nwrote {output / 'bench_thermo.json'} and {output / 'bench_thermo.png'}")


def cloud_cv_reference_row(output: Path, epochs: int) -> dict:
    """MAE and MAE/MAD at 300 K on ``reference/cloud_cv_test.csv``.

    That file holds reference SCOPE strings only (no structures), so canonical-SCOPE models (every head above and
    the bundled ensemble) cannot read it; what can be evaluated is a ``debye`` head with the reference tokenizer,
    trained from scratch (no pretrained reference-SCOPE encoder is available offline) by ``recipes/debye_cv.py``
    with ``recipes/configs/debye_cv_small.yaml``.
    """
    folder = output / "cloud_cv_reference"
    if (folder / "test_metrics.json").is_file():  # a finished run is reused
        metrics = json.loads((folder / "test_metrics.json").read_text())["metrics"]
        return {key: metrics[key] for key in ("mae", "mad", "mae_over_mad") if key in metrics}
    subprocess.run([sys.executable, "recipes/debye_cv.py", "recipes/configs/debye_cv_small.yaml",
                    "--output_dir", str(folder), "--num_train_epochs", str(epochs)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = json.loads((folder / "test_metrics.json").read_text())["metrics"]
    return {key: metrics[key] for key in ("mae", "mad", "mae_over_mad") if key in metrics}


def _is_thermo(folder: Path) -> bool:
    if not (folder / "config.json").is_file():
        return False
    return "CloudThermoModel" in json.loads((folder / "config.json").read_text()).get("architectures", [])


def plot_errors(results: dict[str, list[float]], path: Path) -> None:
    """Per-atom C_v MAE against temperature, one line per model (log-scaled error axis)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    axes = figure.subplots()
    for index, (name, values) in enumerate(results.items()):
        axes.plot(EVAL_TEMPERATURES, values[: len(EVAL_TEMPERATURES)], marker="o", color=f"C{index}", label=name)
    axes.set(xlabel="T (K)", ylabel="per-atom $C_V$ MAE (J/(mol·K))", yscale="log",
             title="Held-out phonon crystals: heat-capacity error against temperature")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
