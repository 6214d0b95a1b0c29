"""A hostile corpus, written by the test itself, through every batch path: 0 lost rows, 0 silent wrong crystals.

Each corpus entry is one file (or folder entry) with what must come out of it: the exact SCOPE string where
the crystal is known (so a silently wrong reading fails), or an error matching a pattern that names the
reason. ``cloud-hf scope``, ``cloud-hf predict``, the pipeline and ``ScopeEncoder.map_dataset`` must give
exactly one row per input (per CIF block, per table row), in order. A hypothesis fuzz on the CIF and
POSCAR readers checks that no exception type but ``CrystalInputError`` escapes.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from cloud_hf.cli import main
from cloud_hf.errors import CrystalInputError
from cloud_hf.inputs import collect_crystals
from cloud_hf.property_heads import prediction_inputs, property_records
from cloud_hf.scope import ScopeEncoder
from cloud_hf.structures import load_cell, load_structure

ROCKSALT = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
ROCKSALT_SCOPE = "cF m-3m SG225 Na 4a Cl 4b"
CSCL_SCOPE = "cP m-3m SG221 Cl 1a Cs 1b"
MNO = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.445), ["Mn", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
MNO_SCOPE = "cF m-3m SG225 O 4a Mn 4b"
SILICON = Structure(Lattice([[0, 2.715, 2.715], [2.715, 0, 2.715], [2.715, 2.715, 0]]), ["Si", "Si"],
                    [[0, 0, 0], [0.25, 0.25, 0.25]])
SILICON_SCOPE = "cF m-3m SG227 Si 8a"
ATOMS_PER_CELL = {ROCKSALT_SCOPE: 8, CSCL_SCOPE: 2, MNO_SCOPE: 8, SILICON_SCOPE: 2}

CELL = """_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
"""
SITES = """loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na 0 0 0 {occupancy}
Cl1 {chlorine} 0.5 0.5 0.5 1
"""


def rocksalt_cif(symmetry: str, block: str = "nacl", occupancy: str = "1", chlorine: str = "Cl") -> str:
    """Rock salt's asymmetric unit (Na 0 0 0, Cl ½ ½ ½) with the space group given by ``symmetry`` lines only."""
    return f"data_{block}\n{CELL}{symmetry}{SITES.format(occupancy=occupancy, chlorine=chlorine)}"


def poscar(lattice: str, counts: str, coordinates: str, species: str | None = "Na Cl", comment: str = "hostile") -> str:
    species_line = f"{species}\n" if species is not None else ""
    return f"{comment}\n1.0\n{lattice}{species_line}{counts}\nDirect\n{coordinates}"


CUBIC = "5.64 0 0\n0 5.64 0\n0 0 5.64\n"
CSCL = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0.5, 0.5, 0.5], [0, 0, 0]])
KNOWN = {ROCKSALT_SCOPE: ROCKSALT, CSCL_SCOPE: CSCL, MNO_SCOPE: MNO, SILICON_SCOPE: SILICON}
"""Each crystal of the corpus by its canonical SCOPE string (for the reference-mode strings)."""


def magnetic_cif(operators: bool = True) -> str:
    """MnO rock salt as a magnetic CIF: its asymmetric unit (Mn 0 0 0 with a moment, O ½ ½ ½), the 48 point
    operations of m-3m as magnetic operators with the four F centerings (all +1), or no operators at all."""
    from pymatgen.symmetry.groups import SpaceGroup

    rotations: dict[tuple, str] = {}
    for operation in SpaceGroup("Fm-3m").symmetry_ops:
        rotations.setdefault(tuple(operation.rotation_matrix.flatten()), operation.as_xyz_str().replace(" ", ""))
    lines = ["data_MnO", *(line for line in CELL.replace("5.64", "4.445").splitlines()),
             "_space_group_magn.transform_BNS_Pp_abc 'a,b,c;0,0,0'"]
    if operators:
        lines += ["_space_group_magn.name_BNS 'Fm-3m.1'", "loop_", "_space_group_symop_magn_operation.id",
                  "_space_group_symop_magn_operation.xyz",
                  *(f"{index} {xyz},+1" for index, xyz in enumerate(rotations.values(), start=1)),
                  "loop_", "_space_group_symop_magn_centering.id", "_space_group_symop_magn_centering.xyz",
                  "1 x,y,z,+1", "2 x,y+1/2,z+1/2,+1", "3 x+1/2,y,z+1/2,+1", "4 x+1/2,y+1/2,z,+1"]
    lines += ["loop_", "_atom_site_label", "_atom_site_type_symbol", "_atom_site_fract_x", "_atom_site_fract_y",
              "_atom_site_fract_z", "_atom_site_occupancy", "Mn1 Mn 0 0 0 1", "O1 O 0.5 0.5 0.5 1",
              "loop_", "_atom_site_moment.label", "_atom_site_moment.crystalaxis_x",
              "_atom_site_moment.crystalaxis_y", "_atom_site_moment.crystalaxis_z", "Mn1 0 0 4.6"]
    return "\n".join(lines) + "\n"


def scaled_silicon_poscar(scale: str, cartesian: bool) -> str:
    """Diamond Si (primitive cell, a = 5.43 Å) as a POSCAR with the scale line ``scale``: ``"+"`` (a), ``"-"`` (the
    volume, negative) or ``"3"`` (three factors a, 2a, a/2); coordinates direct or Cartesian in the scaled units."""
    import numpy as np

    unit = np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    factors = {"+": [5.43] * 3, "-": [5.43] * 3, "3": [5.43, 10.86, 2.715]}[scale]
    lattice = unit * 5.43 / np.array(factors)
    positions = np.array([[0, 0, 0], [0.25, 0.25, 0.25]])
    coordinates = positions @ lattice if cartesian else positions
    scale_line = {"+": "5.43", "-": f"{-(5.43 ** 3) / 4:.10f}", "3": "5.43 10.86 2.715"}[scale]
    rows = lambda array: "\n".join(" ".join(f"{value:.10f}" for value in row) for row in array)  # noqa: E731
    return (f"Si diamond\n{scale_line}\n{rows(lattice)}\nSi\n2\n{'Cartesian' if cartesian else 'Direct'}\n"
            f"{rows(coordinates)}\n")


@dataclass
class Expected:
    """What one row must hold: ``scope`` exactly, or an ``error`` matching the pattern."""

    name: str
    scope: str | None = None
    error: str | None = None


def write_corpus(folder: Path) -> list[Expected]:
    """Write the hostile corpus into ``folder``; the expected rows of ``cloud-hf scope folder``, in order."""
    files: dict[str, bytes | str] = {
        "a_empty.cif": "",
        "b_binary.cif": bytes(range(256)) * 4,
        "c_truncated.cif": str(CifWriter(ROCKSALT))[:-40],
        "d_truncated_header.cif": "data_x\n_cell_length_a 5.64\n_cell_length_b",
        "e_nan.vasp": poscar(CUBIC, "1 1", "nan 0 0\n0.5 0.5 0.5\n"),
        "f_inf_lattice.vasp": poscar("inf 0 0\n0 5.64 0\n0 0 5.64\n", "1 1", "0 0 0\n0.5 0.5 0.5\n"),
        "g_huge_coordinate.vasp": poscar(CUBIC, "1 1", "1e300 0 0\n0.5 0.5 0.5\n"),
        "h_unknown_element.cif": rocksalt_cif("_space_group_IT_number 225\n", chlorine="Qq"),
        "i_disordered.cif": rocksalt_cif("_space_group_IT_number 225\n", occupancy="0.5"),
        "j_zero_occupancy.cif": rocksalt_cif("_space_group_IT_number 225\n", occupancy="0"),
        "k_overlapping.vasp": poscar(CUBIC, "1 1", "0 0 0\n0.01 0 0\n"),
        "l_zero_volume.vasp": poscar("5.64 0 0\n0 5.64 0\n0 0 0\n", "1 1", "0 0 0\n0.5 0.5 0.5\n"),
        "m_left_handed.vasp": poscar("5.64 0 0\n0 5.64 0\n0 0 -5.64\n", "4 4",
                                     "0 0 0\n0 0.5 0.5\n0.5 0 0.5\n0.5 0.5 0\n"
                                     "0.5 0.5 0.5\n0.5 0 0\n0 0.5 0\n0 0 0.5\n"),
        "n_two_blocks.cif": rocksalt_cif("_space_group_IT_number 225\n") + "\n"
                            + str(CifWriter(CSCL)).replace("data_CsCl", "data_second"),
        "o_it_number_only.cif": rocksalt_cif("_space_group_IT_number 225\n"),
        "p_old_it_number_only.cif": rocksalt_cif("_symmetry_Int_Tables_number 225\n"),
        "q_hall_only.cif": rocksalt_cif("_space_group_name_Hall '-F 4 2 3'\n"),
        "r2a_unknown_cell_length.cif": rocksalt_cif("_space_group_IT_number 225\n").replace(
            "_cell_length_c 5.64", "_cell_length_c ?"),
        "r2b_magnetic.mcif": magnetic_cif(),
        "r2c_magnetic_without_operators.mcif": magnetic_cif(operators=False),
        "r2d_volume_scaled_cartesian.vasp": scaled_silicon_poscar("-", cartesian=True),
        "r2e_three_scale_factors.vasp": scaled_silicon_poscar("3", cartesian=True),
        "r_hm_only.cif": rocksalt_cif("_symmetry_space_group_name_H-M 'F m -3 m'\n"),
        "s_vasp4_POSCAR": poscar(CUBIC, "1 1", "0 0 0\n0.5 0.5 0.5\n", species=None, comment="rock salt"),
        "t_vasp4_symbols_in_comment.vasp": str(Poscar(ROCKSALT)).replace("\nNa Cl\n", "\n", 1)
                                          .replace(str(Poscar(ROCKSALT)).splitlines()[0], "Na Cl", 1),
        "u_water_in_a_box.vasp": poscar("30 0 0\n0 30 0\n0 0 30\n", "1 2",
                                        "0.5 0.5 0.5\n0.5253 0.5 0.5\n0.4935 0.5253 0.5\n", species="O H"),
        "v_bad_line.jsonl": "\n".join([
            json.dumps({"id": "good-1", "structure": ROCKSALT.as_dict()}),
            '{"id": "bad", "structure": {"lattice": ',
            json.dumps({"id": "good-3", "structure": CSCL.as_dict()}),
        ]) + "\n",
        "w_header_only.csv": "id,structure\n",
        "x_table.csv": "",  # written below with pandas quoting
        "y_corrupt.csv.gz": gzip.compress(b"id,structure\nnacl,abc\n")[:-12],
        "z_\u00f1_\u6676\u4f53.cif": str(CifWriter(ROCKSALT)),
    }
    folder.mkdir()
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    bad_value = ROCKSALT.as_dict()
    bad_value["sites"][0]["abc"] = ["a", 0, 0]
    import pandas as pd

    pd.DataFrame({"id": ["bad-value", "fine"], "structure": [json.dumps(bad_value), json.dumps(ROCKSALT.as_dict())]}).to_csv(
        folder / "x_table.csv", index=False
    )
    (folder / "zz_subfolder").mkdir()
    (folder / "zz_subfolder" / "hidden_inside.cif").write_text(str(CifWriter(ROCKSALT)))
    (folder / "zzz_loop").symlink_to(folder / "zzz_loop")

    def at(name: str) -> str:
        return str(folder / name)

    return sorted([  # in the folder's order (file names sorted; blocks and table rows in file order)
        Expected(at("a_empty.cif"), error=r"unreadable structure file|no _atom_site|unreadable or malformed"),
        Expected(at("b_binary.cif"), error=r"unreadable or malformed CIF: line 1: expected block header"),
        Expected(at("c_truncated.cif"), error=r"unreadable or malformed CIF: line \d+: .*\(is the file truncated\?\)"),
        Expected(at("d_truncated_header.cif"), error=r"unreadable or malformed CIF: line \d+: .*truncated"),
        Expected(at("e_nan.vasp"), error=r"NaN or infinite|unreadable structure file"),
        Expected(at("f_inf_lattice.vasp"), error=r"NaN or infinite|infinite or too large|unreadable structure file"),
        Expected(at("g_huge_coordinate.vasp"), error=r"beyond ±1000 \(a corrupt coordinate\)"),
        Expected(at("h_unknown_element.cif"), error=r"unknown element 'Qq' at _atom_site row 2 \(label 'Cl1'\)"),
        Expected(at("i_disordered.cif"), error=r"disordered site at _atom_site row 1 \(label 'Na1'\) \(occupancy 0\.5\)"),
        Expected(at("j_zero_occupancy.cif"), error=r"_atom_site row 1 \(label 'Na1'\) has occupancy 0"),
        Expected(at("k_overlapping.vasp"), error=r"overlapping atoms: sites 0 and 1 are 0\.056 Å apart"),
        Expected(at("l_zero_volume.vasp"), error=r"degenerate lattice|unreadable structure file"),
        Expected(at("m_left_handed.vasp"), scope=ROCKSALT_SCOPE),
        Expected(at("n_two_blocks.cif") + ":nacl", scope=ROCKSALT_SCOPE),
        Expected(at("n_two_blocks.cif") + ":second", scope=CSCL_SCOPE),
        Expected(at("o_it_number_only.cif"), scope=ROCKSALT_SCOPE),
        Expected(at("p_old_it_number_only.cif"), scope=ROCKSALT_SCOPE),
        Expected(at("q_hall_only.cif"), scope=ROCKSALT_SCOPE),
        Expected(at("r_hm_only.cif"), scope=ROCKSALT_SCOPE),
        Expected(at("r2a_unknown_cell_length.cif"), error=r"the cell is not given: _cell_length_c is unknown \('\?'\)"),
        Expected(at("r2b_magnetic.mcif"), scope=MNO_SCOPE),
        Expected(at("r2c_magnetic_without_operators.mcif"), error=r"a magnetic CIF \(tags .*\) without magnetic "
                 r"symmetry operators"),
        Expected(at("r2d_volume_scaled_cartesian.vasp"), scope=SILICON_SCOPE),
        Expected(at("r2e_three_scale_factors.vasp"), scope=SILICON_SCOPE),
        Expected(at("s_vasp4_POSCAR"), error=r"VASP 4 POSCAR without a species line"),
        Expected(at("t_vasp4_symbols_in_comment.vasp"), scope=ROCKSALT_SCOPE),
        Expected(at("u_water_in_a_box.vasp"), error=r"an isolated cluster \(a molecule in a box\), not a crystal"),
        Expected(at("v_bad_line.jsonl") + ":good-1", scope=ROCKSALT_SCOPE),
        Expected(at("v_bad_line.jsonl") + ":1", error=r"line 2 of .*v_bad_line\.jsonl is not valid JSON"),
        Expected(at("v_bad_line.jsonl") + ":good-3", scope=CSCL_SCOPE),
        Expected(at("w_header_only.csv"), error=r"the table has no rows \(a header only\)"),
        Expected(at("x_table.csv") + ":bad-value", error=r"malformed pymatgen structure dict: could not convert string to float: .*'a'"),
        Expected(at("x_table.csv") + ":fine", scope=ROCKSALT_SCOPE),
        Expected(at("y_corrupt.csv.gz"), error=r"y_corrupt\.csv\.gz: unreadable table \((EOFError|BadGzipFile)"),
        Expected(at("z_\u00f1_\u6676\u4f53.cif"), scope=ROCKSALT_SCOPE),
        Expected(at("zz_subfolder"), error=r"a subfolder, not read"),
        Expected(at("zzz_loop"), error=r"a broken symbolic link or a symlink loop"),
    ], key=lambda item: item.name.split(":")[0])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[Expected]]:
    folder = tmp_path_factory.mktemp("hostile") / "corpus"
    return folder, write_corpus(folder)


def assert_rows(rows: list[tuple[str, str | None, str | None]], expected: list[Expected], value_is_scope: bool = True) -> None:
    """``rows`` of (name, value, error): one per expected row, in order, each with its value or its error."""
    assert [name for name, _, _ in rows] == [item.name for item in expected]
    for (name, value, error), item in zip(rows, expected):
        if item.scope is not None:
            assert error is None, f"{name}: unexpected error {error}"
            if value_is_scope:
                assert value == item.scope, name
            else:
                assert value, name
        else:
            assert value is None or value == "", f"{name}: a value where an error was expected"
            assert error and re.search(item.error, error), f"{name}: error {error!r} does not match {item.error!r}"


def test_collected_inputs_are_one_per_file_block_and_table_row(corpus):
    folder, expected = corpus
    assert [item.name for item in collect_crystals([folder])] == [item.name for item in expected]


@pytest.mark.parametrize("num_proc", [1, 2])
def test_cloud_hf_scope_gives_one_row_per_input(corpus, tmp_path, num_proc):
    folder, expected = corpus
    output = tmp_path / "scope.jsonl"
    assert main(["scope", str(folder), "--output", str(output), "--num-proc", str(num_proc)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert_rows([(row["id"], row["scope"], row["error"]) for row in rows], expected)


def test_cloud_hf_scope_reference_mode_reads_the_same_crystals(corpus, tmp_path):
    folder, expected = corpus
    output = tmp_path / "scope.jsonl"
    assert main(["scope", str(folder), "--mode", "reference", "--output", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    reference = {scope: ScopeEncoder(mode="reference").encode(crystal) for scope, crystal in KNOWN.items()}
    reference_expected = [Expected(item.name, scope=reference[item.scope]) if item.scope else item for item in expected]
    # reference mode accepts disorder, as the reference encoder does: that row has a string there
    disordered = next(i for i, item in enumerate(expected) if item.name.endswith("i_disordered.cif"))
    assert rows[disordered]["scope"].endswith("| 4a 4b | Na 0.33 Cl 0.67")
    del rows[disordered], reference_expected[disordered]
    assert_rows([(row["id"], row["scope"], row["error"]) for row in rows], reference_expected)


def test_cloud_hf_predict_gives_one_row_per_input(corpus, tmp_path, capsys):
    import cloud_hf

    folder, expected = corpus
    output = tmp_path / "predictions.jsonl"
    code = main(["predict", str(folder), "--model", str(cloud_hf.BUNDLED_MODEL_DIR), "--output", str(output)])
    assert code == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert_rows([(row["input"], row["properties"] or None, row["error"]) for row in rows], expected, value_is_scope=False)
    for row, item in zip(rows, expected):  # the right crystal: rock salt's conventional cell has 8 atoms, not 2
        if item.scope is not None:
            assert row["n_atoms"] == ATOMS_PER_CELL[item.scope], row["input"]
    n_failed = sum(item.error is not None for item in expected)
    assert f"{len(expected) - n_failed} ok, {n_failed} failed" in capsys.readouterr().out


def test_pipeline_gives_one_result_per_crystal(corpus):
    from transformers import pipeline

    import cloud_hf

    folder, expected = corpus
    items = [item for item in collect_crystals([folder]) if item.error is None]
    by_name = {item.name: item for item in expected}
    results = pipeline("crystal-property-prediction", model=cloud_hf.BUNDLED_MODEL_DIR)(
        [item.crystal for item in items], batch_size=4
    )
    assert len(results) == len(items)
    rows = [(item.name, result["properties"] if result["error"] is None else None, result["error"])
            for item, result in zip(items, results)]
    assert_rows(rows, [by_name[item.name] for item in items], value_is_scope=False)
    for item, result in zip(items, results):
        if by_name[item.name].scope is not None:
            assert result["n_atoms"] == ATOMS_PER_CELL[by_name[item.name].scope], item.name


def test_map_dataset_gives_one_row_per_table_row(corpus):
    folder, expected = corpus
    items = list(collect_crystals([folder]))
    texts = [None if item.error else (item.crystal.read_text(errors="replace") if isinstance(item.crystal, Path)
                                      else item.crystal) for item in items]
    table = Dataset.from_dict({"id": [item.name for item in items], "structure": texts})
    encoded = ScopeEncoder().map_dataset(table, input_column="structure", id_column="id", batch_size=5)
    assert encoded["id"] == [item.name for item in expected]
    for item, text, scope, error in zip(expected, texts, encoded["scope"], encoded["scope_error"]):
        if text is None:  # failed before reading: the map sees an empty cell
            assert scope is None and error.endswith("empty 'structure' value")
        elif item.scope is not None:
            assert (scope, error) == (item.scope, None), item.name
        else:
            assert scope is None and error.startswith(f"id={item.name}: "), item.name


def test_any_exception_of_one_row_stays_in_its_row(monkeypatch):
    """A MemoryError (one huge cell) or any other exception type inside the encoder is one row's error."""
    import cloud_hf.scope.encoder as encoder_module

    def explode(obj, name=None, min_distance=None):
        if obj == "huge":
            raise MemoryError("cannot allocate 34 GiB")
        if obj == "odd":
            raise KeyError("lattice")
        return load_cell(obj, name=name)

    monkeypatch.setattr(encoder_module, "load_cell", explode)
    encoder = ScopeEncoder()
    assert encoder.encode_many(["huge", ROCKSALT, "odd"], ids=["a", "b", "c"]) == [
        (None, "a: unexpected MemoryError: cannot allocate 34 GiB"),
        (ROCKSALT_SCOPE, None),
        (None, "c: unexpected KeyError: missing key 'lattice'"),
    ]
    table = Dataset.from_dict({"id": ["a", "b"], "cif": ["huge", ROCKSALT.to(fmt="cif")]})
    encoded = encoder.map_dataset(table, id_column="id")
    assert encoded["scope_error"] == ["id=a: unexpected MemoryError: cannot allocate 34 GiB", None]


# --- fuzz: the readers raise the package's error and nothing else -------------------------------------

ROCKSALT_CIF = str(CifWriter(ROCKSALT, symprec=0.1))
ROCKSALT_POSCAR = str(Poscar(ROCKSALT))


def mutated(text: str) -> st.SearchStrategy[str]:
    """``text`` with random cuts, deleted or inserted characters, and numbers replaced by hostile ones."""
    hostile_numbers = st.sampled_from(["nan", "inf", "-inf", "1e300", "-1e300", "0", "-0.0", "1e-300", "?", ".", "1/0"])

    @st.composite
    def build(draw):
        result = text
        for _ in range(draw(st.integers(1, 4))):
            action = draw(st.sampled_from(["cut", "delete", "insert", "number", "line"]))
            if action == "cut":
                result = result[: draw(st.integers(0, len(result)))]
            elif action == "delete" and result:
                start = draw(st.integers(0, len(result) - 1))
                result = result[:start] + result[start + draw(st.integers(1, 20)):]
            elif action == "insert":
                start = draw(st.integers(0, len(result)))
                result = result[:start] + draw(st.text(max_size=12)) + result[start:]
            elif action == "number":
                numbers = list(re.finditer(r"-?\d+\.?\d*", result))
                if numbers:
                    match = draw(st.sampled_from(numbers))
                    result = result[: match.start()] + draw(hostile_numbers) + result[match.end():]
            else:
                lines = result.splitlines()
                if lines:
                    index = draw(st.integers(0, len(lines) - 1))
                    lines.insert(index, lines[draw(st.integers(0, len(lines) - 1))])
                    result = "\n".join(lines)
        return result

    return build()


def assert_only_crystal_input_errors(text: str) -> None:
    for read in (load_cell, load_structure, ScopeEncoder().encode):
        with contextlib.suppress(CrystalInputError):  # any other exception type fails the test
            read(text)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(ROCKSALT_CIF))
def test_fuzzed_cif_raises_only_crystal_input_error(text):
    assert_only_crystal_input_errors(text)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(ROCKSALT_POSCAR))
def test_fuzzed_poscar_raises_only_crystal_input_error(text):
    assert_only_crystal_input_errors(text)


# --- round two (issue 21): temperatures, output paths and formats --------------------------------------


@pytest.fixture(scope="module")
def bundled_predictor():
    from transformers import pipeline

    import cloud_hf

    return pipeline("crystal-property-prediction", model=cloud_hf.BUNDLED_MODEL_DIR)


def heat_capacity_temperatures(result: dict) -> list[float]:
    return [record["temperature"] for record in result["properties"] if record["property"] == "heat_capacity"]


@pytest.mark.parametrize("temperatures, expected", [
    (np.float32(300), [300.0]),
    (np.float64(250.5), [250.5]),
    (torch.tensor(300.0), [300.0]),
    (torch.tensor([100.0, 300.0]), [100.0, 300.0]),
    (np.array([50, 300]), [50.0, 300.0]),
    ((10, 20.5), [10.0, 20.5]),
    (300, [300.0]),
])
def test_temperatures_are_any_real_scalar_or_1d_array_like(bundled_predictor, temperatures, expected):
    assert heat_capacity_temperatures(bundled_predictor(ROCKSALT, temperatures=temperatures)) == expected


@pytest.mark.parametrize("temperatures, message", [
    ("123", "temperatures must be a number or a list of numbers (K), got the string '123'"),
    ("300", "temperatures must be a number or a list of numbers (K), got the string '300'"),
    (["300", "400"], "temperatures must be real numbers (K), got ['300', '400']"),
    ([True], "temperatures must be real numbers (K), got [True]"),
    ([[100.0, 300.0]], "temperatures must be a number or a 1-D list of numbers (K), got shape (1, 2)"),
    ([], "temperatures must hold at least one temperature (K)"),
    ([300.0, 1e39], "temperatures must lie between 0.001 K and 1e+06 K (outside, float32 under- or overflows), "
                    "got [1e+39]"),
    ([1e-46], "temperatures must lie between 0.001 K and 1e+06 K (outside, float32 under- or overflows), "
              "got [1e-46]"),
    ([1e-320], "temperatures must lie between 0.001 K and 1e+06 K (outside, float32 under- or overflows), "
               "got [1e-320]"),
    ([0.0, -1.0], "temperatures must be finite and > 0 K, got [0.0, -1.0]"),
])
def test_bad_temperatures_are_one_clear_data_error_before_any_work(bundled_predictor, temperatures, message):
    from cloud_hf.errors import CloudDataError

    with pytest.raises(CloudDataError) as raised:
        bundled_predictor([ROCKSALT, CSCL], temperatures=temperatures)
    assert str(raised.value) == message


@pytest.mark.parametrize("value", ["1e39", "1e-46", "1e-320", "inf"])
def test_extreme_temperatures_are_an_argument_error_on_the_command_line(tmp_path, capsys, value):
    cif = tmp_path / "nacl.cif"
    cif.write_text(ROCKSALT_CIF)
    assert main(["predict", str(cif), "--temperatures", "300", value]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("error: --temperatures must ") and "got [" in line


def test_the_debye_model_checks_temperatures_in_float64():
    """A value that is > 0 in float64 but 0 in float32 is refused, not silently computed at 0 K."""
    from cloud_hf.errors import CloudDataError
    from cloud_hf.validation import check_temperatures

    with pytest.raises(CloudDataError, match=r"got \[1e-320\]"):
        check_temperatures([300.0, 1e-320], torch.zeros(1))
    assert check_temperatures([300.0, 5.0], torch.zeros(1)).dtype == torch.float32


def unwritable_outputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Output paths that cannot be written, with the reason each message must give."""
    a_file = tmp_path / "a_file.csv"
    a_file.write_text("x")
    a_folder = tmp_path / "a_folder.csv"
    a_folder.mkdir(exist_ok=True)
    return {
        "under /proc": (Path("/proc/cloud_hf_x.csv"), "cannot write there: "),
        "under a file": (a_file / "x.csv", "cannot write there: "),
        "a folder": (a_folder, "a folder, not a file"),
        "no suffix": (tmp_path / "out", "the suffix (none) names no table format; use .csv, .json or .jsonl"),
        "unknown suffix": (tmp_path / "out.txt", "the suffix .txt names no table format; use .csv, .json or .jsonl"),
    }


@pytest.mark.parametrize("case", ["under /proc", "under a file", "a folder", "no suffix", "unknown suffix"])
@pytest.mark.parametrize("command", ["scope", "predict"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, monkeypatch, command, case):
    import cloud_hf.inputs

    path, reason = unwritable_outputs(tmp_path)[case]
    monkeypatch.setattr(cloud_hf.inputs, "collect_crystals", lambda *a, **k: pytest.fail("inputs read"))
    assert main([command, str(tmp_path), "--output", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --output {path}: {reason}")


@pytest.mark.parametrize("case, reason", [
    ("under a file", "cannot write there: "),
    ("unknown suffix", "the suffix .jpg names no plot format; use .png, .pdf or .svg"),
])
def test_a_plot_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, case, reason):
    path = {"under a file": unwritable_outputs(tmp_path)["under a file"][0].with_suffix(".png"),
            "unknown suffix": tmp_path / "curves.jpg"}[case]
    assert main(["predict", str(tmp_path), "--plot", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --plot {path}: {reason}")


def test_scope_creates_the_output_folder_as_predict_does(tmp_path):
    cif = tmp_path / "nacl.cif"
    cif.write_text(ROCKSALT_CIF)
    output = tmp_path / "new" / "folder" / "scope.csv"
    assert main(["scope", str(cif), "--output", str(output)]) == 0
    assert output.read_text().splitlines() == ["id,scope,error", f"{cif},{ROCKSALT_SCOPE},"]


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl"])
@pytest.mark.parametrize("command", ["scope", "predict"])
def test_the_output_format_is_the_one_its_suffix_names(tmp_path, command, suffix):
    import pandas as pd

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_nacl.cif").write_text(ROCKSALT_CIF)
    (folder / "b_junk.cif").write_text("not a crystal")
    output = tmp_path / f"out{suffix}"
    assert main([command, str(folder), "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    if suffix == ".json":
        rows = json.loads(text)
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
    else:
        rows = pd.read_csv(output).replace({np.nan: None}).to_dict("records")
    key = "id" if command == "scope" else "input"
    assert [row[key] for row in rows] == [str(folder / "a_nacl.cif"), str(folder / "b_junk.cif")]
    assert rows[0]["error"] is None and rows[1]["error"].startswith(str(folder / "b_junk.cif"))
    assert rows[0]["scope"] == ROCKSALT_SCOPE and rows[1]["scope"] is None


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_the_plot_format_is_the_one_its_suffix_names(tmp_path, suffix, magic):
    cif = tmp_path / "nacl.cif"
    cif.write_text(ROCKSALT_CIF)
    plot = tmp_path / f"curves{suffix}"
    assert main(["predict", str(cif), "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(magic)


# --- round two: unknown cell values, magnetic CIFs, scaled POSCARs ----------------------------------------

CELL_TAGS = ["_cell_length_a", "_cell_length_b", "_cell_length_c",
             "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma"]
CARTESIAN_SITES = SITES.replace("_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z",
                                "_atom_site_Cartn_x\n_atom_site_Cartn_y\n_atom_site_Cartn_z")


@pytest.mark.parametrize("sites", ["fractional", "Cartesian"])  # read by gemmi, or by pymatgen
@pytest.mark.parametrize("value, problem", [("?", "unknown ('?')"), (".", "inapplicable ('.')"), (None, "missing"),
                                            ("abc", "not a number ('abc')")])
@pytest.mark.parametrize("tag", CELL_TAGS)
def test_an_unknown_or_missing_cell_value_is_an_error_naming_the_tag(tag, value, problem, sites):
    """Never gemmi's default 1 Å / 90° cell: bcc Fe with `_cell_length_a ?` used to encode as cI m-3m."""
    cell = "".join(line + "\n" for line in CELL.splitlines() if not line.startswith(f"{tag} "))
    if value is not None:
        cell += f"{tag} {value}\n"
    text = rocksalt_cif("_space_group_IT_number 225\n").replace(CELL, cell)
    if sites == "Cartesian":
        text = text.replace(SITES.format(occupancy=1, chlorine="Cl"), CARTESIAN_SITES.format(occupancy=1, chlorine="Cl"))
    message = (f"CIF data_nacl: the cell is not given: {tag} is {problem}; a CIF must give all three cell "
               "lengths (Å) and angles (°)")
    for read in (load_cell, load_structure, ScopeEncoder().encode, ScopeEncoder(mode="reference").encode):
        with pytest.raises(CrystalInputError) as raised:
            read(text)
        assert str(raised.value) == message, read


@pytest.mark.parametrize("suffix", [".mcif", ".cif"])
def test_a_magnetic_cif_is_expanded_by_its_magnetic_operators(tmp_path, suffix):
    path = tmp_path / f"MnO{suffix}"
    path.write_text(magnetic_cif())
    for crystal in (path, magnetic_cif()):
        assert len(load_cell(crystal)) == 8 and len(load_structure(crystal)) == 8
        assert ScopeEncoder().encode(crystal) == MNO_SCOPE  # not cP m-3m SG221 O 1a Mn 1b (P1, 2 atoms)


def test_a_magnetic_cif_whose_operators_cannot_be_read_is_refused():
    for read in (load_cell, load_structure, ScopeEncoder().encode):
        with pytest.raises(CrystalInputError, match=r"^CIF data_MnO: a magnetic CIF \(tags _space_group_magn\."
                                                     r"transform_bns_pp_abc\) without magnetic symmetry operators"):
            read(magnetic_cif(operators=False))


@pytest.mark.parametrize("cartesian", [False, True], ids=["direct", "Cartesian"])
@pytest.mark.parametrize("scale", ["+", "-", "3"], ids=["scale", "volume", "three-factors"])
def test_poscar_scale_factors_are_read_as_ase_reads_them(scale, cartesian):
    import io

    import numpy as np
    from ase.io import read

    text = scaled_silicon_poscar(scale, cartesian)
    atoms = read(io.StringIO(text), format="vasp")
    for reader in (load_cell, load_structure):
        crystal = reader(text)
        lattice = crystal.lattice if reader is load_cell else crystal.lattice.matrix
        np.testing.assert_allclose(lattice, atoms.cell.array, atol=1e-8)
        np.testing.assert_allclose(crystal.frac_coords, atoms.get_scaled_positions(wrap=False), atol=1e-8)
    assert ScopeEncoder().encode(text) == SILICON_SCOPE  # a volume-scaled Cartesian file was hR -3m SG166 Si 6c


@pytest.mark.parametrize("scale_line, message", [
    ("5.43 -1 1", r"three scale factors \['5\.43', '-1', '1'\]; they must all be > 0"),
    ("0", r"scale factor 0"),
])
def test_impossible_poscar_scale_factors_are_refused(scale_line, message):
    text = scaled_silicon_poscar("+", cartesian=False).replace("\n5.43\n", f"\n{scale_line}\n", 1)
    with pytest.raises(CrystalInputError, match=message):
        load_cell(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(magnetic_cif()))
def test_fuzzed_magnetic_cif_raises_only_crystal_input_error(text):
    assert_only_crystal_input_errors(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(scaled_silicon_poscar("-", cartesian=True)))
def test_fuzzed_volume_scaled_poscar_raises_only_crystal_input_error(text):
    assert_only_crystal_input_errors(text)


# --- round two: row ids ------------------------------------------------------------------------------------


def write_table(path: Path, ids: list) -> None:
    """A table of rock salt rows with the given ids (None: the id cell is empty), in the format of the suffix."""
    import csv

    records = [{"id": value, "structure": ROCKSALT_CIF} for value in ids]
    if path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            csv.DictWriter(handle, fieldnames=["id", "structure"]).writerows([{"id": "id", "structure": "structure"},
                                                                              *records])
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    else:
        path.write_text(json.dumps(records))


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl"])
@pytest.mark.parametrize("ids, expected", [
    ([1, None, 3], ["1", "1#2", "3"]),  # the row without an id was "1", the first row's id; the others "1.0", "3.0"
    (["a", "a", "a#2", "b"], ["a", "a#3", "a#2", "b"]),  # a duplicate never takes an id written in the table
    (["007", "7"], ["007", "7"]),
    ([None, None], ["0", "1"]),
])
def test_row_ids_are_unique_and_as_written(tmp_path, suffix, ids, expected):
    from cloud_hf.data import read_table

    path = tmp_path / f"table{suffix}"
    write_table(path, ids)
    assert list(read_table(path)["id"]) == expected
    output = tmp_path / "scope.jsonl"
    assert main(["scope", str(path), "--output", str(output)]) == 0
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == [f"{path}:{i}" for i in expected]


def test_a_json_object_of_records_keeps_its_keys_as_ids(tmp_path):
    from cloud_hf.data import read_table

    path = tmp_path / "by_key.json"
    path.write_text(json.dumps({"mp-22862": {"structure": ROCKSALT_CIF}, "mp-22865": {"structure": ROCKSALT_CIF}}))
    assert list(read_table(path)["id"]) == ["mp-22862", "mp-22865"]


# --- round two: many temperatures ----------------------------------------------------------------------------


def test_many_temperatures_run_in_chunks_with_the_records_of_one_call(bundled_predictor):
    """600 temperatures (3 model calls of TEMPERATURES_PER_CALL) give the records one call at all of them gives."""
    from cloud_hf.pipeline_cloud import TEMPERATURES_PER_CALL

    temperatures = np.linspace(5.0, 1500.0, 600).tolist()
    assert len(temperatures) > 2 * TEMPERATURES_PER_CALL
    processor, model = bundled_predictor.processor, bundled_predictor.model
    batch = processor([ROCKSALT, CSCL], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**batch, **prediction_inputs(model, batch.n_atoms, temperatures))
    expected = property_records(model, outputs, batch.n_atoms.tolist(), temperatures)
    results = bundled_predictor([ROCKSALT, CSCL], temperatures=temperatures, batch_size=2)
    for result, crystal in zip(results, expected):
        assert [(r["property"], r.get("temperature")) for r in result["properties"]] == \
               [(r["property"], r.get("temperature")) for r in crystal]
        np.testing.assert_allclose([r["value"] for r in result["properties"]], [r["value"] for r in crystal],
                                   rtol=1e-5, atol=1e-6)


def test_temperature_chunks_keep_temperature_independent_records_in_place():
    from cloud_hf.pipeline_cloud import join_temperature_chunks

    def chunk(temperatures):
        return [{"property": "theta"}, *({"property": "cv", "temperature": t} for t in temperatures),
                {"property": "agl"}]

    joined = join_temperature_chunks([chunk([1, 2]), chunk([3])])
    assert [(r["property"], r.get("temperature")) for r in joined] == [
        ("theta", None), ("cv", 1), ("cv", 2), ("cv", 3), ("agl", None)]


# --- round two: slabs and 2-D layers ------------------------------------------------------------------------


def graphene(height: float) -> Structure:
    """A graphene sheet in a hexagonal cell ``height`` Å high (3.35 Å: graphite's layer spacing, AA stacked)."""
    return Structure(Lattice.hexagonal(2.46, height), ["C", "C"], [[0, 0, 0.5], [1 / 3, 2 / 3, 0.5]])


@pytest.mark.parametrize("height", [20.0, 500.0])
def test_a_model_reading_cell_descriptors_refuses_a_layer_in_vacuum(bundled_predictor, height):
    """C_v per atom of one graphene sheet moved from 13.9 to 23.9 J/(mol·K) with its cell height: now a row error."""
    result = bundled_predictor(graphene(height))
    assert result["properties"] == []
    assert result["error"] == (
        f"Structure: a slab or layer in vacuum (an atom-free slab {height:.1f} Å thick along lattice direction c, "
        "more than 7 Å, cloud_hf.cell_descriptors.VACUUM_GAP); this model reads the cell's volume per atom and "
        "density, which the vacuum sets, so it does not predict slabs, 2-D layers or wires: give the bulk crystal")
    assert ScopeEncoder().encode(graphene(height)) == "hP 6/mmm SG191 C 2c"  # SCOPE itself has no cell: it passes


def test_a_layered_bulk_crystal_is_predicted(bundled_predictor):
    result = bundled_predictor(graphene(3.35))
    assert result["error"] is None and result["properties"]


# --- round two: messages and contradictions --------------------------------------------------------------


def test_a_cif_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.cif"
    path.write_bytes(b"\xef\xbb\xbf" + ROCKSALT_CIF.encode())
    assert ScopeEncoder().encode(path) == ROCKSALT_SCOPE
    assert ScopeEncoder().encode("\ufeff" + ROCKSALT_CIF) == ROCKSALT_SCOPE


def test_cif_text_in_a_vasp_file_is_read_as_cif(tmp_path):
    path = tmp_path / "nacl.vasp"
    path.write_text(ROCKSALT_CIF)
    assert ScopeEncoder().encode(path) == ROCKSALT_SCOPE and len(load_structure(path)) == 8


def test_an_occupancy_above_one_is_not_called_partial():
    with pytest.raises(CrystalInputError, match=r"_atom_site row 1 \(label 'Na1'\) has occupancy 2, more than 1"):
        load_cell(rocksalt_cif("_space_group_IT_number 225\n", occupancy="2"))


@pytest.mark.parametrize("text, message", [
    (poscar(CUBIC, "1 1", "0 0 0\n", species="Na Cl"), r"counts \(1 1\) give 2 atoms but 1 coordinate lines follow"),
    (poscar(CUBIC, "1 1", "0 0 0\n0.5 0.5 0.5\n", species="Na Cl K"),
     r"line 6 names 3 species \(Na Cl K\) but line 7 gives 2 atom counts \(1 1\)"),
])
def test_poscar_count_mismatches_are_named(text, message):
    for read in (load_cell, load_structure):
        with pytest.raises(CrystalInputError, match=message):
            read(text)


def test_a_structure_column_is_found_whatever_its_case(tmp_path):
    from cloud_hf.data import read_table

    path = tmp_path / "table.csv"
    import pandas as pd

    pd.DataFrame({"ID": ["x"], "Structure": [ROCKSALT_CIF]}).to_csv(path, index=False)
    assert read_table(path)["structure"] == [ROCKSALT_CIF]


def test_scope_angle_tolerance_must_be_a_positive_angle(tmp_path, capsys):
    assert main(["scope", str(tmp_path), "--angle-tolerance", "-5"]) == 2
    assert capsys.readouterr().err.strip() == "error: angle_tolerance must be an angle in degrees between 0 and 180, got -5.0"


def test_map_dataset_refuses_to_overwrite_its_input_column():
    table = Dataset.from_dict({"cif": [ROCKSALT_CIF]})
    with pytest.raises(ValueError, match=r"input_column 'cif', output_column 'cif' and error_column 'scope_error' must "
                                         r"differ: the map would overwrite its input"):
        ScopeEncoder().map_dataset(table, input_column="cif", output_column="cif")


@pytest.mark.parametrize("name, separator, message", [
    ("table.csv", "\t", r"the header line is separated by tabs, not commas \(a tab-separated file\?\)"),
    ("table.csv", ";", r"the header line is separated by semicolons, not commas \(a semicolon-separated file\?\)"),
    ("table.tsv", "\t", r"a tab-separated table; tables are read as comma-separated CSV"),
])
def test_a_tab_or_semicolon_separated_table_is_one_line_naming_the_delimiter(tmp_path, name, separator, message):
    """pandas' "Expected 1 fields in line 19, saw 3\\n" ended up, newline and all, inside the row's error."""
    import pandas as pd

    from cloud_hf.data import DataError, read_table

    path = tmp_path / name
    pd.DataFrame({"id": ["a", "b"], "structure": [ROCKSALT_CIF] * 2}).to_csv(path, sep=separator, index=False)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: {message}"):
        read_table(path)
    (row,) = collect_crystals([path])
    assert row.name == str(path) and "\n" not in row.error and re.search(message, row.error)


def test_a_crystal_refused_for_its_length_prints_no_transformers_warning():
    """transformers warned "... indexing errors" for a string the processor refuses anyway."""
    from cloud_hf.data import TokenMapper
    from cloud_hf.processing_cloud import CloudProcessor
    from cloud_hf.tokenization_cloud import build_canonical_tokenizer

    tokenizer = build_canonical_tokenizer(model_max_length=8)  # warns once per tokenizer: a fresh one
    long_scope = "oP mmm SG47 Na 1a Cl 1b K 1c Li 1d Rb 1e"
    batch = CloudProcessor(tokenizer, max_length=8)(scopes=[long_scope])
    assert batch.errors == [f"15 tokens, longer than the model's 8 positions (SCOPE string '{long_scope}')"]
    rows = TokenMapper(tokenizer, max_length=8)({"scope": [long_scope], "error": [None], "id": ["x"]})
    assert rows["error"] == [f"id 'x': 15 tokens, longer than the model's 8 positions (SCOPE string '{long_scope}')"]
    assert "sequence-length-is-longer-than-the-specified-maximum" not in tokenizer.deprecation_warnings


NOBLE_GASES = ("He", "Ne", "Ar", "Kr", "Xe")


@pytest.mark.parametrize("symbol", NOBLE_GASES)
def test_noble_gases_print_no_electronegativity_warning(bundled_predictor, symbol):
    """pymatgen warned "No Pauling electronegativity for Ar. Setting to NaN" when the formula was written."""
    import warnings

    from pymatgen.core.periodic_table import Element

    Element(symbol).__dict__.pop("X", None)  # pymatgen caches X (and warns) once per element and process
    crystal = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.3), [symbol], [[0, 0, 0]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = bundled_predictor(crystal)
    assert result["formula"] == symbol and result["error"] is None
    assert not [warning for warning in caught if "electronegativity" in str(warning.message)]


def symmetry_operators(name: str) -> str:
    """A ``_space_group_symop_operation_xyz`` loop with every operation of the space group ``name`` (gemmi)."""
    import gemmi

    triplets = [operation.triplet() for operation in gemmi.SpaceGroup(name).operations()]
    return "loop_\n_space_group_symop_operation_xyz\n" + "\n".join(triplets) + "\n"


@pytest.mark.parametrize("symmetry, expected, disagreement", [
    (symmetry_operators("F m -3 m") + "_symmetry_space_group_name_H-M 'P m -3 m'\n_space_group_IT_number 221\n",
     ROCKSALT_SCOPE, "symmetry operators (192): F m -3 m (SG 225); H-M name 'P m -3 m': P m -3 m (SG 221); IT "
                     "number 221); read with the symmetry operators: F m -3 m (SG 225)"),
    ("_space_group_name_Hall '-P 4 2 3'\n_symmetry_space_group_name_H-M 'F m -3 m'\n", "cP m-3m SG221 Na 1a Cl 1b",
     "Hall symbol '-P 4 2 3': P m -3 m (SG 221); H-M name 'F m -3 m': F m -3 m (SG 225)); read with the Hall "
     "symbol: P m -3 m (SG 221)"),
    ("_symmetry_space_group_name_H-M 'F m -3 m'\n_space_group_IT_number 221\n", ROCKSALT_SCOPE,
     "H-M name 'F m -3 m': F m -3 m (SG 225); IT number 221); read with the H-M name: F m -3 m (SG 225)"),
])
def test_a_cif_whose_symmetry_disagrees_with_itself_warns_which_wins(caplog, symmetry, expected, disagreement):
    """Operators, Hall symbol, H-M name and IT number that disagree were resolved in silence."""
    cif = rocksalt_cif(symmetry)
    with caplog.at_level("WARNING", logger="cloud_hf.structures"):
        assert ScopeEncoder().encode(cif) == expected
    assert caplog.messages == [
        f"CIF data_nacl: the CIF's symmetry disagrees with itself ({disagreement} (rule: symmetry operators, else "
        "Hall symbol, else H-M name, else IT number)"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="cloud_hf.structures"):
        assert ScopeEncoder().encode(rocksalt_cif("_space_group_IT_number 225\n")) == ROCKSALT_SCOPE
    assert not caplog.messages  # a CIF that agrees with itself: no warning


@pytest.mark.parametrize("isotope", ["D", "T"])
def test_hydrogen_isotopes_are_read_as_hydrogen_in_every_input(caplog, isotope):
    """D was read as H in CIF and POSCAR but refused in a pymatgen dict (pymatgen reads D and T as H)."""
    as_dict = Structure(Lattice.cubic(4.0), ["Na", "H"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()
    as_dict["sites"][1]["species"][0]["element"] = isotope
    inputs = {"CIF data_nacl": (rocksalt_cif("_space_group_IT_number 225\n", chlorine=isotope), "cF m-3m SG225 H 4a Na 4b"),
              "structure text": (poscar(CUBIC, "1 1", "0 0 0\n0.5 0.5 0.5\n", species=f"Na {isotope}"),
                                 "cP m-3m SG221 H 1a Na 1b"),
              "dict": (as_dict, "cP m-3m SG221 H 1a Na 1b")}
    for label, (crystal, expected) in inputs.items():
        caplog.clear()
        with caplog.at_level("WARNING", logger="cloud_hf.structures"):
            assert ScopeEncoder().encode(crystal) == expected
            assert ScopeEncoder(mode="reference").encode(crystal).endswith(" | Na 0.5 H 0.5")
        assert set(caplog.messages) == {f"{label}: {isotope} read as hydrogen (H), as pymatgen reads them; SCOPE and "
                                        "the models see H and its mass"}


def test_predict_shows_an_exact_share_without_a_std():
    """``unseen_element_share`` (unit "", std 0) printed as "0 ± 0" and got a std column of zeros."""
    from cloud_hf.commands.predict import flatten_result

    result = {"input": "x.cif", "formula": "NaCl", "n_atoms": 2, "scope": ROCKSALT_SCOPE, "error": None,
              "properties": [{"property": "heat_capacity", "value": 24.1, "unit": "J/(mol·K)", "std": 0.5,
                              "temperature": 300.0},
                             {"property": "unseen_element_share", "value": 0.0, "unit": "", "std": 0.0}]}
    terminal = flatten_result(result, join_std=True)
    assert terminal["heat_capacity@300K [J/(mol·K)]"] == "24.1 ± 0.5"
    assert terminal["unseen_element_share"] == 0.0
    written = flatten_result(result)
    assert written["heat_capacity@300K [J/(mol·K)] std"] == 0.5 and "unseen_element_share std" not in written
