"""Train a CLOUD thermodynamics head (dos, debye-einstein or debye) on phonon data, from any mix of labels.

    python recipes/thermo.py recipes/configs/thermo_smoke.yaml [--option value ...]

Data: the phonon DOS table ``../shared/data/phonons/petretto_phdos_train.csv.gz`` (labels ``dos``, ``cv_curve``,
``entropy``, ``cv_300`` from cloud_cv) and optionally AFLOW AGL θ_D rows (``agl``); the held-out test split is
``recipes/splits/phonons_test_ids.txt``. The heads start from the pretrained encoder ``bundled/debye_agl``.
Outputs under ``output_dir``: ``model/`` (loads with ``from_pretrained``) and ``metrics.json`` (validation and
test: per-atom C_v MAE at 50–800 K and S(300 K) MAE in J/(mol·K), ±1σ/±2σ coverage of the ensemble std).
"""

from __future__ import annotations

from cloud_hf.training import CloudTrainingArguments, recipe_main, start_run
from cloud_hf.training.thermo import ThermoDataArguments, ThermoModelArguments, train_thermo

ARGUMENTS = (ThermoDataArguments, ThermoModelArguments, CloudTrainingArguments)
PROGRAM = "python recipes/thermo.py"


def run(data_args: ThermoDataArguments, model_args: ThermoModelArguments,
        training_args: CloudTrainingArguments) -> None:
    """Train, calibrate and test with these options."""
    start_run(training_args)
    train_thermo(data_args, model_args, training_args)


def main(argv: list[str] | None = None) -> None:
    """Run the recipe from the command line; a configuration or data error exits with status 2 and one line."""
    recipe_main(ARGUMENTS, run, PROGRAM, __doc__, argv)


if __name__ == "__main__":
    main()
