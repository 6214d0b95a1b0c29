"""Input loading and validation: every accepted input type, every bad-input case, the gemmi CIF reader."""

from __future__ import annotations

import json
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
