"""Reference SCOPE: byte-identical to the CLOUD reference encoder (format ``reference-1``).

``<generator characters> | <Wyckoff symbols> | <element fraction pairs>``, every token separated by
one space; see SPEC.md. The generator strings come from pymatgen's ``symm_data.json``; the reference
table differs from it at three space groups, reproduced below in reference mode only.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

from cloud_hf.scope.symmetry import find_symmetry
from cloud_hf.scope.tables import pymatgen_generator_strings, space_group_tables

REFERENCE_SYMPREC = 0.01
"""Distance tolerance of the reference encoder, in Å (pymatgen ``SpacegroupAnalyzer`` default)."""

REFERENCE_ANGLE_TOLERANCE = 5.0
"""Angle tolerance of the reference encoder, in degrees (pymatgen ``SpacegroupAnalyzer`` default)."""

# Quirks of the reference implementation's generator table, which its released model was trained on.
# They are not the crystallographically correct encodings (pymatgen's are) and are used in reference
# mode only.

#: Aem2 (39): the reference writes a 2-fold rotation along b (``c``) where the group has the mirror ``j``.
REFERENCE_GENERATOR_39 = "03aODDbOOOcODO0"
#: P4_2/mmc (131): the reference's 4-fold rotation (``g``) lacks the 4_2 screw translation.
REFERENCE_GENERATOR_131 = "13bDDOgDOOcODD0"
#: Pn-3n (222): the reference writes the operators of origin choice 2.
REFERENCE_GENERATOR_222 = "14bDDOcDODdOOOeOOD1YYY"

REFERENCE_GENERATOR_OVERRIDES = {
    39: REFERENCE_GENERATOR_39,
    131: REFERENCE_GENERATOR_131,
    222: REFERENCE_GENERATOR_222,
}


def reference_generator_string(number: int) -> str:
    """The generator string the reference encoder writes for space group ``number`` (unsplit)."""
    return REFERENCE_GENERATOR_OVERRIDES.get(number) or pymatgen_generator_strings()[number]


def species_type_numbers(structure: Structure) -> np.ndarray:
    """1-based index of each site's species in order of first appearance (as ``SpacegroupAnalyzer``)."""
    first_seen: dict = {}
    return np.array([first_seen.setdefault(site.species, len(first_seen) + 1) for site in structure], dtype=np.int64)


def reference_scope(
    structure: Structure,
    *,
    name: str,
    symprec: float = REFERENCE_SYMPREC,
    angle_tolerance: float = REFERENCE_ANGLE_TOLERANCE,
) -> str:
    """The reference encoder's SCOPE string of a validated, ordered ``structure``."""
    symmetry = find_symmetry(
        np.asarray(structure.lattice.matrix),
        np.asarray(structure.frac_coords),
        species_type_numbers(structure),
        backend="spglib",
        symprec=symprec,
        angle_tolerance=angle_tolerance,
        name=name,
    )
    multiplicities = space_group_tables(symmetry.number).multiplicities
    wyckoff_symbols = dict.fromkeys(f"{multiplicities[letter]}{letter}" for letter in symmetry.wyckoff_letters)
    composition = " ".join(
        f"{element} {np.round(fraction, 2)}"
        for element, fraction in structure.composition.element_composition.fractional_composition.items()
    )
    generators = " ".join(reference_generator_string(symmetry.number))
    return f"{generators} | {' '.join(wyckoff_symbols)} | {composition}"
