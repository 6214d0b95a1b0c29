"""Train a CLOUD thermodynamics head (dos, debye-einstein or debye) on phonon data, from any mix of labels.

    python recipes/thermo.py recipes/configs/thermo_smoke.yaml [--key value ...]

Options are the dataclasses of :mod:`cloud_hf.thermo_training` plus ``transformers.TrainingArguments`` (YAML keys are
the flags; the command line wins). Outputs under ``output_dir``: ``model/`` (loads with ``from_pretrained``) and
``metrics.json`` (validation and held-out test: per-atom C_v MAE at 50–800 K, S(300 K) MAE, ±1σ/±2σ coverage).
"""

from __future__ import annotations

import logging
import sys

from cloud_hf.errors import CloudError
from cloud_hf.thermo_training import parse_options, train_thermo


def main() -> None:
    """Run the recipe from the command line (a CloudError becomes a one-line message and exit code 2)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        data, model, training = parse_options()
        train_thermo(data, model, training)
    except CloudError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
