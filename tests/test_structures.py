"""Input loading and validation: every accepted input type, every bad-input case, the gemmi CIF reader."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
from pymatgen.core import Lattice, Molecule, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from cloud_hf.scope import ScopeEncoder, ScopeError
from cloud_hf.structures import (
    CrystalCell,
    closest_pair,
    load_cell,
    load_structure,
    read_cif_cell,
)

ROCKSALT = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
ROCKSALT_SCOPE = "cF m-3m SG225 Na 4a Cl 4b"
ENCODER = ScopeEncoder()

REAL_CIF_FILES = (
    "mp_20/pilot_val.csv.gz",
    "mpts_52/val.csv.gz",
    "wbm/wbm_val.csv.gz",
    "perov_5/val.csv.gz",
    "carbon_24/val.csv.gz",
    "supercon/supercon_val.csv.gz",
    "aflow/debye_temperature/val.csv.gz",
)


def pymatgen_cif_parse(text: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(text, fmt="cif")


# --- every input type gives the same string -------------------------------------------------------


def test_every_input_type_encodes_alike(tmp_path):
    cif_path = tmp_path / "rocksalt.cif"
    cif_path.write_text(str(CifWriter(ROCKSALT)))
    poscar_path = tmp_path / "POSCAR"
    poscar_path.write_text(str(Poscar(ROCKSALT)))
    atoms = Atoms(numbers=ROCKSALT.atomic_numbers, cell=ROCKSALT.lattice.matrix, scaled_positions=ROCKSALT.frac_coords, pbc=True)
    inputs = {
        "Structure": ROCKSALT,
        "dict": ROCKSALT.as_dict(),
        "JSON text": json.dumps(ROCKSALT.as_dict()),
        "CIF text": str(CifWriter(ROCKSALT)),
        "symmetrized CIF text": str(CifWriter(ROCKSALT, symprec=0.1)),
        "CIF path (str)": str(cif_path),
        "CIF path (Path)": cif_path,
        "POSCAR path": poscar_path,
        "ASE Atoms": atoms,
        "pymatgen's MSONAtoms (an ase.Atoms subclass)": AseAtomsAdaptor.get_atoms(ROCKSALT),
    }
    for kind, obj in inputs.items():
        assert ENCODER.encode(obj) == ROCKSALT_SCOPE, kind
        assert len(load_structure(obj)) in (2, 8), kind


# --- bad input: each case names the input and the reason -----------------------------------------


def bad_inputs(tmp_path):
    """(input, name given, message pattern) per SPEC.md bad-input case."""
    malformed = tmp_path / "broken.cif"
    malformed.write_text("data_broken\n_cell_length_a 3.0\nloop_\n_atom_site_label\n")
    poscar = tmp_path / "POSCAR_bad"
    poscar.write_text("not a poscar\n1.0\nx y z\n")
    disordered = ROCKSALT.copy()
    disordered.replace(0, {"Na": 0.5, "K": 0.5})
    overlapping = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.99, 0, 0]])
    unknown = ROCKSALT.as_dict()
    unknown["sites"][1]["species"][0]["element"] = "Qq"
    nan_coords = ROCKSALT.as_dict()
    nan_coords["sites"][0]["abc"] = [float("nan"), 0, 0]
    inf_lattice = ROCKSALT.as_dict()
    inf_lattice["lattice"]["matrix"][0][0] = float("inf")
    return [
        (malformed, None, rf"{malformed}: unreadable or malformed CIF"),
        (poscar, "row 7", r"row 7: unreadable structure file"),
        (tmp_path / "missing.cif", None, r"missing\.cif: no such file"),
        (disordered, "mp-1", r"mp-1: disordered site 0 \(.*Na.*K.*\): partial occupancies are not supported"),
        (Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]]), "h2", r"h2: non-periodic input \(a Molecule\)"),
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), "h2-ase", r"h2-ase: non-periodic input \(ASE Atoms"),
        (Structure(Lattice.cubic(3.0), [], []), "empty", r"empty: empty structure \(no sites\)"),
        (overlapping, "id-9", r"id-9: overlapping atoms: sites 0 and 1 are 0\.040 Å apart \(minimum 0\.5 Å\)"),
        (unknown, "x", r"x: unknown element 'Qq' at site 1"),
        (nan_coords, "nan", r"nan: the atomic coordinates contain NaN or infinite values"),
        (inf_lattice, "inf", r"inf: the lattice contains NaN or infinite values"),
        ({"sites": []}, "mol-dict", r"mol-dict: non-periodic input \(a Molecule dict\)"),
        ("{not json", "row 3", r"row 3: malformed JSON structure text"),
        (3.14, None, r"float: unsupported input type float"),
        ("x" * 5000, "long", r"long: no such file, and not CIF text"),
        ("POSCAR?\nnot really\n", "text", r"text: unreadable or malformed POSCAR"),
    ]


def test_each_bad_input_raises_a_scope_error_naming_it(tmp_path):
    for obj, name, pattern in bad_inputs(tmp_path):
        for loader in (load_structure, load_cell):
            with pytest.raises(ScopeError, match=pattern):
                loader(obj, name=name)
        with pytest.raises(ScopeError, match=pattern):
            ENCODER.encode(obj, name=name)


def test_unknown_element_in_a_cif_is_reported():
    cif = str(CifWriter(ROCKSALT)).replace("  Cl  Cl", "  Xx  Cl")
    with pytest.raises(ScopeError, match=r"CIF data_NaCl: unknown element"):
        ENCODER.encode(cif)


def test_angle_tolerance_is_given_in_degrees_to_both_backends():
    # a cubic lattice sheared by 2°: the corner atoms move 0.14 Å, more than symprec, so only the
    # angle tolerance (5° > 2°, 0.5° < 2°) decides whether it is still cubic
    sheared = Structure(Lattice.from_parameters(4.0, 4.0, 4.0, 90, 88, 90), ["Cu"], [[0, 0, 0]])
    for backend in ("moyopy", "spglib"):
        assert ScopeEncoder(backend=backend, angle_tolerance=5).encode(sheared) == "cP m-3m SG221 Cu 1a"
        assert ScopeEncoder(backend=backend, angle_tolerance=0.5).encode(sheared) == "oS mmm SG65 Cu 2a"


def test_symmetry_search_failure_is_reported():
    on_top = Structure(Lattice.cubic(4.0), ["Na", "Na"], [[0, 0, 0], [0, 0, 0]])
    with pytest.raises(ScopeError, match=r"stacked: symmetry search failed \(moyopy, symprec=0\.1 Å\)"):
        ScopeEncoder(min_distance=0.0).encode(on_top, name="stacked")
    with pytest.raises(ScopeError, match=r"stacked: symmetry search failed \(spglib, symprec=0\.1 Å\): no space group found"):
        ScopeEncoder(backend="spglib", min_distance=0.0).encode(on_top, name="stacked")


def test_reference_mode_accepts_disorder_as_the_reference_does_but_canonical_refuses():
    disordered = ROCKSALT.copy()
    disordered.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    assert ScopeEncoder(mode="reference").encode(disordered).endswith("| 4a 4b | Na 0.25 K 0.25 Cl 0.5")
    with pytest.raises(ScopeError, match="disordered"):
        ENCODER.encode(disordered)


def test_overlap_check_sees_periodic_images():
    lattice = np.diag([4.0, 4.0, 4.0])
    i, j, distance = closest_pair(lattice, np.array([[0.01, 0.5, 0.5], [0.97, 0.5, 0.5], [0.5, 0.0, 0.0]]))
    assert (i, j) == (0, 1) and distance == pytest.approx(0.16)
    assert closest_pair(lattice, np.zeros((1, 3))) is None


def test_overlap_check_agrees_with_pymatgen_on_large_cells():
    structure = dict((e["tags"]["aflow"], e["snl"].structure) for e in AFLOW_PROTOTYPE_LIBRARY)["A_cF136_227_aeg"] * (2, 1, 1)
    _, _, distance = closest_pair(structure.lattice.matrix, structure.frac_coords, cutoff=3.0)
    matrix = structure.distance_matrix + np.eye(len(structure)) * 1e9
    assert distance == pytest.approx(matrix.min(), rel=1e-9)


# --- the gemmi CIF reader ------------------------------------------------------------------------


def assert_same_crystal(cell, structure):
    """Same lattice (1e-6 Å) and the same multiset of (element, position) sites.

    pymatgen reorders sites by the CIF's formula and snaps coordinates near 1/3, 2/3 … to those
    values (hence the 2e-4 fractional tolerance); neither changes the crystal.
    """
    assert np.allclose(cell.lattice, structure.lattice.matrix, atol=1e-6)
    assert sorted(cell.atomic_numbers.tolist()) == sorted(structure.atomic_numbers)
    delta = cell.frac_coords[:, None, :] - structure.frac_coords[None, :, :]
    close = np.abs(delta - np.round(delta)).max(axis=2) < 2e-4
    same_element = cell.atomic_numbers[:, None] == np.array(structure.atomic_numbers)[None, :]
    matches = close & same_element
    assert matches.any(axis=1).all() and matches.any(axis=0).all()


def test_cif_reader_matches_pymatgen_on_real_cifs(shared_data):
    read = 0
    for relative in REAL_CIF_FILES:
        frame = pd.read_csv(shared_data / "structures" / relative, nrows=60)
        for row, text in enumerate(frame["cif"]):
            cell = read_cif_cell(text, f"{relative}:{row}")
            assert cell is not None, f"{relative}:{row} fell back to pymatgen"
            assert_same_crystal(cell, pymatgen_cif_parse(text))
            read += 1
    assert read == 60 * len(REAL_CIF_FILES)


def test_cif_reader_expands_symmetry_operations_like_pymatgen():
    for entry in AFLOW_PROTOTYPE_LIBRARY[::4]:
        text = str(CifWriter(entry["snl"].structure, symprec=0.01))
        cell = read_cif_cell(text, entry["tags"]["aflow"])
        assert cell is not None, entry["tags"]["aflow"]
        assert_same_crystal(cell, pymatgen_cif_parse(text))


ROCKSALT_BY_SPACE_GROUP_NAME = """data_rocksalt
_symmetry_space_group_name_H-M 'F m -3 m'
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
 _atom_site_label
 _atom_site_type_symbol
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 Na1 Na 0 0 0
 Cl1 Cl 0.5 0.5 0.5
"""


def test_a_cif_naming_its_space_group_only_is_expanded():
    assert len(read_cif_cell(ROCKSALT_BY_SPACE_GROUP_NAME, "x")) == 8
    assert ENCODER.encode(ROCKSALT_BY_SPACE_GROUP_NAME) == ROCKSALT_SCOPE


def test_a_loaded_cell_is_accepted_again_without_rereading(tmp_path):
    """The pipeline reads a file once (``load_cell``) and encodes the cell; it must give the file's string."""
    cif_path = tmp_path / "rocksalt.cif"
    cif_path.write_text(str(CifWriter(ROCKSALT)))
    cell = load_cell(cif_path)
    assert load_cell(cell) is cell
    assert ENCODER.encode(cell) == ENCODER.encode(cif_path) == ROCKSALT_SCOPE
    assert len(load_structure(cell)) == len(cell)
    overlapping = CrystalCell(cell.lattice, np.zeros((2, 3)), np.array([11, 17]), name="two-on-one")
    with pytest.raises(ScopeError, match="two-on-one"):
        ENCODER.encode(overlapping)


# --- big cells: the neighbour search, supercell reduction, limits -------------------------------------


def brute_force_closest(lattice, frac_coords, reach=3):
    """Smallest distance over all pairs and all images within ``reach`` cells (own images included)."""
    shifts = np.array([(a, b, c) for a in range(-reach, reach + 1) for b in range(-reach, reach + 1)
                       for c in range(-reach, reach + 1)], dtype=float)
    best = (0, 0, np.inf)
    for i in range(len(frac_coords)):
        for j in range(i, len(frac_coords)):
            delta = frac_coords[j] - frac_coords[i]
            cart = (delta - np.round(delta) + shifts) @ lattice
            distances = np.linalg.norm(cart, axis=1)
            if i == j:
                distances = distances[np.any(shifts != 0, axis=1)]
            if distances.min() < best[2]:
                best = (i, j, float(distances.min()))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_neighbour_search_finds_the_closest_pair_of_random_triclinic_cells(seed):
    rng = np.random.default_rng(seed)
    lattice = Lattice.from_parameters(*rng.uniform(2.0, 6.0, 3), *rng.uniform(60, 120, 3)).matrix
    frac_coords = rng.uniform(-1.5, 2.5, size=(int(rng.integers(1, 12)), 3))
    expected = brute_force_closest(lattice, frac_coords)
    found = closest_pair(lattice, frac_coords, cutoff=expected[2] + 1e-6)
    assert found is not None and found[2] == pytest.approx(expected[2], abs=1e-9)
    assert closest_pair(lattice, frac_coords, cutoff=expected[2] - 1e-6) is None


def test_an_atom_on_another_and_an_atom_on_its_own_image_are_overlaps():
    assert closest_pair(np.eye(3) * 4.0, np.array([[0.2, 0.2, 0.2], [0.2, 0.2, 0.2]])) == (0, 1, 0.0)
    with pytest.raises(ScopeError, match=r"tiny: overlapping atoms: site 0 and its own periodic image are 0\.300 Å apart"):
        load_cell(Structure(Lattice.orthorhombic(0.3, 4, 4), ["Cu"], [[0, 0, 0]]), name="tiny")


def test_supercells_are_reduced_to_the_cell_they_repeat():
    from cloud_hf.scope.symmetry import reduce_supercell

    supercell = ROCKSALT * (3, 4, 5)
    lattice, frac_coords, numbers = reduce_supercell(
        supercell.lattice.matrix, supercell.frac_coords, np.array(supercell.atomic_numbers), symprec=0.1
    )
    assert len(numbers) == 8
    np.testing.assert_allclose(lattice, ROCKSALT.lattice.matrix, atol=1e-9)
    assert ScopeEncoder().encode(Structure(lattice, numbers.tolist(), frac_coords)) == ROCKSALT_SCOPE
    with_vacancy = supercell.copy()
    with_vacancy.remove_sites([0])
    assert len(reduce_supercell(with_vacancy.lattice.matrix, with_vacancy.frac_coords,
                                np.array(with_vacancy.atomic_numbers), symprec=0.1)[2]) == len(with_vacancy)


def test_big_supercells_encode_like_their_cell():
    big = ROCKSALT * (7, 7, 7)  # 2,744 atoms: past SUPERCELL_REDUCTION_MIN_SITES
    big.perturb(0.01)
    assert ENCODER.encode(big) == ROCKSALT_SCOPE
    assert ScopeEncoder(backend="spglib").encode(big) == ROCKSALT_SCOPE


def test_a_cell_above_the_atom_limit_is_refused_before_any_search(monkeypatch):
    import cloud_hf.structures as structures

    monkeypatch.setattr(structures, "MAX_SITES", 7)
    with pytest.raises(ScopeError, match=r"big: 8 sites, more than the 7 a cell may have \(cloud_hf\.structures\.MAX_SITES\)"):
        load_cell(ROCKSALT, name="big")
    with pytest.raises(ScopeError, match=r"sites × 192 symmetry operations: far more than the 7 sites"):
        load_cell(ROCKSALT_BY_SPACE_GROUP_NAME)


# --- molecules, VASP 4, multi-block CIFs ---------------------------------------------------------------


def test_a_molecule_in_a_box_is_refused_but_slabs_and_layered_crystals_are_not():
    water = Structure(Lattice.cubic(30), ["O", "H", "H"], [[0, 0, 0], [0.032, 0, 0], [-0.008, 0.031, 0]],
                      coords_are_cartesian=False)
    with pytest.raises(ScopeError, match=r"water: an isolated cluster \(a molecule in a box\), not a crystal: "
                                         r"atom-free slabs of 28\.8, 29\.1, 30\.0 Å"):
        load_cell(water, name="water")
    slab = Structure(Lattice.tetragonal(4.0, 40.0), ["Cu", "Cu"], [[0, 0, 0.5], [0.5, 0.5, 0.545]])
    assert ENCODER.encode(slab).startswith("tP")
    graphite = dict((e["tags"]["aflow"], e["snl"].structure) for e in AFLOW_PROTOTYPE_LIBRARY)["A_hP4_194_bc"]
    load_cell(graphite)


def test_a_vasp4_poscar_takes_its_species_from_the_comment_line_or_is_refused():
    text = str(Poscar(ROCKSALT))
    lines = text.splitlines()
    vasp4 = "\n".join(["Na Cl", *lines[1:5], *lines[6:]])
    assert ENCODER.encode(vasp4) == ROCKSALT_SCOPE
    with pytest.raises(ScopeError, match=r"x: VASP 4 POSCAR without a species line"):
        ENCODER.encode("\n".join(["rock salt", *lines[1:5], *lines[6:]]), name="x")


def test_cif_blocks_splits_a_multi_crystal_cif_and_the_readers_refuse_it_whole():
    from cloud_hf.structures import cif_blocks

    two = str(CifWriter(ROCKSALT)) + "\n" + str(CifWriter(ROCKSALT)).replace("data_NaCl", "data_other")
    blocks = cif_blocks(two)
    assert [name for name, _ in blocks] == ["NaCl", "other"]
    assert [ENCODER.encode(text) for _, text in blocks] == [ROCKSALT_SCOPE] * 2
    with pytest.raises(ScopeError, match=r"2 crystal data blocks \(data_NaCl, data_other\); one crystal per input"):
        ENCODER.encode(two)


def test_reference_mode_reads_a_hall_only_cif_as_the_full_cell():
    hall_only = ROCKSALT_BY_SPACE_GROUP_NAME.replace("_symmetry_space_group_name_H-M 'F m -3 m'",
                                                     "_space_group_name_Hall '-F 4 2 3'")
    assert len(pymatgen_cif_parse(hall_only)) == 2  # what pymatgen alone reads: P1
    assert len(load_structure(hall_only, allow_partial_occupancy=True)) == 8
    assert ScopeEncoder(mode="reference").encode(hall_only) == ScopeEncoder(mode="reference").encode(ROCKSALT)


# --- the tolerance policy on random crystals ---------------------------------------------------------


def test_tolerance_policy_holds_on_random_crystals():
    """On random pyxtal crystals (fixed seeds): a move of every atom by ≤ 0.02 Å keeps the canonical string
    with either backend. (The backends agree on about 99 % of random crystals: see README, SCOPE strings.)"""
    pyxtal = pytest.importorskip("pyxtal")
    rng = np.random.default_rng(7)
    checked = 0
    for group, species, counts in [(62, ["Fe", "Se"], [4, 4]), (139, ["Na", "Cl"], [2, 4]), (166, ["O"], [6]),
                                   (14, ["Si", "O"], [4, 8]), (225, ["Mg", "O"], [4, 4]), (194, ["Ti"], [2])]:
        crystal = pyxtal.pyxtal()
        crystal.from_random(3, group, species, counts, random_state=int(rng.integers(1 << 30)))
        structure = crystal.to_pymatgen()
        directions = rng.normal(size=(len(structure), 3))
        moves = directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.uniform(0, 0.02, (len(structure), 1))
        moved = Structure(structure.lattice, structure.species, structure.cart_coords + moves, coords_are_cartesian=True)
        for backend in ("moyopy", "spglib"):
            encoder = ScopeEncoder(backend=backend)
            assert encoder.encode(moved) == encoder.encode(structure), (group, backend)
        checked += 1
    assert checked == 6


@pytest.mark.parametrize(("tag", "value"), [("_cell_angle_alpha", "200"), ("_cell_length_a", "-4"), ("_cell_angle_beta", "0")])
def test_an_impossible_cif_cell_is_refused_in_both_modes(tag, value):
    text = re.sub(rf"{tag}\s+\S+", f"{tag} {value}", ROCKSALT_BY_SPACE_GROUP_NAME)
    for encoder in (ENCODER, ScopeEncoder(mode="reference")):
        with pytest.raises(ScopeError, match=r"c: impossible cell: (lengths .* Å must be > 0 and angles .*° between 0° "
                                             r"and 180°|Impossible angle)"):
            encoder.encode(text, name="c")
