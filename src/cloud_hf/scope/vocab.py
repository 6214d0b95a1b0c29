"""The closed vocabulary of canonical SCOPE (format ``canonical-1``)."""

from __future__ import annotations

from cloud_hf.scope.tables import NUMBER_OF_SPACE_GROUPS, space_group_tables, wyckoff_letter_rank
from cloud_hf.structures import element_symbols


def space_group_token(number: int) -> str:
    """The token of space-group type ``number``: ``SG1`` … ``SG230``."""
    return f"SG{number}"


def wyckoff_token(multiplicity: int, letter: str) -> str:
    """The token of a Wyckoff position: multiplicity (conventional cell) then letter, e.g. ``4a``."""
    return f"{multiplicity}{letter}"


def canonical_vocabulary() -> list[str]:
    """Every token the canonical encoder can emit, in a fixed order.

    Bravais lattices, the 32 point groups (both in order of first appearance over space groups
    1..230), ``SG1``..``SG230``, element symbols by atomic number (1..118), then every Wyckoff
    symbol occurring in any space group, sorted by (letter rank, multiplicity).
    """
    bravais: list[str] = []
    point_groups: list[str] = []
    wyckoff: set[tuple[int, int, str]] = set()
    for number in range(1, NUMBER_OF_SPACE_GROUPS + 1):
        tables = space_group_tables(number)
        if tables.bravais not in bravais:
            bravais.append(tables.bravais)
        if tables.point_group not in point_groups:
            point_groups.append(tables.point_group)
        wyckoff.update((wyckoff_letter_rank(letter), mult, letter) for letter, mult in tables.multiplicities.items())
    return [
        *bravais,
        *point_groups,
        *(space_group_token(number) for number in range(1, NUMBER_OF_SPACE_GROUPS + 1)),
        *element_symbols()[1:],
        *(wyckoff_token(mult, letter) for _, mult, letter in sorted(wyckoff)),
    ]
