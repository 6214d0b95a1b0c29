"""Cell descriptors: what a crystal's cell says about its stiffness that its SCOPE string does not.

SCOPE is coordinate-free: space group, Wyckoff orbits and composition, no lattice parameters. But phonon frequencies
follow how tightly the atoms are packed (the same composition and structure type, compressed, is stiffer), so a
head predicting a phonon spectrum gains from four numbers of the cell:

* ``ln_volume_per_atom``: ln(V/N / Å³);
* ``ln_density``: ln(ρ / (g/cm³));
* ``ln_mean_neighbour_distance``: ln(mean over atoms of the nearest-neighbour distance / Å);
* ``ln_min_neighbour_distance``: ln(shortest interatomic distance / Å).

All four are invariant under the cell choice (primitive, conventional, supercell), rotation, translation and site
order, as a canonical SCOPE string is. Measured on the phonon crystals (validation carves only,
``benchmarks/sweep_thermo.py``): the gradient-boosting peer baseline's C_v(300 K) error drops from 0.449 / 0.479 /
0.535 to 0.366 / 0.408 / 0.447 J/(mol·K) per atom with them; see the README for the DOS head's figures.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from cloud_hf.structures import MAX_ATOMIC_NUMBER, CrystalCell, nearest_neighbour_distances

CELL_DESCRIPTORS = ("ln_volume_per_atom", "ln_density", "ln_mean_neighbour_distance", "ln_min_neighbour_distance")
"""The descriptors of :func:`cell_descriptors`, in order (natural logs of Å³, g/cm³, Å, Å)."""
NUM_CELL_DESCRIPTORS = len(CELL_DESCRIPTORS)
GRAMS_PER_AMU = 1.66053906660e-24
CUBIC_CENTIMETRES_PER_CUBIC_ANGSTROM = 1e-24


@cache
def _atomic_masses() -> np.ndarray:
    """Atomic mass in amu indexed by atomic number (pymatgen's element data; index 0 unused)."""
    from pymatgen.core.periodic_table import Element

    return np.array([0.0, *(float(Element.from_Z(z).atomic_mass) for z in range(1, MAX_ATOMIC_NUMBER + 1))])


def cell_descriptors(cell: CrystalCell) -> list[float]:
    """The :data:`CELL_DESCRIPTORS` of a validated cell (natural logs; volumes in Å³, density in g/cm³, Å)."""
    n_sites = len(cell)
    volume = abs(float(np.linalg.det(cell.lattice)))
    mass = float(_atomic_masses()[np.asarray(cell.atomic_numbers, dtype=int)].sum())
    density = mass * GRAMS_PER_AMU / (volume * CUBIC_CENTIMETRES_PER_CUBIC_ANGSTROM)
    neighbours = nearest_neighbour_distances(np.asarray(cell.lattice, float), np.asarray(cell.frac_coords, float))
    return [float(np.log(volume / n_sites)), float(np.log(density)), float(np.log(neighbours.mean())),
            float(np.log(neighbours.min()))]


def descriptor_statistics(rows: np.ndarray) -> list[list[float]]:
    """``[mean, std]`` per descriptor over ``rows`` `(n, NUM_CELL_DESCRIPTORS)` (std ≥ 1e-6): what a model
    standardises its cell descriptors by, fitted on its training crystals."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != NUM_CELL_DESCRIPTORS or not len(rows):
        raise ValueError(f"cell descriptor rows must be (n ≥ 1, {NUM_CELL_DESCRIPTORS}), got {rows.shape}")
    return [rows.mean(0).tolist(), np.maximum(rows.std(0), 1e-6).tolist()]


__all__ = ["CELL_DESCRIPTORS", "NUM_CELL_DESCRIPTORS", "cell_descriptors", "descriptor_statistics"]
