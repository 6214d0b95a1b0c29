"""Canonical SCOPE (``canonical-1``): format, invariances, decoding, backends, vocabulary."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import spglib
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from cloud_hf.scope import CANONICAL_VERSION, ScopeEncoder, ScopeError, canonical_vocabulary
from cloud_hf.scope.canonical import canonical_scope
from cloud_hf.scope.symmetry import SymmetryResult, find_symmetry
from cloud_hf.scope.tables import space_group_tables

ENCODER = ScopeEncoder()
SPGLIB_ENCODER = ScopeEncoder(backend="spglib")
PROTOTYPES = [(entry["tags"]["aflow"], entry["snl"].structure) for entry in AFLOW_PROTOTYPE_LIBRARY]
PROTOTYPE_IDS = [name for name, _ in PROTOTYPES]


def pymatgen_test_structure(name: str) -> Structure:
    """One of the structures pymatgen ships in ``pymatgen/util/structures``."""
    import pymatgen.util

    return Structure.from_file(Path(pymatgen.util.__file__).parent / "structures" / f"{name}.json")


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Proper rotation by ``angle`` (radians) about ``axis`` (Rodrigues)."""
    axis = axis / np.linalg.norm(axis)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def rattled(structure: Structure, amplitude: float, seed: int) -> Structure:
    """Every atom displaced by exactly ``amplitude`` Å in a random direction."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(len(structure), 3))
    displacement = amplitude * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return Structure(structure.lattice, structure.species, structure.cart_coords + displacement, coords_are_cartesian=True)


def raw_wyckoff_letters(structure: Structure) -> list[tuple[str, str]]:
    """Sorted (element, letter) per orbit as the backend reports them, before normalizer relabelling."""
    symmetry = find_symmetry(
        structure.lattice.matrix,
        np.mod(structure.frac_coords, 1),
        np.array(structure.atomic_numbers),
        backend="moyopy",
        symprec=ENCODER.symprec,
        angle_tolerance=None,
        name="test",
    )
    return sorted((structure[i].specie.symbol, symmetry.wyckoff_letters[i]) for i in set(symmetry.orbits.tolist()))


MOLECULES_IN_REAL_DATA = {"mp_20/pilot_val.csv.gz:7"}
"""Sample entries that are isolated clusters, refused as such: MP-20's Li2S8 molecule in a 12 Å box."""


@cache
def real_structures(shared_data: Path, count: int = 150) -> list[tuple[str, Structure]]:
    """A fixed sample of real, relaxed crystals: MP-20, AFLOW, perovskites (less the molecules among them)."""
    sample = []
    for relative in ("mp_20/pilot_val.csv.gz", "aflow/debye_temperature/val.csv.gz", "perov_5/val.csv.gz"):
        frame = pd.read_csv(shared_data / "structures" / relative, nrows=count // 3)
        sample += [(f"{relative}:{row}", Structure.from_str(cif, fmt="cif")) for row, cif in enumerate(frame["cif"])
                   if f"{relative}:{row}" not in MOLECULES_IN_REAL_DATA]
    return sample


def test_the_molecules_of_the_real_sample_are_refused_as_isolated_clusters(shared_data):
    frame = pd.read_csv(shared_data / "structures" / "mp_20" / "pilot_val.csv.gz", nrows=8)
    with pytest.raises(ScopeError, match=r"an isolated cluster \(a molecule in a box\)"):
        ENCODER.encode(frame["cif"][7])
    assert frame["pretty_formula"][7] == "LiS4"


def is_tolerance_stable(structure: Structure) -> bool:
    """Whether spglib finds the same space group at half and twice the default tolerance.

    Structures distorted to about the tolerance itself may legitimately land on different groups
    under the two backends' slightly different tolerance checks; this excludes them.
    """
    cell = (structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)
    numbers = {spglib.get_symmetry_dataset(cell, symprec=ENCODER.symprec * factor).number for factor in (0.5, 1.0, 2.0)}
    return len(numbers) == 1


# --- format ---------------------------------------------------------------------------------------


def test_rocksalt_string_matches_the_design_example():
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert ENCODER.encode(rocksalt) == "cF m-3m SG225 Na 4a Cl 4b"


def test_wurtzite_keeps_which_element_sits_on_which_orbit():
    gallium_nitride = Structure.from_spacegroup(
        "P6_3mc", Lattice.hexagonal(3.19, 5.19), ["Ga", "N"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.377]]
    )
    assert ENCODER.encode(gallium_nitride) == "hP 6mm SG186 N 2b Ga 2b"


def test_two_orbits_on_one_wyckoff_position_are_both_written():
    # two independent O orbits on 4e (0, 0, z) of I4/mmm
    structure = Structure.from_spacegroup(
        "I4/mmm", Lattice.tetragonal(4.0, 12.0), ["Ba", "O", "O"], [[0, 0, 0], [0, 0, 0.2], [0, 0, 0.35]]
    )
    assert ENCODER.encode(structure) == "tI 4/mmm SG139 Ba 2a O 4e O 4e"


def test_swapping_elements_between_inequivalent_orbits_changes_the_string():
    perovskite = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
    )
    swapped = perovskite.copy()
    swapped.replace_species({"Sr": "Ti", "Ti": "Sr"})
    # Ti octahedrally coordinated by O (perovskite) versus Sr in that site: different crystals
    assert ENCODER.encode(perovskite) == "cP m-3m SG221 Ti 1a Sr 1b O 3d"
    assert ENCODER.encode(swapped) == "cP m-3m SG221 Ti 1a Sr 1b O 3c"


def test_orbits_sort_by_letter_then_atomic_number_under_the_smallest_relabelling():
    # space group 225: the normalizer swaps a and b; Cl on a, Na on b must be written as Na 4a Cl 4b
    symmetry = SymmetryResult(number=225, wyckoff_letters=["b", "a"], orbits=np.array([0, 1]))
    assert canonical_scope(np.array([11, 17]), symmetry) == "cF m-3m SG225 Na 4a Cl 4b"
    symmetry = SymmetryResult(number=225, wyckoff_letters=["a", "b"], orbits=np.array([0, 1]))
    assert canonical_scope(np.array([11, 17]), symmetry) == "cF m-3m SG225 Na 4a Cl 4b"


def test_format_version_is_recorded_and_round_trips():
    settings_dict = ENCODER.to_dict()
    assert settings_dict == {
        "mode": "canonical",
        "version": CANONICAL_VERSION,
        "backend": "moyopy",
        "symprec": 0.1,
        "angle_tolerance": None,
        "min_distance": 0.5,
    }
    assert ScopeEncoder.from_dict(json.loads(json.dumps(settings_dict))) == ENCODER
    with pytest.raises(ValueError, match="canonical-2"):
        ScopeEncoder.from_dict({**settings_dict, "version": "canonical-2"})


def test_vocabulary_is_closed_and_collision_free():
    vocabulary = canonical_vocabulary()
    assert len(vocabulary) == len(set(vocabulary)) == 580  # no string stands for two things
    bravais, point_groups = vocabulary[:14], vocabulary[14:46]
    assert bravais[:3] == ["aP", "mP", "mS"] and all(token[0].islower() and token[1].isupper() for token in bravais)
    assert len(set(point_groups)) == 32 and all(set(token) <= set("12346/-m") for token in point_groups)
    assert vocabulary[46:276] == [f"SG{number}" for number in range(1, 231)]
    assert vocabulary[276] == "H" and vocabulary[393] == "Og"
    wyckoff = vocabulary[394:]
    assert len(wyckoff) == 186 and "8A" in wyckoff and "192l" in wyckoff
    assert all(token[:-1].isdigit() and token[-1].isalpha() for token in wyckoff)
    emitted = {token for _, structure in PROTOTYPES for token in ENCODER.encode(structure).split()}
    assert emitted <= set(vocabulary)


# --- invariances on the 288 AFLOW prototypes pymatgen ships --------------------------------------


@pytest.mark.parametrize("name", PROTOTYPE_IDS)
def test_prototype_invariances(name):
    structure = dict(PROTOTYPES)[name]
    expected = ENCODER.encode(structure)
    rng = np.random.default_rng(sum(map(ord, name)))
    # site permutation
    permuted = Structure.from_sites([structure[i] for i in rng.permutation(len(structure))])
    assert ENCODER.encode(permuted) == expected, "site permutation"
    # rigid rotation (the lattice rotates, fractional coordinates do not change)
    rotation = rotation_matrix(rng.normal(size=3), rng.uniform(0.1, 3.0))
    rotated = Structure(Lattice(structure.lattice.matrix @ rotation.T), structure.species, structure.frac_coords)
    assert ENCODER.encode(rotated) == expected, "rotation"
    # translation / origin shift by a random vector
    translated = structure.copy()
    translated.translate_sites(range(len(structure)), rng.uniform(0, 1, 3), frac_coords=True)
    assert ENCODER.encode(translated) == expected, "translation"
    # supercells, diagonal and sheared
    assert ENCODER.encode(structure * (2, 1, 1)) == expected, "2x1x1 supercell"
    if len(structure) <= 40:
        assert ENCODER.encode(structure * [[1, 1, 0], [-1, 1, 0], [0, 0, 1]]) == expected, "sheared supercell"
    # primitive and conventional standard cells
    analyzer = SpacegroupAnalyzer(structure, symprec=0.01)
    assert ENCODER.encode(analyzer.get_primitive_standard_structure()) == expected, "primitive cell"
    assert ENCODER.encode(analyzer.get_conventional_standard_structure()) == expected, "conventional cell"
    # noise below the tolerance policy: every atom moved by symprec / 5 = 0.02 Å
    assert ENCODER.encode(rattled(structure, ENCODER.symprec / 5, seed=1)) == expected, "0.02 Å noise"


def test_equivalent_wyckoff_relabelling_is_normalised_away():
    """Origin shifts that move orbits to other (normalizer-equivalent) letters keep the string.

    The backend's raw letters do change for many prototypes under these shifts, so this test would
    fail without the normalizer step.
    """
    relabelled = 0
    for name, structure in PROTOTYPES:
        expected = ENCODER.encode(structure)
        for vector in ([0.5, 0, 0], [0, 0, 0.5], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]):
            shifted = structure.copy()
            shifted.translate_sites(range(len(structure)), vector, frac_coords=True)
            relabelled += raw_wyckoff_letters(shifted) != raw_wyckoff_letters(structure)
            assert ENCODER.encode(shifted) == expected, (name, vector)
    assert relabelled > 50


def test_noise_policy_rescues_a_rattled_perovskite_where_the_reference_drops_to_p1():
    strontium_titanate = pymatgen_test_structure("SrTiO3")
    noisy = rattled(strontium_titanate, 0.02, seed=3)
    assert ENCODER.encode(noisy) == ENCODER.encode(strontium_titanate) == "cP m-3m SG221 Ti 1a Sr 1b O 3d"
    assert ScopeEncoder(mode="reference").encode(noisy).startswith("0 0 0 |")  # P1 in the reference encoder


# --- decode -----------------------------------------------------------------------------------------


def test_decode_is_consistent_with_each_prototype_space_group_and_composition():
    for name, structure in PROTOTYPES:
        decoded = ENCODER.decode(ENCODER.encode(structure))
        analyzer = SpacegroupAnalyzer(structure, symprec=ENCODER.symprec, angle_tolerance=-1)
        assert decoded.space_group_number == analyzer.get_space_group_number(), name
        conventional = analyzer.get_conventional_standard_structure()
        assert decoded.composition == conventional.composition, name
        assert {element for element, _ in decoded.sites} == {el.symbol for el in structure.composition}, name


def test_decode_rejects_malformed_strings_quoting_them():
    with pytest.raises(ScopeError, match=r"SG231"):
        ENCODER.decode("cF m-3m SG231 Na 4a")
    with pytest.raises(ScopeError, match=r"does not match SG225"):
        ENCODER.decode("cP m-3m SG225 Na 4a")
    with pytest.raises(ScopeError, match=r"'4z' is not a Wyckoff position of space group 225"):
        ENCODER.decode("cF m-3m SG225 Na 4z")
    with pytest.raises(ScopeError, match=r"unknown element 'Xx'"):
        ENCODER.decode("cF m-3m SG225 Xx 4a")
    with pytest.raises(ScopeError, match=r"'8a' is not a Wyckoff position"):
        ENCODER.decode("cF m-3m SG225 Na 8a")
    with pytest.raises(ScopeError, match="canonical SCOPE only"):
        ScopeEncoder(mode="reference").decode("cF m-3m SG225 Na 4a Cl 4b")


def test_decode_returns_the_conventional_cell_composition():
    decoded = ENCODER.decode("cF m-3m SG225 Na 4a Cl 4b")
    assert decoded.space_group_number == 225
    assert decoded.sites == [("Na", "4a"), ("Cl", "4b")]
    assert decoded.composition == Composition("Na4Cl4")
    assert (decoded.bravais, decoded.point_group) == ("cF", "m-3m")


# --- real structures ------------------------------------------------------------------------------


def test_real_structures_invariances_and_decoding(shared_data):
    for name, structure in real_structures(shared_data):
        expected = ENCODER.encode(structure)
        rng = np.random.default_rng(len(structure))
        permuted = Structure.from_sites([structure[i] for i in rng.permutation(len(structure))])
        rotation = rotation_matrix(rng.normal(size=3), 1.0)
        moved = Structure(Lattice(permuted.lattice.matrix @ rotation.T), permuted.species, permuted.frac_coords + rng.uniform(0, 1, 3))
        assert ENCODER.encode(moved) == expected, name
        assert ENCODER.encode(structure * (1, 2, 1)) == expected, name
        decoded = ENCODER.decode(expected)
        assert decoded.composition.reduced_composition == structure.composition.reduced_composition, name


def test_backends_agree_on_prototypes_and_tolerance_stable_real_structures(shared_data):
    compared = 0
    for name, structure in PROTOTYPES + real_structures(shared_data):
        if not is_tolerance_stable(structure):
            continue
        assert SPGLIB_ENCODER.encode(structure) == ENCODER.encode(structure), name
        compared += 1
    assert compared > 400


def test_backends_agree_on_the_wbm_records(shared_data):
    path = shared_data / "structures" / "wbm" / "wbm-random-pbe54-equilibrium-2025.1.json.gz"
    with gzip.open(path, "rt") as handle:
        records = json.load(handle)
    compared = 0
    for record in records[:120]:
        structure = Structure.from_dict(record["structure"])
        if is_tolerance_stable(structure):
            assert SPGLIB_ENCODER.encode(structure) == ENCODER.encode(structure)
            compared += 1
    assert compared > 100


# --- random crystals ---------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    space_group=st.sampled_from([2, 12, 14, 62, 63, 129, 139, 141, 166, 186, 194, 205, 216, 221, 225, 227, 229]),
    elements=st.sampled_from([["Na", "Cl"], ["Mg", "O"], ["Ba", "Ti", "O"], ["Si", "O"], ["Li", "Fe", "P", "O"]]),
    seed=st.integers(0, 2**16),
)
def test_random_pyxtal_crystals_decode_to_their_space_group_and_composition(space_group, elements, seed):
    from pyxtal import pyxtal

    crystal = pyxtal()
    rng = np.random.default_rng(seed)
    counts = [int(n) for n in rng.integers(1, 3, len(elements))]
    try:
        crystal.from_random(3, space_group, elements, [n * smallest_multiplicity(space_group) for n in counts], random_state=seed)
    except Exception:
        assume(False)
    assume(crystal.valid)
    structure = crystal.to_pymatgen()
    try:
        scope = ENCODER.encode(structure)
    except ScopeError as error:  # random packing can put atoms < 0.5 Å apart: then the error must say so
        assert "overlapping atoms" in str(error)
        return
    decoded = ENCODER.decode(scope)
    assume(is_tolerance_stable(structure))  # else the two backends' tolerance checks may legitimately differ
    found = SpacegroupAnalyzer(structure, symprec=ENCODER.symprec, angle_tolerance=-1).get_space_group_number()
    assert decoded.space_group_number == found
    assert decoded.composition.reduced_composition == structure.composition.reduced_composition
    shifted = structure.copy()
    shifted.translate_sites(range(len(structure)), rng.uniform(0, 1, 3), frac_coords=True)
    assert ENCODER.encode(Structure.from_sites(list(reversed(shifted)))) == scope


def smallest_multiplicity(space_group: int) -> int:
    """Multiplicity of the most special Wyckoff position, in the conventional cell."""
    return min(space_group_tables(space_group).multiplicities.values())
