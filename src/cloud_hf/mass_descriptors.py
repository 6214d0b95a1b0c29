"""Mass descriptors: how light a crystal's atoms are, in the form phonon frequencies feel it.

A harmonic mode's frequency goes as √(k/m), and the heat capacity's distance from Dulong–Petit at high temperature
is set by the mean squared frequency, C_v ≈ 3R (1 − ⟨(ħω/k_BT)²⟩/12). So the mean inverse mass and the share of very
light atoms (H–B, whose O–H, B–H or N–H modes reach 2,000–4,000 cm⁻¹) carry what a head needs at high temperature
more directly than pooled ln masses. Four numbers, averaged over the cell's atoms:

* ``mean_inverse_sqrt_mass``: ⟨(m/amu)^(-1/2)⟩;
* ``mean_inverse_mass``: ⟨(m/amu)^(-1)⟩;
* ``light_atom_share``: the share of atoms lighter than carbon (Z ≤ 5);
* ``hydrogen_share``: the share of hydrogen atoms.

They depend on the composition only, so they are invariant under cell choice, rotation, translation and site order,
and a slab or a layer in vacuum gets the same numbers as its bulk (no vacuum check, unlike the cell descriptors).
They are the structure feature ``"mass_descriptors"`` (:mod:`cloud_hf.features`), model input ``mass_features``.
"""

from __future__ import annotations

import numpy as np

from cloud_hf.cell_descriptors import atomic_masses
from cloud_hf.features import register_feature
from cloud_hf.structures import CrystalCell

MASS_DESCRIPTORS = ("mean_inverse_sqrt_mass", "mean_inverse_mass", "light_atom_share", "hydrogen_share")
"""The descriptors of :func:`mass_descriptors`, in order (amu^-1/2, amu^-1, and two shares of the atoms)."""
LIGHTEST_HEAVY_ATOMIC_NUMBER = 6
"""Atoms with a smaller atomic number (H, He, Li, Be, B) count as light in ``light_atom_share``."""


def mass_descriptors(cell: CrystalCell) -> list[float]:
    """The :data:`MASS_DESCRIPTORS` of a validated cell: means over its atoms of (m/amu)^(-1/2) and (m/amu)^(-1),
    the share of atoms lighter than carbon and the share of hydrogen atoms."""
    numbers = np.asarray(cell.atomic_numbers, dtype=int)
    masses = atomic_masses()[numbers]
    return [float(np.mean(masses ** -0.5)), float(np.mean(1.0 / masses)),
            float(np.mean(numbers < LIGHTEST_HEAVY_ATOMIC_NUMBER)), float(np.mean(numbers == 1))]


MASS_DESCRIPTOR_FEATURE = register_feature(
    "mass_descriptors", mass_descriptors, input_name="mass_features", value_names=MASS_DESCRIPTORS,
    description="mass descriptors")
"""The mass descriptors as the structure feature ``"mass_descriptors"`` (model input ``mass_features``)."""


__all__ = ["LIGHTEST_HEAVY_ATOMIC_NUMBER", "MASS_DESCRIPTORS", "MASS_DESCRIPTOR_FEATURE", "mass_descriptors"]
