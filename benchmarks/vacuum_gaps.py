"""The vacuum-gap rule of the cell-descriptor models, measured: how thick is the thickest atom-free slab of bulk
crystals (the phonon training crystals, MP-20, WBM, carbon-24, AFLOW) and of 2-D monolayers in their slab cells
(JARVIS 2D)? And how much does the bundled model's C_v(300 K) per atom of a monolayer move with its vacuum?

    OMP_NUM_THREADS=1 python benchmarks/vacuum_gaps.py [--drift 40]

The gap of a cell is the largest of :func:`cloud_hf.structures.isolated_cluster_gaps` over its three lattice
directions (Å). Prints the quantiles per set and how many crystals lie above each candidate threshold.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cloud_hf.structures import isolated_cluster_gaps, load_cell, structure_from_pmg_str

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BULK_SETS = {
    "phonon training (phonondb)": ("phonons/phonondb_train.csv.gz", "cif"),
    "phonon training (Petretto)": ("phonons/petretto_phdos_train.csv.gz", "cif"),
    "phonon training (JARVIS metals)": ("phonons/jarvis_metals_train.csv.gz", "cif"),
    "MP-20 binary+ternary val": ("structures/mp_20/biternary_val.csv.gz", "cif"),
    "MP-20 binary+ternary test": ("structures/mp_20/biternary_test.csv.gz", "cif"),
    "WBM val": ("structures/wbm/wbm_val.csv.gz", "cif"),
    "carbon-24 val": ("structures/carbon_24/val.csv.gz", "cif"),
    "AFLOW Debye train": ("structures/aflow/debye_temperature/train.csv.gz", "cif"),
}
MONOLAYERS = ("structures/matminer/jarvis_dft_2d.csv.gz", "structure")
THRESHOLDS = (4.0, 5.0, 6.0, 7.0, 8.0, 10.0)


def largest_gap(crystal: object) -> float:
    """The thickest atom-free slab of a cell along any lattice direction, Å (NaN when the cell cannot be read)."""
    try:
        cell = load_cell(structure_from_pmg_str(crystal) if str(crystal).startswith("Full Formula") else crystal)
    except Exception:
        return math.nan
    return max(isolated_cluster_gaps(cell.lattice, cell.frac_coords))


def gaps_of(relative: str, column: str) -> np.ndarray:
    frame = pd.read_csv(SHARED / relative, comment=None)
    column = column if column in frame.columns else next(c for c in frame.columns if c.lower() == column)
    return np.array([largest_gap(text) for text in frame[column]])


def report(name: str, gaps: np.ndarray) -> None:
    read = gaps[np.isfinite(gaps)]
    quantiles = np.quantile(read, [0.5, 0.99, 0.999, 1.0])
    above = "  ".join(f">{t:g}: {int((read > t).sum())}" for t in THRESHOLDS)
    print(f"{name:34s} n={len(read):6d}  median {quantiles[0]:5.2f}  p99 {quantiles[1]:5.2f}  p99.9 {quantiles[2]:5.2f}  "
          f"max {quantiles[3]:6.2f} Å   {above}")


def vacuum_drift(n_crystals: int) -> None:
    """C_v(300 K) per atom (± std) of monolayers in their own cell, and with 10 Å and 30 Å more vacuum."""
    from pymatgen.core import Lattice, Structure
    from transformers import pipeline

    import cloud_hf

    predictor = pipeline("crystal-property-prediction", model=cloud_hf.BUNDLED_MODEL_DIR)
    frame = pd.read_csv(SHARED / MONOLAYERS[0])
    rows = []
    for text in frame[MONOLAYERS[1]][:n_crystals]:
        structure = structure_from_pmg_str(text)
        gaps = isolated_cluster_gaps(structure.lattice.matrix, structure.frac_coords)
        axis = int(np.argmax(gaps))
        if axis != 2:
            continue
        variants = []
        for extra in (0.0, 10.0, 30.0):
            a, b, c = structure.lattice.abc
            scale = (c + extra) / c
            lattice = Lattice.from_parameters(a, b, c + extra, *structure.lattice.angles)
            frac = structure.frac_coords.copy()
            frac[:, 2] = (frac[:, 2] - frac[:, 2].min()) / scale  # same layer, more empty space above it
            variants.append(Structure(lattice, structure.species, frac))
        results = predictor(variants)
        values = [next(r["value"] for r in result["properties"] if r["property"] == "heat_capacity_per_atom")
                  for result in results]
        rows.append(values)
    rows = np.array(rows)
    change_10, change_30 = rows[:, 1] - rows[:, 0], rows[:, 2] - rows[:, 0]
    print(f"C_v(300 K) per atom of {len(rows)} JARVIS monolayers, J/(mol·K): median {np.median(rows[:, 0]):.2f}; "
          f"with 10 Å more vacuum: median change {np.median(change_10):+.2f} (|max| {np.abs(change_10).max():.2f}); "
          f"with 30 Å more: {np.median(change_30):+.2f} (|max| {np.abs(change_30).max():.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drift", type=int, default=0, help="monolayers whose C_v drift with vacuum is measured")
    args = parser.parse_args(argv)
    for name, (relative, column) in BULK_SETS.items():
        if (SHARED / relative).exists():
            report(name, gaps_of(relative, column))
    report("JARVIS 2D monolayers (slab cells)", gaps_of(*MONOLAYERS))
    if args.drift:
        vacuum_drift(args.drift)
    return 0


if __name__ == "__main__":
    sys.exit(main())
