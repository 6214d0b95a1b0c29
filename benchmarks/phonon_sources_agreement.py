"""How the phonon sources agree on the crystals they share: Petretto (DFPT) against phonondb (finite displacements).

    python benchmarks/phonon_sources_agreement.py

For the Materials Project ids in both files, prints the per-atom C_v and S differences (phonondb − Petretto) at
50 and 300 K: mean (the systematic offset between the codes), mean absolute and 95th percentile, J/(mol·K); for
all shared crystals, the stable ones (≤ 0.5 % imaginary modes in phonondb) and those whose Petretto DOS ends inside
the DFPT label (the others carry only that label). Truths on the Petretto side are integrated from its DOS.
"""

from __future__ import annotations

import numpy as np

from cloud_hf.phonons import UNSTABLE_IMAGINARY_FRACTION, load_phonon_crystals


def main() -> None:
    crystals, _ = load_phonon_crystals(max_imaginary_fraction=None)
    petretto = {crystal_id: row for row, (crystal_id, source) in enumerate(zip(crystals.ids, crystals.sources))
                if source == "petretto"}
    pairs = [(row, petretto[crystal_id]) for row, (crystal_id, source) in enumerate(zip(crystals.ids, crystals.sources))
             if source == "phonondb" and crystal_id in petretto]
    phonondb_rows, petretto_rows = (np.asarray(rows) for rows in zip(*pairs))
    stable = crystals.imaginary_fraction[phonondb_rows] <= UNSTABLE_IMAGINARY_FRACTION
    print(f"{len(pairs)} crystals in both files; {int(stable.sum())} stable in phonondb")
    print(f"{'quantity':<10} {'crystals':<22} {'n':>4} {'mean diff':>10} {'MAE':>8} {'p95 |diff|':>10}")
    for name in ("heat_capacity", "entropy"):
        values = getattr(crystals, name)
        for temperature in (50.0, 300.0):
            column = crystals.label_column(temperature)
            difference = values[phonondb_rows, column] - values[petretto_rows, column]
            for label, mask in (("all", np.ones_like(stable)), ("stable", stable)):
                present = mask & np.isfinite(difference)
                diff = difference[present]
                quantity = f"{'C_v' if name == 'heat_capacity' else 'S'} {int(temperature)} K"
                print(f"{quantity:<10} {label:<22} {len(diff):>4} {diff.mean():>10.3f} {np.abs(diff).mean():>8.3f} "
                      f"{np.quantile(np.abs(diff), 0.95):>10.3f}")


if __name__ == "__main__":
    main()
