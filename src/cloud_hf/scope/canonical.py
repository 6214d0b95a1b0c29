"""Canonical SCOPE (format ``canonical-1``): ``<bravais> <point group> SG<n> (<element> <Wyckoff>)*``.

One ``(element, Wyckoff)`` pair per occupied Wyckoff orbit, sorted by (Wyckoff letter rank, atomic
number); of the letterings related by the Euclidean normalizer, the lexicographically smallest sorted
list is written. See docs/design.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from pymatgen.core import Composition

from cloud_hf.scope.symmetry import SymmetryResult
from cloud_hf.scope.tables import NUMBER_OF_SPACE_GROUPS, space_group_tables, wyckoff_letter_rank
from cloud_hf.scope.vocab import space_group_token, wyckoff_token
from cloud_hf.structures import ScopeError, atomic_numbers_by_symbol, element_symbols

CANONICAL_VERSION = "canonical-1"


class DecodedScope(NamedTuple):
    """A canonical SCOPE string read back.

    Attributes:
        space_group_number: space-group type, 1..230.
        sites: ``(element symbol, Wyckoff symbol)`` per occupied orbit, in string order.
        composition: atoms per conventional cell (sum of the orbits' multiplicities).
        bravais: Bravais lattice, Pearson notation.
        point_group: crystallographic point group, Hermann–Mauguin short symbol.
    """

    space_group_number: int
    sites: list[tuple[str, str]]
    composition: Composition
    bravais: str
    point_group: str


def canonical_scope(atomic_numbers: np.ndarray, symmetry: SymmetryResult) -> str:
    """The canonical SCOPE string of a cell whose symmetry search gave ``symmetry``."""
    tables = space_group_tables(symmetry.number)
    representatives = np.unique(symmetry.orbits)
    orbits = [(symmetry.wyckoff_letters[site], int(atomic_numbers[site])) for site in representatives]
    best = min(
        sorted((wyckoff_letter_rank(relabelling[letter]), z, relabelling[letter]) for letter, z in orbits)
        for relabelling in tables.relabellings
    )
    symbols = element_symbols()
    pairs = " ".join(f"{symbols[z]} {wyckoff_token(tables.multiplicities[letter], letter)}" for _, z, letter in best)
    head = f"{tables.bravais} {tables.point_group} {space_group_token(symmetry.number)}"
    return f"{head} {pairs}" if pairs else head


def decode_canonical(scope: str) -> DecodedScope:
    """Read a canonical SCOPE string back; ``ScopeError`` (quoting the string) if it is not one."""
    tokens = scope.split()

    def fail(reason: str) -> ScopeError:
        return ScopeError(f"not a {CANONICAL_VERSION} SCOPE string ({reason}): {scope!r}")

    if len(tokens) < 5 or len(tokens) % 2 == 0:
        raise fail("expected <bravais> <point group> SG<n> followed by (element, Wyckoff) pairs")
    bravais, point_group, group_token, *pair_tokens = tokens
    number_text = group_token[2:]
    if not group_token.startswith("SG") or not number_text.isdigit() or not 1 <= int(number_text) <= NUMBER_OF_SPACE_GROUPS:
        raise fail(f"{group_token!r} is not a space group token SG1..SG230")
    tables = space_group_tables(int(number_text))
    if (bravais, point_group) != (tables.bravais, tables.point_group):
        raise fail(f"{bravais} {point_group} does not match {group_token} ({tables.bravais} {tables.point_group})")
    sites: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    for element, wyckoff in zip(pair_tokens[::2], pair_tokens[1::2]):
        if element not in atomic_numbers_by_symbol():
            raise fail(f"unknown element {element!r}")
        letter = wyckoff[-1:]
        if tables.multiplicities.get(letter) is None or wyckoff != wyckoff_token(tables.multiplicities[letter], letter):
            raise fail(f"{wyckoff!r} is not a Wyckoff position of space group {tables.number}")
        sites.append((element, wyckoff))
        counts[element] = counts.get(element, 0) + tables.multiplicities[letter]
    return DecodedScope(tables.number, sites, Composition(counts), bravais, point_group)
