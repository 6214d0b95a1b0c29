"""Physical constants, frequency units and the per-cell convention of every thermodynamic quantity.

The convention: a crystal is given as a cell of ``N`` atoms (``n_atoms``), which has ``3N`` phonon modes
(:data:`MODES_PER_ATOM` per atom); every extensive quantity (C_v, U, S, F) is **per mole of cells**, so its
classical (Dulong–Petit) heat capacity is 3NR (:func:`dulong_petit`), and per-atom values are per-cell values
divided by ``N`` (:func:`per_atom`). Frequencies are in cm⁻¹; a mode of frequency ω has the temperature
θ = hcω/k = :data:`KELVIN_PER_WAVENUMBER` · ω.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import numpy as np
import torch

from cloud_hf.errors import CloudDataError

__all__ = [
    "EVEN_DOS_PER_ATOM",
    "FREQUENCY_UNITS",
    "GAS_CONSTANT",
    "KELVIN_PER_WAVENUMBER",
    "MODES_PER_ATOM",
    "PhononThermodynamics",
    "dulong_petit",
    "per_atom",
    "per_cell",
    "to_wavenumber",
]

GAS_CONSTANT = 8.314
"""Molar gas constant R in J/(mol·K), the value the reference CLOUD-DEBYE code uses (CODATA: 8.314462…)."""

KELVIN_PER_WAVENUMBER = 1.438776877
"""hc/k: the temperature θ (K) of a mode of 1 cm⁻¹ (CODATA 2018 second radiation constant, K·cm)."""

FREQUENCY_UNITS = {"cm-1": 1.0, "THz": 33.35640952, "meV": 8.065543937}
"""cm⁻¹ per unit of each accepted frequency unit (1 THz = 33.356 cm⁻¹, 1 meV = 8.0655 cm⁻¹)."""

MODES_PER_ATOM = 3.0
"""Phonon modes per atom (one per Cartesian direction): a cell of N atoms has 3N modes."""
EVEN_DOS_PER_ATOM = MODES_PER_ATOM / 1000.0
"""The DOS of 3 modes per atom spread evenly over 0–1000 cm⁻¹, modes per cm⁻¹ per atom: the scale of the DOS loss and
a fresh DOS head's mean."""

Values = TypeVar("Values", torch.Tensor, np.ndarray)


class PhononThermodynamics(NamedTuple):
    """Harmonic thermodynamic functions per mole of cells (every spectrum's result: Debye, Einstein, DOS)."""

    heat_capacity: torch.Tensor
    """C_v, J/(mol·K)."""
    internal_energy: torch.Tensor
    """U including the zero-point energy, J/mol."""
    entropy: torch.Tensor
    """S, J/(mol·K)."""
    free_energy: torch.Tensor
    """Helmholtz free energy F = U − TS, J/mol."""

    def __add__(self, other: PhononThermodynamics) -> PhononThermodynamics:  # type: ignore[override]
        """Sum of two sets of modes' contributions (the functions are additive over modes)."""
        return PhononThermodynamics(*(mine + theirs for mine, theirs in zip(self, other)))


def to_wavenumber(frequencies: torch.Tensor, unit: str = "cm-1") -> torch.Tensor:
    """Frequencies converted to cm⁻¹ from ``unit`` (one of :data:`FREQUENCY_UNITS`)."""
    if unit not in FREQUENCY_UNITS:
        raise CloudDataError(f"unit: unknown frequency unit {unit!r}; choose one of {sorted(FREQUENCY_UNITS)}")
    return frequencies * FREQUENCY_UNITS[unit] if unit != "cm-1" else frequencies


def dulong_petit(n_atoms: Values | float) -> Values | float:
    """The classical heat capacity 3NR of a cell of ``n_atoms`` atoms, J/(mol·K) per mole of cells: the high-T limit
    of every harmonic C_v, and the scale of the heads' C_v and S losses."""
    return MODES_PER_ATOM * GAS_CONSTANT * n_atoms


def per_atom(values: Values, n_atoms: Values | float) -> Values:
    """Per-cell ``values`` `(batch, ...)` of cells of ``n_atoms`` `(batch,)` atoms (or one cell's values and its
    atom count, numbers), per atom (per mole of atoms)."""
    if np.ndim(n_atoms) == 0:
        return values / n_atoms
    return values / n_atoms.reshape(n_atoms.shape + (1,) * (values.ndim - n_atoms.ndim))


def per_cell(values: Values, n_atoms: Values | float) -> Values:
    """Per-atom ``values`` of cells of ``n_atoms`` atoms (a number, or an array or tensor shaped to broadcast
    against ``values``), per mole of cells: the inverse of :func:`per_atom`."""
    return values * n_atoms
