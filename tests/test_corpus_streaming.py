"""The streaming corpus path of cloud_hf.data: chunked reading into memory-mapped Arrow files, digest
de-duplication and bad-row splitting in Arrow batches give exactly what whole-file reading and Python sets give."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import pytest

from cloud_hf import data
from cloud_hf.data import drop_duplicates, read_table, split_bad_rows

REPO_ROOT = Path(__file__).resolve().parents[1]


def python_first_rows(values: list[Any]) -> list[int]:
    """Positions of the first occurrence of each distinct value: the plain Python reference."""
    seen: set[Any] = set()
    keep = []
    for index, value in enumerate(values):
        if value not in seen:
            seen.add(value)
            keep.append(index)
    return keep


def rows_of(table: datasets.Dataset) -> list[str]:
    """Every row as JSON text (NaN written as NaN, so that equal tables compare equal)."""
    return [json.dumps(row) for row in table]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Read and scan 4 rows at a time, so that every table below spans several chunks."""
    monkeypatch.setattr(data, "CHUNK_ROWS", 4)
    return 4


@pytest.fixture
def mixed_csv(tmp_path: Path) -> Path:
    """23 rows: repeated, missing and blank ids, a row-number id that collides with a written one, empty
    structures, missing and text labels, an integer extra column with gaps, duplicate structures."""
    ids = ["a", "b", "a", None, "3", " ", "x", "a", None, "b"]
    structures = ["data_A", "data_B", None, "data_A", "data_C", "data_B"]
    labels = ["1.5", "", "abc", "2", "-3", "nan", "7"]  # text in some chunks of 4 rows, numbers in others
    rows = [{"material_id": ids[i % len(ids)], "cif": structures[i % len(structures)], "y": labels[i % len(labels)],
             "n_atoms": None if i % 5 == 2 else i} for i in range(23)]
    path = tmp_path / "mixed.csv.gz"
    with gzip.open(path, "wt") as handle:
        pd.DataFrame(rows).to_csv(handle, index=False)
    return path


def test_chunked_csv_reading_gives_the_rows_ids_and_bad_rows_of_a_whole_file_read(
        mixed_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options: dict[str, Any] = {"label_columns": ["y"], "extra_columns": ["n_atoms"]}
    whole = read_table(mixed_csv, **options)  # 23 rows < CHUNK_ROWS: one chunk, as the file was read before
    monkeypatch.setattr(data, "CHUNK_ROWS", 4)
    chunked = read_table(mixed_csv, **options)
    assert chunked.features == whole.features
    assert chunked.column_names == ["id", "row", "source", "structure", "y", "n_atoms", "error"]
    assert rows_of(chunked) == rows_of(whole)
    assert chunked["id"][:11] == ["a", "b", "a#2", "3#2", "3", "5", "x", "a#3", "8", "b#2", "a#4"]
    assert chunked["row"] == list(range(23))
    assert json.dumps(chunked["n_atoms"][:4]) == "[0.0, 1.0, NaN, 3.0]"  # pandas' float column, as a whole read
    good, bad = split_bad_rows(chunked)
    assert bad["row"] == [row for row, error in enumerate(whole["error"]) if error is not None]
    assert bad[0]["error"] == "label 'y' is nan (not a finite number)"
    assert "empty 'cif' cell" in bad["error"] and "label 'y' is 'abc' (not a finite number)" in bad["error"]
    assert good["row"] == [row for row, error in enumerate(whole["error"]) if error is None]


def test_chunked_json_lines_keep_bad_lines_and_line_numbers(tmp_path: Path, small_chunks: int) -> None:
    lines = []
    for index in range(11):
        record = {"id": f"r{index}", "structure": f"data_{index % 3}", "y": index}
        lines.append(json.dumps(record))
        if index == 5:
            lines += ["", '{"id": "broken', "[1, 2]"]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines))
    table = read_table(path, label_columns=["y"])
    assert len(table) == 13
    assert table["id"][:6] == [f"r{i}" for i in range(6)] and table["id"][6:8] == ["6", "7"]
    assert table["id"][8:] == [f"r{i}" for i in range(6, 11)]
    assert table["error"][6] == f"line 8 of {path} is not valid JSON (Unterminated string starting at, column 8)"
    assert table["error"][7] == f"line 9 of {path} holds a JSON list, not an object"
    assert all(error is None for i, error in enumerate(table["error"]) if i not in (6, 7))
    assert table["y"][8:] == [float(i) for i in range(6, 11)]


def test_a_folder_of_cifs_streams_file_by_file_in_name_order(tmp_path: Path, small_chunks: int) -> None:
    examples = sorted((REPO_ROOT / "examples").glob("*.cif"))
    if not examples:
        pytest.skip("no example CIF files in examples/")
    folder = tmp_path / "cifs"
    folder.mkdir()
    names = []
    for copy in range(2):  # 14 files, written out of name order, beside a file that is not a structure
        for source in reversed(examples):
            name = f"{'z' if copy else 'A'}_{source.name}"
            shutil.copy(source, folder / name)
            names.append(name)
    (folder / "notes.txt").write_text("not a structure")
    table = read_table(folder)
    assert table["id"] == sorted(names)
    assert table["row"] == list(range(len(names)))
    assert table["structure"] == [(folder / name).read_text() for name in sorted(names)]
    assert all(error is None for error in table["error"])


def test_read_table_is_memory_mapped_with_a_content_fingerprint(mixed_csv: Path, tmp_path: Path) -> None:
    first, again = read_table(mixed_csv), read_table(mixed_csv)
    assert first.cache_files and all(Path(f["filename"]).is_file() for f in first.cache_files)
    assert first._fingerprint == again._fingerprint  # what the cache_dir file names of the maps are keyed by
    changed = tmp_path / "changed.csv.gz"
    with gzip.open(mixed_csv, "rt") as source, gzip.open(changed, "wt") as target:
        target.write(source.read().replace("data_C", "data_D"))
    assert read_table(changed)._fingerprint != first._fingerprint


def test_drop_duplicates_keeps_the_first_rows_a_python_set_keeps(small_chunks: int) -> None:
    values = ["b", "a", None, "b", "", "a", None, "é", "", "c", "é", "b", "a\x00", "a"]
    table = datasets.Dataset.from_dict({"scope": values, "row": list(range(len(values)))})
    assert drop_duplicates(table)["row"] == python_first_rows(values)
    # a selection (indices mapping) and a concatenation, as the pretraining recipe builds them
    picked = table.select([13, 0, 3, 2, 6, 4, 8, 12])
    assert drop_duplicates(picked)["row"] == [picked["row"][i] for i in python_first_rows(picked["scope"])]
    joined = datasets.concatenate_datasets([picked, table])
    assert drop_duplicates(joined)["row"] == [joined["row"][i] for i in python_first_rows(joined["scope"])]
    numbers = datasets.Dataset.from_dict({"n": [3, 1, 3, 2, 1]})  # not text: compared as Python values
    assert drop_duplicates(numbers, "n")["n"] == [3, 1, 2]


def test_drop_duplicates_on_a_read_structure_column(mixed_csv: Path, small_chunks: int) -> None:
    table = read_table(mixed_csv)
    distinct = drop_duplicates(table, "structure")
    assert distinct["row"] == python_first_rows(table["structure"])
    assert distinct["structure"] == ["data_A", "data_B", None, "data_C"]


def test_split_bad_rows_of_a_selection_keeps_input_order(mixed_csv: Path, small_chunks: int) -> None:
    table = read_table(mixed_csv, label_columns=["y"]).select([9, 2, 14, 0, 7, 21, 1])
    good, bad = split_bad_rows(table)
    assert good["row"] == [row for row, error in zip(table["row"], table["error"]) if error is None]
    assert bad["row"] == [row for row, error in zip(table["row"], table["error"]) if error is not None]
    assert len(good) and len(bad)
    empty_good, empty_bad = split_bad_rows(table.select([]))
    assert len(empty_good) == len(empty_bad) == 0
