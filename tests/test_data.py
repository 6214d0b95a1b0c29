"""cloud_hf.data: reading every supported input format, the SCOPE/token maps and bad-row reports."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure

from cloud_hf.data import (
    DataError,
    add_scope_column,
    add_token_columns,
    drop_duplicates,
    error_reasons,
    random_split_indices,
    read_table,
    split_bad_rows,
    write_bad_rows,
)
from cloud_hf.scope import ScopeEncoder, ScopeError, canonical_vocabulary
from cloud_hf.structures import load_structure, structure_from_pmg_str
from cloud_hf.tokenization_cloud import CloudTokenizerFast

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoder() -> ScopeEncoder:
    return ScopeEncoder(mode="canonical")


@pytest.fixture(scope="module")
def tokenizer(encoder: ScopeEncoder) -> CloudTokenizerFast:
    return CloudTokenizerFast.from_scope_vocabulary(canonical_vocabulary(), encoder.to_dict())


@pytest.fixture(scope="module")
def jdft2d_file(shared_data: Path) -> Path:
    return shared_data / "structures" / "matbench" / "matbench_jdft2d.csv.gz"


def test_pmg_str_parser_rebuilds_structure(jdft2d_file: Path) -> None:
    text = pd.read_csv(jdft2d_file, nrows=1)["structure"][0]
    structure = structure_from_pmg_str(text)
    assert structure.composition.reduced_formula == "HfSiTe"
    assert len(structure) == 6
    assert structure.lattice.abc == pytest.approx((3.667305, 3.667305, 27.311209), abs=1e-6)
    assert structure[0].frac_coords == pytest.approx([0.407174, 0.907174, 0.265919], abs=1e-9)


def test_pmg_str_parser_reads_disordered_species() -> None:
    structure = Structure.from_spacegroup("Fm-3m", [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]],
                                          [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    parsed = structure_from_pmg_str(str(structure))
    assert parsed.composition.almost_equals(structure.composition)
    assert not parsed.is_ordered


def test_pmg_str_parser_rejects_other_text() -> None:
    with pytest.raises(ValueError, match="abc"):
        structure_from_pmg_str("Full Formula (Na1)\nnothing else")
    with pytest.raises(ScopeError, match=r"row 3: malformed str\(Structure\) text"):
        ScopeEncoder().encode("Full Formula (Na1)\nnothing else", name="row 3")


def test_the_encoder_reads_pmg_str_text_as_the_structure_it_prints() -> None:
    structure = Structure.from_spacegroup("Fm-3m", [[5.64, 0, 0], [0, 5.64, 0], [0, 0, 5.64]], ["Na", "Cl"],
                                          [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert ScopeEncoder().encode(str(structure)) == ScopeEncoder().encode(structure) == "cF m-3m SG225 Na 4a Cl 4b"


def test_read_pmg_str_csv_with_labels(jdft2d_file: Path) -> None:
    table = read_table(jdft2d_file, label_columns=["exfoliation_en"])
    assert len(table) == 636
    assert table["row"][:3] == [0, 1, 2]
    assert table[0]["structure"].startswith("Full Formula")
    assert load_structure(table[0]["structure"]).composition.reduced_formula == "HfSiTe"
    assert table[0]["exfoliation_en"] == pytest.approx(63.5938, abs=1e-3)
    assert all(error is None for error in table["error"])


def test_read_matminer_split_json(shared_data: Path) -> None:
    table = read_table(shared_data / "structures" / "matminer" / "elastic_tensor_2015.json.gz",
                       label_columns=["G_VRH"])
    assert len(table) == 1181
    assert table[0]["id"].startswith("mp-")
    assert table[0]["structure"].startswith("{")
    assert Structure.from_dict(json.loads(table[0]["structure"])).is_ordered


def test_read_records_json_and_jsonl(shared_data: Path, tmp_path: Path) -> None:
    records = read_table(shared_data / "structures" / "wbm" / "wbm-random-pbe52-equilibrium-2025.1.json.gz")
    assert len(records) == 972 and records[0]["id"].startswith("wbm-")
    lines = tmp_path / "few.jsonl"
    lines.write_text("\n".join(json.dumps({"material_id": row["id"], "structure": json.loads(row["structure"])})
                               for row in records.select(range(3))))
    table = read_table(lines)
    assert table["id"] == records["id"][:3]


def test_read_csv_skips_leading_comment_line(shared_data: Path) -> None:
    table = read_table(shared_data / "structures" / "matminer" / "piezoelectric_tensor_legacy2017.csv.gz",
                       structure_column="poscar", label_columns=["eij_max"])
    assert len(table) == 941
    assert len(load_structure(table[0]["structure"])) > 0


def test_read_folder_of_cif_files(encoder: ScopeEncoder) -> None:
    folder = REPO_ROOT / "examples"
    cif_files = sorted(p.name for p in folder.glob("*.cif"))
    if not cif_files:
        pytest.skip("no example CIF files in examples/")
    table = add_scope_column(read_table(folder), encoder)
    assert table["id"] == cif_files
    assert all(error is None for error in table["error"])
    assert all(scope.split()[2].startswith("SG") for scope in table["scope"])


def test_read_ready_scope_strings(reference_data: Path) -> None:
    table = read_table(reference_data / "cloud_cv_train_and_val.csv", label_columns=["cv"],
                       extra_columns=["n_atoms"])
    assert "structure" not in table.column_names
    assert table[0]["scope"].startswith("1 3 a E C C n")
    assert table[0]["n_atoms"] == 8.0


def test_missing_column_names_the_file(jdft2d_file: Path) -> None:
    with pytest.raises(DataError, match=r"matbench_jdft2d\.csv\.gz.*no label column 'band_gap'"):
        read_table(jdft2d_file, label_columns=["band_gap"])
    with pytest.raises(DataError, match="no such file"):
        read_table(jdft2d_file.with_name("absent.csv"))


@pytest.fixture
def file_with_bad_rows(shared_data: Path, tmp_path: Path) -> Path:
    """Six real AFLOW rows with three bad ones mixed in (rows 1, 3, 4)."""
    frame = pd.read_csv(shared_data / "structures" / "aflow" / "shear_modulus" / "train.csv.gz", nrows=6)
    frame = frame[["cif", "shear_modulus"]].copy()
    frame.insert(0, "material_id", [f"aflow-{i}" for i in range(len(frame))])
    bad = pd.DataFrame({"material_id": ["garbage", "nan-label", "empty"],
                        "cif": ["data_x\nthis is not a CIF", frame["cif"][0], None],
                        "shear_modulus": [10.0, float("nan"), 5.0]})
    rows = [frame.iloc[[0]], bad.iloc[[0]], frame.iloc[[1]], bad.iloc[[1]], bad.iloc[[2]], frame.iloc[2:]]
    path = tmp_path / "mixed.csv.gz"
    with gzip.open(path, "wt") as handle:
        pd.concat(rows).to_csv(handle, index=False)
    return path


def test_bad_rows_are_kept_in_order_counted_and_written(file_with_bad_rows: Path, encoder: ScopeEncoder,
                                                        tokenizer: CloudTokenizerFast, tmp_path: Path) -> None:
    table = read_table(file_with_bad_rows, label_columns=["shear_modulus"])
    assert len(table) == 9
    table = add_token_columns(add_scope_column(table, encoder), tokenizer, max_length=128)
    assert len(table) == 9 and table["row"] == list(range(9))
    good, bad = split_bad_rows(table)
    assert bad["id"] == ["garbage", "nan-label", "empty"]
    assert bad["row"] == [1, 3, 4]
    assert "not a finite number" in bad[1]["error"]
    assert "empty 'cif' cell" in bad[2]["error"]
    assert bad[0]["error"].startswith("id=garbage: ")
    assert good["id"] == [f"aflow-{i}" for i in range(6)]
    assert all(len(ids) > 3 for ids in good["input_ids"])
    assert sum(error_reasons(bad).values()) == len(bad)
    report = pd.read_csv(write_bad_rows(bad, tmp_path / "bad.csv"))
    assert report["id"].tolist() == bad["id"]
    assert report["row"].tolist() == bad["row"]


def test_rows_longer_than_the_model_are_reported(jdft2d_file: Path, encoder: ScopeEncoder,
                                                 tokenizer: CloudTokenizerFast) -> None:
    table = add_scope_column(read_table(jdft2d_file).select(range(20)), encoder)
    lengths = [len(scope.split()) + 2 for scope in table["scope"]]
    limit = sorted(lengths)[len(lengths) // 2]
    _, bad = split_bad_rows(add_token_columns(table, tokenizer, max_length=limit))
    assert len(bad) == sum(length > limit for length in lengths) > 0
    assert all(f"longer than the model's {limit} positions" in error for error in bad["error"])


def test_scope_map_parallel_and_cached(jdft2d_file: Path, encoder: ScopeEncoder, tmp_path: Path) -> None:
    table = read_table(jdft2d_file).select(range(160))
    serial = add_scope_column(table, encoder, batch_size=16)
    parallel = add_scope_column(table, encoder, num_proc=2, batch_size=16, cache_dir=tmp_path)
    assert parallel["scope"] == serial["scope"] and parallel["id"] == serial["id"]
    assert list(tmp_path.glob("scope-*.arrow"))
    again = add_scope_column(table, encoder, num_proc=2, batch_size=16, cache_dir=tmp_path)
    assert again.cache_files and again.cache_files[0]["filename"].startswith(str(tmp_path))
    assert again["scope"] == serial["scope"]


def test_random_split_is_a_partition() -> None:
    parts = random_split_indices(101, [0.1, 0.2, 0.7], seed=3)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(101))
    assert [len(p) for p in parts] == [10, 20, 71]
    assert all(np.array_equal(a, b) for a, b in zip(parts, random_split_indices(101, [0.1, 0.2, 0.7], 3)))


def test_drop_duplicates_keeps_first_occurrence(reference_data: Path) -> None:
    table = read_table(reference_data / "cloud_cv_train_and_val.csv")
    distinct = drop_duplicates(table)
    assert len(set(distinct["scope"])) == len(distinct) <= len(table)
    first_rows = {}
    for row, scope in zip(table["row"], table["scope"]):
        first_rows.setdefault(scope, row)
    assert distinct["row"] == sorted(first_rows.values())


def test_a_bad_jsonl_line_keeps_its_row_and_the_good_lines(tmp_path: Path) -> None:
    from pymatgen.core import Lattice

    structure = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0.5, 0.5, 0.5], [0, 0, 0]])
    path = tmp_path / "three.jsonl"
    path.write_text("\n".join([json.dumps({"id": "a", "structure": structure.as_dict()}), '{"id": "b", "struct',
                               "", json.dumps({"id": "c", "structure": structure.as_dict()})]))
    table = read_table(path)
    assert table["id"] == ["a", "1", "c"]
    assert table["error"][0] is None and table["error"][2] is None
    assert table["error"][1].startswith(f"line 2 of {path} is not valid JSON (Unterminated string")


def test_a_header_only_table_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("id,structure\n")
    assert len(read_table(path)) == 0
