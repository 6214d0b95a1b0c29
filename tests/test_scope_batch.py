"""Batch paths: ``encode_many``, the ``datasets`` map function, and the ``cloud-hf scope`` command."""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle

import pandas as pd
import pytest
from datasets import Dataset
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from cloud_hf.cli import main
from cloud_hf.scope import ScopeEncoder

ROCKSALT = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
CESIUM_CHLORIDE = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
OVERLAPPING = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
ENCODER = ScopeEncoder()


def mixed_rows() -> tuple[list, list[str | None]]:
    """Good and bad inputs interleaved, with the scope (or the error fragment) each must give."""
    inputs = [
        str(CifWriter(ROCKSALT)),
        "data_junk\n_cell_length_a 1\nloop_\n",
        json.dumps(CESIUM_CHLORIDE.as_dict()),
        str(CifWriter(OVERLAPPING)),
        None,
        str(CifWriter(CESIUM_CHLORIDE)),
    ]
    expected = [
        "cF m-3m SG225 Na 4a Cl 4b",
        "unreadable or malformed CIF",
        "cP m-3m SG221 Cl 1a Cs 1b",
        "overlapping atoms",
        "empty 'cif' value",
        "cP m-3m SG221 Cl 1a Cs 1b",
    ]
    return inputs, expected


def check_results(scopes, errors, expected):
    assert len(scopes) == len(errors) == len(expected)
    for index, (scope, error, want) in enumerate(zip(scopes, errors, expected)):
        if want.startswith(("cF", "cP")):
            assert (scope, error) == (want, None), index
        else:
            assert scope is None and want in error, index


def test_encode_many_keeps_every_input_in_order():
    inputs, expected = mixed_rows()
    results = ENCODER.encode_many(inputs[:4] + inputs[5:], ids=["a", "b", "c", "d", "f"])
    check_results([r[0] for r in results], [r[1] for r in results], expected[:4] + expected[5:])
    assert results[1][1].startswith("b: ")


def test_map_function_is_picklable_and_rebuilds_the_same_encoder():
    function = ScopeEncoder(backend="spglib", symprec=0.05).as_map_function(input_column="cif")
    restored = pickle.loads(pickle.dumps(function))
    assert restored == function
    assert restored.encoder_settings == ScopeEncoder(backend="spglib", symprec=0.05).to_dict()


@pytest.mark.parametrize("num_proc", [None, 2])
def test_dataset_map_keeps_every_row_in_order_with_its_error(num_proc):
    inputs, expected = mixed_rows()
    ids = [f"row-{i}" for i in range(len(inputs))]
    dataset = Dataset.from_dict({"cif": inputs, "material_id": ids})
    function = ENCODER.as_map_function(input_column="cif", id_column="material_id")
    # batches of 2 on 2 workers: the second shard starts with a batch of failures only
    mapped = dataset.map(function, batched=True, batch_size=2, num_proc=num_proc, features=function.output_features(dataset.features))
    assert mapped["material_id"] == ids
    assert mapped.column_names == ["cif", "material_id", "scope", "scope_error"]
    check_results(mapped["scope"], mapped["scope_error"], expected)
    assert mapped["scope_error"][1].startswith("material_id=row-1: ")
    assert ENCODER.map_dataset(dataset, id_column="material_id", batch_size=2, num_proc=num_proc)[:] == mapped[:]


def test_plain_map_call_of_the_issue_works():
    inputs, expected = mixed_rows()
    mapped = Dataset.from_dict({"cif": inputs}).map(ENCODER.as_map_function(input_column="cif"), batched=True)
    check_results(mapped["scope"], mapped["scope_error"], expected)


def test_dataset_map_reads_pymatgen_dicts_and_real_cifs(shared_data):
    frame = pd.read_csv(shared_data / "structures" / "mp_20" / "pilot_test.csv.gz", nrows=40)
    structures = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    dataset = Dataset.from_dict({"cif": frame["cif"].tolist(), "structure": [s.as_dict() for s in structures]})
    from_cif = dataset.map(ENCODER.as_map_function("cif"), batched=True)
    from_dict = dataset.map(ENCODER.as_map_function("structure", output_column="scope2", error_column="err2"), batched=True)
    assert from_cif["scope"] == from_dict["scope2"] == [ENCODER.encode(s) for s in structures]
    # MP-20 labels carry the space group found at symprec 0.1: canonical SCOPE agrees
    assert [int(scope.split()[2][2:]) for scope in from_cif["scope"]] == frame["spacegroup.number"].tolist()


def test_map_function_names_the_missing_column():
    with pytest.raises(KeyError, match="input column 'cif' is missing"):
        ENCODER.as_map_function("cif")({"structure": ["x"]})


# --- the command line -----------------------------------------------------------------------------


def run_cli(args, capsys) -> tuple[int, list[dict[str, str]], str]:
    code = main(["scope", *map(str, args)])
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out))) if captured.out else []
    return code, rows, captured.err


def test_cli_folder_and_files_give_every_row(tmp_path, capsys):
    """Every file of a folder (sorted by name) and every named path is one row; bad ones carry the reason."""
    folder = tmp_path / "crystals"
    folder.mkdir()
    (folder / "NaCl.cif").write_text(str(CifWriter(ROCKSALT)))
    CESIUM_CHLORIDE.to(filename=str(folder / "POSCAR_CsCl"))
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 3\n")
    (folder / "notes.txt").write_text("not a structure")
    code, rows, err = run_cli([folder, tmp_path / "missing.cif"], capsys)
    assert code == 0
    assert [row["id"] for row in rows] == [
        str(folder / "NaCl.cif"), str(folder / "POSCAR_CsCl"), str(folder / "broken.cif"), str(folder / "notes.txt"),
        str(tmp_path / "missing.cif"),
    ]
    assert [row["scope"] for row in rows] == ["cF m-3m SG225 Na 4a Cl 4b", "cP m-3m SG221 Cl 1a Cs 1b", "", "", ""]
    assert rows[2]["error"].startswith(f"{folder / 'broken.cif'}: unreadable or malformed CIF")
    assert rows[3]["error"].startswith(f"{folder / 'notes.txt'}: ")
    assert rows[4]["error"] == f"{tmp_path / 'missing.cif'}: no such file or folder"
    assert "encoded 2 of 5 inputs (canonical-1)" in err


def test_cli_reference_mode_table_to_jsonl(tmp_path, capsys):
    table = tmp_path / "table.csv.gz"
    with gzip.open(table, "wt") as handle:
        pd.DataFrame({"material_id": ["mp-1", "mp-2"], "cif": [str(CifWriter(ROCKSALT)), "garbage"]}).to_csv(handle, index=False)
    output = tmp_path / "out.jsonl"
    code, _, _ = run_cli(["--mode", "reference", "--output", output, table], capsys)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert code == 0
    assert rows[0] == {
        "id": f"{table}:mp-1",
        "scope": "1 6 a O D D a D O D b O O O c O O O d O O O e O O O 0 | 4a 4b | Na 0.5 Cl 0.5",
        "error": None,
    }
    assert rows[1]["scope"] is None and rows[1]["error"].startswith(f"{table}:mp-2: ")


def test_cli_reports_a_missing_column_and_fails_when_nothing_is_encoded(tmp_path, capsys):
    table = tmp_path / "table.jsonl"
    table.write_text(json.dumps({"id": "a", "poscar_text": "x"}) + "\n")
    code, rows, err = run_cli(["--input-column", "cif", table], capsys)
    assert code == 1
    assert rows == [{"id": str(table), "scope": "", "error": f"{table}: no structure column 'cif'; columns are ['id', 'poscar_text']"}]
    assert "encoded 0 of 1 inputs" in err


def test_cli_reads_a_real_table_with_a_comment_line(shared_data, tmp_path, capsys):
    piezo = shared_data / "structures" / "matminer" / "piezoelectric_tensor_legacy2017.csv.gz"
    output = tmp_path / "piezo.csv"
    code, _, _ = run_cli(["--input-column", "poscar", "--output", output, "--num-proc", "2", piezo], capsys)
    rows = list(csv.DictReader(output.open()))
    assert code == 0 and len(rows) == 941
    assert sum(bool(row["scope"]) for row in rows) == 941
    labels = pd.read_csv(piezo, skiprows=1, usecols=["material_id", "space_group"])
    agree = sum(int(row["scope"].split()[2][2:]) == group for row, group in zip(rows, labels["space_group"]))
    assert agree >= 0.97 * len(rows)  # MP's labels used symprec 0.1 with spglib; borderline cases may differ


def test_cli_reads_split_json_tables_of_pymatgen_dicts(tmp_path, capsys):
    table = tmp_path / "records.json"
    frame = pd.DataFrame({"structure": [ROCKSALT.as_dict(), CESIUM_CHLORIDE.as_dict()]}, index=["a", "b"])
    table.write_text(frame.to_json(orient="split"))
    code, rows, _ = run_cli([table], capsys)
    assert code == 0
    assert [(row["id"], row["scope"]) for row in rows] == [
        (f"{table}:0", "cF m-3m SG225 Na 4a Cl 4b"),
        (f"{table}:1", "cP m-3m SG221 Cl 1a Cs 1b"),
    ]
