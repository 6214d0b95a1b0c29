"""Per-space-group tables, read once from the data that pymatgen and moyopy ship (never transcribed).

* Wyckoff multiplicities (conventional cell) and the Euclidean-normalizer relabellings of Wyckoff
  letters: ``pymatgen.analysis.prototypes._data``.
* Point group and Bravais lattice of each space-group type: ``moyopy.SpaceGroupType``.
* De Graef & McHenry generator strings: ``pymatgen/symmetry/symm_data.json`` (``space_group_encoding``).

Wyckoff letters are ranked in International Tables order ``a``..``z`` then ``A`` (only space group 47
reaches ``A``); the rank is what canonical SCOPE sorts by.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

NUMBER_OF_SPACE_GROUPS = 230

# Pearson notation writes the one-face-centred monoclinic lattice ``mS`` (as ``oS``); moyopy says ``mC``.
_BRAVAIS_RENAMES = {"mC": "mS"}


def wyckoff_letter_rank(letter: str) -> int:
    """International Tables order of a Wyckoff letter: ``a`` → 0 … ``z`` → 25, ``A`` → 26."""
    return ord(letter) - ord("a") if letter.islower() else 26 + ord(letter) - ord("A")


@dataclass(frozen=True)
class SpaceGroupTables:
    """What SCOPE needs to know about one space-group type."""

    number: int
    bravais: str
    """Bravais lattice in Pearson notation, e.g. ``cF``."""
    point_group: str
    """Crystallographic point group, Hermann–Mauguin short symbol, e.g. ``m-3m``."""
    multiplicities: dict[str, int]
    """Wyckoff letter → multiplicity in the conventional cell."""
    relabellings: tuple[dict[str, str], ...]
    """Letter maps induced by the Euclidean normalizer; the identity comes first."""


@cache
def space_group_tables(number: int) -> SpaceGroupTables:
    """Tables of space-group type ``number`` (1–230)."""
    # Imported here, not at module level: pymatgen's prototype tables take seconds to import, and only
    # encoding and vocabulary building need them.
    import moyopy
    from pymatgen.analysis.prototypes import _data as prototype_data

    if not 1 <= number <= NUMBER_OF_SPACE_GROUPS:
        raise ValueError(f"space group number must be in 1..{NUMBER_OF_SPACE_GROUPS}, got {number}")
    group_type = moyopy.SpaceGroupType(number)
    multiplicities = dict(prototype_data.WYCKOFF_MULTIPLICITY_DICT[str(number)])
    identity = {letter: letter for letter in multiplicities}
    relabellings = [identity]
    for relabelling in prototype_data.WYCKOFF_POSITION_RELAB_DICT[str(number)]:
        letter_map = {chr(old): new for old, new in relabelling.items()}
        if letter_map != identity:
            relabellings.append(letter_map)
    return SpaceGroupTables(
        number=number,
        bravais=_BRAVAIS_RENAMES.get(group_type.bravais_class, group_type.bravais_class),
        point_group=group_type.geometric_crystal_class,
        multiplicities=multiplicities,
        relabellings=tuple(relabellings),
    )


@cache
def pymatgen_generator_strings() -> dict[int, str]:
    """Space-group number → De Graef & McHenry generator string as pymatgen ships it.

    ``symm_data.json`` lists several Hermann–Mauguin settings per number; they share one encoding
    (checked here, so a future pymatgen that changes this fails loudly instead of silently).
    """
    text = resources.files("pymatgen.symmetry").joinpath("symm_data.json").read_text()
    encodings: dict[int, str] = {}
    for symbol, entry in json.loads(text)["space_group_encoding"].items():
        number, encoding = entry["int_number"], entry["enc"]
        if encodings.setdefault(number, encoding) != encoding:
            raise RuntimeError(f"pymatgen's symm_data.json has two generator strings for space group {number} ({symbol})")
    if sorted(encodings) != list(range(1, NUMBER_OF_SPACE_GROUPS + 1)):
        raise RuntimeError("pymatgen's symm_data.json does not cover space groups 1..230")
    return encodings
