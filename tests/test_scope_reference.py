"""Reference SCOPE: byte-identical to the CLOUD reference encoder."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure

from cloud_hf.scope import ScopeEncoder
from cloud_hf.scope.reference import REFERENCE_GENERATOR_OVERRIDES, reference_generator_string
from cloud_hf.scope.tables import pymatgen_generator_strings

ENCODER = ScopeEncoder(mode="reference")


def test_all_230_generator_strings_match_the_reference_table(reference_data):
    oracle = json.loads((reference_data / "generator.json").read_text())
    matches = sum(reference_generator_string(number) == oracle[str(number)] for number in range(1, 231))
    assert matches == 230


def test_pymatgen_table_differs_from_the_reference_exactly_at_the_three_documented_groups(reference_data):
    oracle = json.loads((reference_data / "generator.json").read_text())
    differing = {number for number in range(1, 231) if pymatgen_generator_strings()[number] != oracle[str(number)]}
    assert differing == set(REFERENCE_GENERATOR_OVERRIDES) == {39, 131, 222}


def test_all_309_reference_strings_are_reproduced_byte_for_byte(reference_data):
    rows = [json.loads(line) for line in (reference_data / "scope_reference_dev.jsonl").read_text().splitlines()]
    assert len(rows) == 309
    mismatches = [
        (row["id"], got, row["scope_reference"])
        for row in rows
        if (got := ENCODER.encode(row["structure"], name=row["id"])) != row["scope_reference"]
    ]
    assert mismatches == []


def test_reference_mode_accepts_pymatgen_structures_and_their_dicts_alike(reference_data):
    row = json.loads((reference_data / "scope_reference_dev.jsonl").read_text().splitlines()[0])
    assert ENCODER.encode(Structure.from_dict(row["structure"])) == ENCODER.encode(row["structure"]) == row["scope_reference"]


def test_rocksalt_gives_the_spec_example():
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert ENCODER.encode(rocksalt) == "1 6 a O D D a D O D b O O O c O O O d O O O e O O O 0 | 4a 4b | Na 0.5 Cl 0.5"


def test_reference_string_depends_on_site_order_as_the_reference_does():
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    reordered = Structure.from_sites(sorted(rocksalt, key=lambda site: site.specie.symbol))
    assert ENCODER.encode(reordered).endswith("| 4b 4a | Cl 0.5 Na 0.5")


def test_reference_mode_settings():
    assert ENCODER.to_dict() == {
        "mode": "reference",
        "version": "reference-1",
        "backend": "spglib",
        "symprec": 0.01,
        "angle_tolerance": 5.0,
        "min_distance": 0.5,
    }
    assert ScopeEncoder.from_dict(ENCODER.to_dict()) == ENCODER
    with pytest.raises(ValueError, match="backend must be 'spglib'"):
        ScopeEncoder(mode="reference", backend="moyopy")


def test_overrides_are_used_in_reference_mode_only():
    """Canonical mode spells space groups as SG<n>; the reference quirks never leak into it."""
    aem2 = Structure.from_spacegroup(
        "Aem2", Lattice.orthorhombic(5, 6, 7), ["Si", "O"], [[0.25, 0.13, 0.21], [0.1, 0.33, 0.4]]
    )
    assert ScopeEncoder().encode(aem2) == "oS mm2 SG39 O 8d Si 8d"
    assert ENCODER.encode(aem2) == "0 3 a O D D b O O O c O D O 0 | 8d | Si 0.5 O 0.5"
    assert pymatgen_generator_strings()[39] == "03aODDbOOOjODO0"  # the correct mirror j, unused in reference mode
