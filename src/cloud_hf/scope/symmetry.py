"""Symmetry-search backends (spglib, moyopy) behind one small interface."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from cloud_hf.structures import ScopeError

BACKENDS = ("moyopy", "spglib")


class _DropMoyoOrbitNotice(logging.Filter):
    """Drop moyopy's notice that it omitted operations incompatible with a supercell's lattice.

    Its orbits then use primitive-cell symmetry, which is what SCOPE wants (spglib's
    ``crystallographic_orbits`` does the same), so the notice is noise for every supercell input.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Omitted ")


logging.getLogger("moyo").addFilter(_DropMoyoOrbitNotice())


@dataclass(frozen=True)
class SymmetryResult:
    """What SCOPE needs from a symmetry search, per input site.

    Attributes:
        number: space-group type, 1..230.
        wyckoff_letters: Wyckoff letter of every input site (standard setting of the backend).
        orbits: for every input site, the index of the first site of its crystallographic orbit
            (under the full space group, also when the input cell is a supercell).
    """

    number: int
    wyckoff_letters: list[str]
    orbits: np.ndarray


def find_symmetry(
    lattice: np.ndarray,
    frac_coords: np.ndarray,
    type_numbers: np.ndarray,
    *,
    backend: str,
    symprec: float,
    angle_tolerance: float | None,
    name: str,
) -> SymmetryResult:
    """Search the space group of a cell.

    Args:
        lattice: ``(3, 3)`` lattice vectors as rows, in Å.
        frac_coords: ``(n, 3)`` fractional coordinates.
        type_numbers: ``(n,)`` integers telling atom types apart (atomic numbers or species indices).
        backend: ``"moyopy"`` or ``"spglib"``.
        symprec: distance tolerance, in Å.
        angle_tolerance: angle tolerance of the lattice check, in degrees; ``None`` for the backend's
            metric-only default.
        name: how an error message refers to the input.

    Raises:
        ScopeError: the search failed.
    """
    if backend == "moyopy":
        return _moyopy_symmetry(lattice, frac_coords, type_numbers, symprec, angle_tolerance, name)
    if backend == "spglib":
        return _spglib_symmetry(lattice, frac_coords, type_numbers, symprec, angle_tolerance, name)
    raise ValueError(f"unknown symmetry backend {backend!r}; choose one of {BACKENDS}")


def _spglib_symmetry(lattice, frac_coords, type_numbers, symprec, angle_tolerance, name) -> SymmetryResult:
    # spglib's C code prints internal retry notices ("ssm_get_exact_positions failed") to stderr unless
    # told otherwise; failures still come back as a missing dataset. A user's own setting wins.
    os.environ.setdefault("SPGLIB_WARNING", "OFF")
    import spglib

    cell = (lattice, frac_coords, type_numbers)
    tolerance = -1.0 if angle_tolerance is None else angle_tolerance
    try:
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=tolerance)
    except Exception as error:  # spglib >= 2.5 may raise instead of returning None
        raise ScopeError(f"{name}: symmetry search failed (spglib, symprec={symprec} Å): {error}") from error
    if dataset is None:
        reason = spglib.get_error_message()
        if not reason or reason == "no error":
            reason = "no space group found within the tolerance"
        raise ScopeError(f"{name}: symmetry search failed (spglib, symprec={symprec} Å): {reason}")
    return SymmetryResult(int(dataset.number), list(dataset.wyckoffs), np.asarray(dataset.crystallographic_orbits))


def _moyopy_symmetry(lattice, frac_coords, type_numbers, symprec, angle_tolerance, name) -> SymmetryResult:
    import moyopy

    angle = None if angle_tolerance is None else float(np.deg2rad(angle_tolerance))
    try:
        dataset = moyopy.MoyoDataset(
            moyopy.Cell(lattice, frac_coords, type_numbers.tolist()),
            symprec=symprec,
            angle_tolerance=angle,
            setting=moyopy.Setting.spglib(),
        )
    except Exception as error:
        raise ScopeError(f"{name}: symmetry search failed (moyopy, symprec={symprec} Å): {error}") from error
    return SymmetryResult(int(dataset.number), list(dataset.wyckoffs), np.asarray(dataset.orbits))
