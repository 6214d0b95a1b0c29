"""``cloud-hf predict``: one row per input in order, values or a clear error, summary line and exit code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pymatgen.io.cif import CifWriter

from cloud_hf.cli import main
from test_pipeline import disordered_structure, pymatgen_structure, save_tiny_checkpoint


@pytest.fixture(scope="module")
def debye_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("debye"))


@pytest.fixture()
def mixed_folder(tmp_path) -> Path:
    """Good CIF and POSCAR files next to a broken CIF, an empty file, a disordered CIF and a molecule."""
    folder = tmp_path / "crystals"
    folder.mkdir()
    CifWriter(pymatgen_structure("Si")).write_file(folder / "a_Si.cif")
    pymatgen_structure("CsCl").to(filename=str(folder / "b_CsCl.vasp"), fmt="poscar")
    (folder / "c_broken.cif").write_text("data_broken\n_cell_length_a 4.0\nloop_\n_atom_site_label\nX1\n")
    (folder / "d_empty.cif").write_text("")
    CifWriter(disordered_structure()).write_file(folder / "e_CuAu_disordered.cif")
    (folder / "f_water.xyz").write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n")
    CifWriter(pymatgen_structure("SrTiO3")).write_file(folder / "g_SrTiO3.cif")
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_mixed_folder_gives_one_row_per_file_with_clear_errors(mixed_folder, debye_checkpoint, tmp_path, capsys):
    output = tmp_path / "predictions.csv"
    code = main(["predict", str(mixed_folder), "--model", str(debye_checkpoint), "--output", str(output),
                 "--batch-size", "3"])
    assert code == 0
    rows = read_csv(output)
    assert [Path(row["input"]).name for row in rows] == sorted(path.name for path in mixed_folder.iterdir())
    formulas = [row["formula"] for row in rows]
    assert formulas == ["Si", "CsCl", "", "", "", "", "SrTiO3"]
    errors = {Path(row["input"]).name: row["error"] for row in rows}
    assert errors["a_Si.cif"] == errors["b_CsCl.vasp"] == errors["g_SrTiO3.cif"] == ""
    assert "c_broken.cif" in errors["c_broken.cif"] and "CIF" in errors["c_broken.cif"]
    assert "d_empty.cif" in errors["d_empty.cif"]
    assert "disordered site" in errors["e_CuAu_disordered.cif"]
    assert "f_water.xyz" in errors["f_water.xyz"]
    for row in rows:
        has_value = row["debye_temperature [K]"] != ""
        assert has_value == (row["error"] == "")
        if has_value:
            assert float(row["debye_temperature [K]"]) > 0
            assert float(row["heat_capacity@300K [J/(mol·K)]"]) > 0
    assert capsys.readouterr().out.strip().endswith("3 ok, 4 failed")


def test_terminal_table_and_temperatures(mixed_folder, debye_checkpoint, capsys):
    code = main(["predict", str(mixed_folder / "a_Si.cif"), str(mixed_folder / "c_broken.cif"),
                 "--model", str(debye_checkpoint), "--temperatures", "100", "1000"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header, silicon, broken, summary = lines
    assert "debye_temperature [K]" in header
    assert "heat_capacity@100K [J/(mol·K)]" in header and "heat_capacity@1000K [J/(mol·K)]" in header
    assert "entropy" not in header  # U, S, F go to --output files only
    assert silicon.startswith("a_Si.cif") and " Si " in silicon
    assert broken.startswith("c_broken.cif") and "the cell is not given: _cell_length_b is missing" in broken
    assert summary == "1 ok, 1 failed"


def test_jsonl_output_holds_full_records(mixed_folder, debye_checkpoint, tmp_path):
    output = tmp_path / "predictions.jsonl"
    code = main(["predict", str(mixed_folder / "g_SrTiO3.cif"), str(mixed_folder / "e_CuAu_disordered.cif"),
                 "--model", str(debye_checkpoint), "--temperatures", "50", "500", "--output", str(output)])
    assert code == 0
    strontium_titanate, disordered = (json.loads(line) for line in output.read_text().splitlines())
    assert strontium_titanate["formula"] == "SrTiO3" and strontium_titanate["n_atoms"] == 5
    temperatures = {record.get("temperature") for record in strontium_titanate["properties"]}
    assert temperatures == {None, 50.0, 500.0}
    assert {record["property"] for record in strontium_titanate["properties"]} >= {
        "debye_temperature", "heat_capacity", "internal_energy", "entropy", "free_energy",
    }
    assert disordered["properties"] == [] and "disordered site" in disordered["error"]


def test_table_input_gives_one_row_per_table_row(debye_checkpoint, tmp_path):
    table = tmp_path / "crystals.csv"
    with table.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["material_id", "cif"])
        writer.writerow(["good-1", str(CifWriter(pymatgen_structure("Li2O")))])
        writer.writerow(["empty-2", ""])
        writer.writerow(["dict-3", json.dumps(pymatgen_structure("VO2").as_dict())])
    output = tmp_path / "out.csv"
    assert main(["predict", str(table), "--model", str(debye_checkpoint), "--output", str(output),
                 "--input-column", "cif", "--id-column", "material_id"]) == 0
    rows = read_csv(output)
    assert [row["input"] for row in rows] == [f"{table}:good-1", f"{table}:empty-2", f"{table}:dict-3"]
    assert [row["formula"] for row in rows] == ["Li2O", "", "VO2"]
    assert "empty-2" in rows[1]["error"] and "empty" in rows[1]["error"]


def test_nothing_predictable_exits_non_zero(mixed_folder, debye_checkpoint, tmp_path, capsys):
    code = main(["predict", str(mixed_folder / "c_broken.cif"), str(tmp_path / "missing.cif"),
                 "--model", str(debye_checkpoint)])
    assert code == 1
    output = capsys.readouterr().out
    assert "missing.cif: no such file or folder" in output
    assert output.strip().endswith("0 ok, 2 failed")


def test_plot_writes_a_png(mixed_folder, debye_checkpoint, tmp_path):
    plot = tmp_path / "curves.png"
    assert main(["predict", str(mixed_folder), "--model", str(debye_checkpoint), "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_that_cannot_be_loaded_is_a_clear_error(mixed_folder, tmp_path, capsys):
    code = main(["predict", str(mixed_folder), "--model", str(tmp_path / "no_model_here")])
    assert code == 2
    assert f"cannot load the model {tmp_path / 'no_model_here'}" in capsys.readouterr().err


def test_unknown_output_format_is_refused(mixed_folder, debye_checkpoint, tmp_path, capsys):
    code = main(["predict", str(mixed_folder), "--model", str(debye_checkpoint), "--output", str(tmp_path / "x.xlsx")])
    assert code == 2
    assert not (tmp_path / "x.xlsx").exists()
    assert capsys.readouterr().err.strip() == f"error: --output {tmp_path / 'x.xlsx'}: the suffix .xlsx names no table format; use .csv, .json or .jsonl"

