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

They are the structure feature ``"cell_descriptors"`` (:mod:`cloud_hf.features`), model input ``cell_features``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from cloud_hf.errors import CrystalInputError
from cloud_hf.features import register_feature
from cloud_hf.structures import (
    ISOLATED_CLUSTER_GAP,
    MAX_ATOMIC_NUMBER,
    CrystalCell,
    interplanar_spacings,
    isolated_cluster_gaps,
    nearest_neighbour_distances,
)

CELL_DESCRIPTORS = ("ln_volume_per_atom", "ln_density", "ln_mean_neighbour_distance", "ln_min_neighbour_distance")
"""The descriptors of :func:`cell_descriptors`, in order (natural logs of Å³, g/cm³, Å, Å)."""
NUM_CELL_DESCRIPTORS = len(CELL_DESCRIPTORS)
GRAMS_PER_AMU = 1.66053906660e-24
CUBIC_CENTIMETRES_PER_CUBIC_ANGSTROM = 1e-24


@cache
def atomic_masses() -> np.ndarray:
    """Atomic mass in amu indexed by atomic number (pymatgen's element data; index 0 unused)."""
    from pymatgen.core.periodic_table import Element

    return np.array([0.0, *(float(Element.from_Z(z).atomic_mass) for z in range(1, MAX_ATOMIC_NUMBER + 1))])


def cell_descriptors(cell: CrystalCell) -> list[float]:
    """The :data:`CELL_DESCRIPTORS` of a validated cell (natural logs; volumes in Å³, density in g/cm³, Å)."""
    n_sites = len(cell)
    volume = abs(float(np.linalg.det(cell.lattice)))
    mass = float(atomic_masses()[np.asarray(cell.atomic_numbers, dtype=int)].sum())
    density = mass * GRAMS_PER_AMU / (volume * CUBIC_CENTIMETRES_PER_CUBIC_ANGSTROM)
    neighbours = nearest_neighbour_distances(np.asarray(cell.lattice, float), np.asarray(cell.frac_coords, float))
    return [float(np.log(volume / n_sites)), float(np.log(density)), float(np.log(neighbours.mean())),
            float(np.log(neighbours.min()))]


VACUUM_GAP = ISOLATED_CLUSTER_GAP
"""Thickest atom-free slab, in Å, along any lattice direction of a cell whose descriptors a model may read: a thicker
one is vacuum (a slab, a 2-D layer, a wire), whose volume per atom and density say how much empty space the cell
holds, not how tightly the crystal is packed. Measured (``benchmarks/vacuum_gaps.py``): the thickest empty slab of
every phonon training crystal is ≤ 3.9 Å, of 38,000 bulk MP-20/WBM/carbon-24/AFLOW crystals ≤ 5.4 Å (except the
70 MP-20 entries that are themselves monolayers), and of all 636 JARVIS 2-D monolayers > 7 Å (median 22 Å)."""

DIRECTIONS = ("a", "b", "c")


def check_bulk_cell(cell: CrystalCell) -> None:
    """:class:`CrystalInputError` naming the input for a cell with vacuum: an atom-free slab thicker than
    :data:`VACUUM_GAP` along a lattice direction. A model that reads the cell descriptors refuses such a crystal
    instead of predicting from descriptors the vacuum sets (a monolayer's C_v moved with its cell height)."""
    gaps = isolated_cluster_gaps(np.asarray(cell.lattice, float), np.asarray(cell.frac_coords, float))
    axis = int(np.argmax(gaps))
    if gaps[axis] > VACUUM_GAP:
        raise CrystalInputError(
            f"{cell.name}: a slab or layer in vacuum (an atom-free slab {gaps[axis]:.1f} Å thick along lattice direction "
            f"{DIRECTIONS[axis]}, more than {VACUUM_GAP:g} Å, cloud_hf.cell_descriptors.VACUUM_GAP); this model reads "
            "the cell's volume per atom and density, which the vacuum sets, so it does not predict slabs, 2-D layers "
            "or wires: give the bulk crystal"
        )


CELL_DESCRIPTOR_FEATURE = register_feature(
    "cell_descriptors", cell_descriptors, input_name="cell_features", value_names=CELL_DESCRIPTORS,
    description="cell descriptors", check=check_bulk_cell)
"""The cell descriptors as the structure feature ``"cell_descriptors"`` (model input ``cell_features``)."""


PACKING_DESCRIPTORS = (*CELL_DESCRIPTORS, "vacuum_directions")
"""The descriptors of :func:`packing_descriptors`, in order: the cell descriptors with the volume and density of the
atoms' own slab where the cell has vacuum, and the number of lattice directions with vacuum (0 bulk, 1 layer, 2
wire, 3 cluster)."""


def packing_descriptors(cell: CrystalCell) -> list[float]:
    """The cell descriptors of any cell, bulk or with vacuum, that the vacuum does not set.

    Along a lattice direction whose thickest atom-free slab ``g`` is wider than :data:`VACUUM_GAP`, the plane spacing
    ``d`` (Å) is replaced by the atoms' own thickness plus one mean nearest-neighbour distance ``r̄`` (as if the
    layers were stacked at bonding distance): ``d − g + r̄``; the volume per atom and the density follow. The
    neighbour distances do not depend on the vacuum. A bulk cell (no such slab) gets exactly its
    :func:`cell_descriptors` and 0 vacuum directions; a monolayer's values do not move with its cell height.
    """
    lattice, frac = np.asarray(cell.lattice, float), np.asarray(cell.frac_coords, float)
    descriptors = cell_descriptors(cell)
    gaps, spacings = np.asarray(isolated_cluster_gaps(lattice, frac)), interplanar_spacings(lattice)
    vacuum = gaps > VACUUM_GAP
    if not vacuum.any():
        return [*descriptors, 0.0]
    mean_neighbour = float(np.exp(descriptors[2]))
    ln_shrink = float(np.sum(np.log((spacings[vacuum] - gaps[vacuum] + mean_neighbour) / spacings[vacuum])))
    return [descriptors[0] + ln_shrink, descriptors[1] - ln_shrink, descriptors[2], descriptors[3],
            float(vacuum.sum())]


PACKING_DESCRIPTOR_FEATURE = register_feature(
    "packing_descriptors", packing_descriptors, input_name="packing_features", value_names=PACKING_DESCRIPTORS,
    description="packing descriptors")
"""The vacuum-independent cell descriptors as the structure feature ``"packing_descriptors"`` (model input
``packing_features``): what a head reads where its crystals include slabs and 2-D layers (MatBench jdft2d)."""


__all__ = ["CELL_DESCRIPTORS", "CELL_DESCRIPTOR_FEATURE", "NUM_CELL_DESCRIPTORS", "PACKING_DESCRIPTORS",
           "PACKING_DESCRIPTOR_FEATURE", "VACUUM_GAP", "atomic_masses", "cell_descriptors", "check_bulk_cell",
           "packing_descriptors"]
