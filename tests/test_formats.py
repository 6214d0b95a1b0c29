"""Input formats: the file-name rules of ``cloud_hf.formats`` and the reader registry of ``cloud_hf.structures``.

A toy format is added through the public registration point only (one reader, one ``register_reader`` call)
and read by ``load_structure``, ``load_cell``, the SCOPE encoder and ``collect_crystals``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Molecule, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from cloud_hf.errors import CloudConfigError, CrystalInputError
from cloud_hf.formats import (
    is_cif_file_name,
    is_gzipped,
    is_poscar_file_name,
    is_structure_file_name,
    table_format,
)
from cloud_hf.inputs import collect_crystals
from cloud_hf.scope import ScopeEncoder
from cloud_hf.structures import (
    CrystalCell,
    CrystalReader,
    crystal_readers,
    input_format,
    load_cell,
    load_structure,
    register_reader,
    unregister_reader,
)
from test_structures import ROCKSALT, ROCKSALT_SCOPE

BUILT_IN_READERS = ["pymatgen-dict", "cif", "crystal-cell", "structure", "molecule", "ase", "pmg-str", "poscar", "file"]


# --- file-name rules --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [
    ("train.csv", "csv"), ("train.CSV.gz", "csv"), ("x.tsv", "tsv"), ("x.Tab.gz", "tsv"), ("x.json.gz", "json"),
    ("x.jsonl", "jsonl"), ("x.JSONL.gz", "jsonl"), ("x.cif", None), ("POSCAR", None), ("x.csv.bz2", None),
])
def test_table_format_is_read_from_the_name_ignoring_case_and_gz(name, kind):
    assert table_format(Path("folder") / name) == kind


def test_structure_file_names():
    assert is_cif_file_name("a/b.CIF") and is_cif_file_name("x.mcif") and not is_cif_file_name("cif.txt")
    assert all(is_poscar_file_name(name) for name in ("POSCAR", "CONTCAR_relaxed", "my_poscar.txt", "x.VASP"))
    assert not is_poscar_file_name("x.vasp.bak")
    assert is_structure_file_name("x.cif") and is_structure_file_name("POSCAR") and not is_structure_file_name("x.xyz")
    assert is_gzipped("x.csv.gz") and not is_gzipped("x.csv")


# --- the registry -----------------------------------------------------------------------------------------------


def test_inputs_are_offered_to_the_built_in_readers_in_this_order(tmp_path):
    assert [reader.name for reader in crystal_readers()] == BUILT_IN_READERS
    cif = tmp_path / "NaCl.cif"
    ROCKSALT.to(filename=str(cif))
    cif_under_poscar_name = tmp_path / "NaCl.vasp"
    cif_under_poscar_name.write_text(cif.read_text())
    poscar = tmp_path / "POSCAR"
    ROCKSALT.to(filename=str(poscar), fmt="poscar")
    cases = [
        (json.dumps(ROCKSALT.as_dict()), "pymatgen-dict"), (ROCKSALT.as_dict(), "pymatgen-dict"),
        (cif.read_text(), "cif"), (cif, "cif"), (str(cif_under_poscar_name), "cif"),
        (load_cell(ROCKSALT), "crystal-cell"), (ROCKSALT, "structure"),
        (Molecule(["H", "H"], [[0, 0, 0], [0.74, 0, 0]]), "molecule"), (AseAtomsAdaptor.get_atoms(ROCKSALT), "ase"),
        (str(ROCKSALT), "pmg-str"),
        (poscar.read_text(), "poscar"), (poscar, "poscar"), (tmp_path / "missing.xyz", "file"),
    ]
    for obj, name in cases:
        assert input_format(obj) == name, obj
    with pytest.raises(CrystalInputError, match=r"x: unsupported input type int"):
        input_format(42, name="x")


TOY_SUFFIX = ".toy"


def _toy_text(obj: object, label: str) -> str | None:
    """A toy-format input: text opening with ``TOY``, or a ``.toy`` file."""
    if isinstance(obj, str) and obj.startswith("TOY\n"):
        return obj
    if isinstance(obj, (str, Path)) and Path(obj).suffix == TOY_SUFFIX and Path(obj).is_file():
        return Path(obj).read_text()
    return None


def _toy_sites(text: str) -> tuple[float, list[str], np.ndarray]:
    """``TOY`` / ``cubic <a in Å>`` / one ``<element> <x> <y> <z>`` line per site (fractional)."""
    lines = text.split("\n")[1:]
    a = float(lines[0].split()[1])
    rows = [line.split() for line in lines[1:] if line.strip()]
    return a, [row[0] for row in rows], np.array([[float(v) for v in row[1:4]] for row in rows])


def _toy_structure(text: str, label: str, allow_partial_occupancy: bool) -> Structure:
    a, species, frac = _toy_sites(text)
    return Structure(Lattice.cubic(a), species, frac)


def _toy_cell(text: str, label: str) -> CrystalCell:
    a, species, frac = _toy_sites(text)
    numbers = {"Na": 11, "Cl": 17}
    return CrystalCell(np.eye(3) * a, frac, np.array([numbers[s] for s in species], dtype=np.int64), label)


TOY_ROCKSALT = """TOY
cubic 5.64
Na 0 0 0
Na 0 0.5 0.5
Na 0.5 0 0.5
Na 0.5 0.5 0
Cl 0.5 0.5 0.5
Cl 0.5 0 0
Cl 0 0.5 0
Cl 0 0 0.5
"""


@pytest.fixture
def toy_format():
    before = crystal_readers()
    register_reader(CrystalReader("toy", _toy_text, _toy_structure, _toy_cell))  # the one registration line
    try:
        yield
    finally:
        unregister_reader("toy")
        assert crystal_readers() == before


def test_a_new_format_is_one_reader_and_one_registration(tmp_path, toy_format):
    assert [reader.name for reader in crystal_readers()] == [*BUILT_IN_READERS[:-2], "toy", *BUILT_IN_READERS[-2:]]
    (tmp_path / f"NaCl{TOY_SUFFIX}").write_text(TOY_ROCKSALT)
    path = tmp_path / f"NaCl{TOY_SUFFIX}"
    for obj in (TOY_ROCKSALT, path, str(path)):
        assert input_format(obj) == "toy"
        structure = load_structure(obj)
        assert structure.composition.reduced_formula == "NaCl" and len(structure) == 8
        cell = load_cell(obj, name="toy NaCl")
        assert cell.name == "toy NaCl" and cell.atomic_numbers.tolist() == [11] * 4 + [17] * 4
        np.testing.assert_allclose(cell.lattice, structure.lattice.matrix, atol=1e-12)
        np.testing.assert_allclose(cell.frac_coords, structure.frac_coords)
    assert ScopeEncoder().encode(path) == ROCKSALT_SCOPE  # the canonical encoder reads it through load_cell
    assert ScopeEncoder(mode="reference").encode(TOY_ROCKSALT) == ScopeEncoder(mode="reference").encode(ROCKSALT)
    (items,) = collect_crystals([tmp_path])
    assert items.name == str(path) and items.error is None
    assert ScopeEncoder().encode(items.crystal) == ROCKSALT_SCOPE


def test_the_toy_format_is_validated_like_any_input(toy_format):
    overlapping = "TOY\ncubic 5.64\nNa 0 0 0\nCl 0.01 0 0\n"
    for read in (load_structure, load_cell):
        with pytest.raises(CrystalInputError, match=r"toy: overlapping atoms: sites 0 and 1 are 0\.056 Å apart"):
            read(overlapping, name="toy")


def test_without_its_reader_the_toy_format_falls_to_the_poscar_and_file_readers(tmp_path):
    path = tmp_path / f"NaCl{TOY_SUFFIX}"
    path.write_text(TOY_ROCKSALT)
    assert input_format(TOY_ROCKSALT) == "poscar" and input_format(path) == "file"
    with pytest.raises(CrystalInputError, match=r"unreadable or malformed POSCAR"):
        load_cell(TOY_ROCKSALT)
    with pytest.raises(CrystalInputError, match=r"unreadable structure file"):
        load_structure(path)


def test_reader_names_are_unique_and_unregistering_an_unknown_one_is_refused(toy_format):
    with pytest.raises(CloudConfigError, match=r"a crystal reader named 'toy' is registered already"):
        register_reader(CrystalReader("toy", _toy_text, _toy_structure))
    with pytest.raises(CloudConfigError, match=r"no crystal reader named 'nope'"):
        unregister_reader("nope")


def test_a_reader_registered_before_another_is_offered_the_input_first():
    """A JSON dialect can only be read before the pymatgen-dict reader, which takes (and refuses) any JSON object."""
    text = json.dumps({"toy_rock_salt": 5.64})

    def recognise(obj, label):
        return json.loads(obj)["toy_rock_salt"] if isinstance(obj, str) and '"toy_rock_salt"' in obj else None

    def to_structure(length, label, allow_partial_occupancy):
        return Structure.from_spacegroup("Fm-3m", Lattice.cubic(length), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])

    with pytest.raises(CrystalInputError):
        load_structure(text)
    with pytest.raises(CloudConfigError, match="no crystal reader named 'nope' to go before"):
        register_reader(CrystalReader("toy-json", recognise, to_structure), before="nope")
    register_reader(CrystalReader("toy-json", recognise, to_structure), before="pymatgen-dict")
    try:
        assert [reader.name for reader in crystal_readers()][:2] == ["toy-json", "pymatgen-dict"]
        assert input_format(text) == "toy-json"
        assert load_structure(text).lattice.a == pytest.approx(5.64)
    finally:
        unregister_reader("toy-json")
    assert [reader.name for reader in crystal_readers()] == BUILT_IN_READERS
