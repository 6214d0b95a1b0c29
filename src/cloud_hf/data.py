"""Crystal data sets: files → ``datasets.Dataset`` → SCOPE strings → token ids, with bad-row reports.

The pipeline every recipe uses::

    table = read_table("train.csv.gz", label_columns=["debye_temperature"])   # id, row, structure, labels
    table = add_scope_column(table, ScopeEncoder(mode="canonical"), num_proc=2, cache_dir="cache/")
    table = add_token_columns(table, tokenizer, max_length=model.config.max_position_embeddings)
    good, bad = split_bad_rows(table)
    write_bad_rows(bad, "outputs/run/bad_rows_train.csv")

Every row of the input comes out of every step, in order. A row that cannot be used (unparseable
structure, symmetry failure, NaN label, missing field, too many tokens for the model's positions) keeps
its place and gets a message in the ``error`` column; :func:`split_bad_rows` separates such rows at the
end so that a recipe can count them, say why they were skipped and write them to a file.

Supported inputs (:func:`read_table`): CSV (``.csv``, ``.csv.gz``; a leading ``# comment`` line is
skipped), JSON (a list of records or pandas ``orient="split"``, i.e. the matminer ``json.gz`` format),
JSON Lines (``.jsonl``), and a folder of CIF / POSCAR files. The structure column may hold CIF text,
POSCAR text, pymatgen ``Structure.as_dict()`` dicts (stored as JSON text) or the text of ``str(Structure)``
("pmg-str", read by :func:`cloud_hf.structures.structure_from_pmg_str`); a table may instead carry ready SCOPE strings.

Memory: CSV, JSON Lines and folders are read :data:`CHUNK_ROWS` rows (files) at a time into an Arrow file that the
dataset memory-maps, every later step is a ``Dataset.map`` or works on Arrow batches, and
:func:`drop_duplicates` keeps a 16-byte digest a row, never the strings: the Python memory of a corpus does
not grow with its size (``benchmarks/bench_corpus_memory.py``). A JSON document is parsed whole.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import logging
import math
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasets.arrow_writer import ArrowWriter
from datasets.fingerprint import get_temporary_cache_files_directory
from datasets.table import MemoryMappedTable
from pymatgen.core import Structure

from cloud_hf.errors import CloudDataError, CrystalInputError
from cloud_hf.formats import TAB_SEPARATED_SUFFIXES, is_gzipped, is_structure_file_name, table_format

logger = logging.getLogger(__name__)

ID_COLUMN = "id"
ROW_COLUMN = "row"
STRUCTURE_COLUMN = "structure"
SCOPE_COLUMN = "scope"
ERROR_COLUMN = "error"
SCOPE_ERROR_COLUMN = "scope_error"
SOURCE_COLUMN = "source"

#: Column names tried, in order, when no structure column is named.
STRUCTURE_COLUMN_CANDIDATES = ("structure", "cif", "poscar", "atoms")
#: Column names tried, in order, when a table carries ready SCOPE strings.
SCOPE_COLUMN_CANDIDATES = ("scope", "cloud")
#: Column names tried, in order, for row identifiers.
ID_COLUMN_CANDIDATES = ("id", "material_id", "mp_id", "jid", "mbid")
#: Rows of a file held as Python objects at once while it is read: :func:`read_table` reads CSV, JSON Lines
#: and folders this many rows (files) at a time and writes each chunk to a memory-mapped Arrow file.
CHUNK_ROWS = 10_000


DataError = CloudDataError
"""Alias of :class:`cloud_hf.errors.CloudDataError`: a whole input cannot be used."""


# ----------------------------------------------------------------------------------------------------
# files → Dataset
# ----------------------------------------------------------------------------------------------------


def _open_text(path: Path) -> str:
    opener = gzip.open if is_gzipped(path) else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read()


def _frame_chunks(path: Path, id_column: str | None = None) -> Iterator[pd.DataFrame]:
    """Read a CSV / JSON / JSONL file (optionally gzipped) as DataFrames of at most :data:`CHUNK_ROWS` rows, in
    order (at least one, empty for a table without rows); id columns (``id_column`` and the
    :data:`ID_COLUMN_CANDIDATES`) keep their values as written (text, not numbers: ``007`` stays ``007``).

    CSV and JSON Lines are streamed; a JSON document (records, split orient, ASE database) is parsed whole."""
    kind = table_format(path)
    id_names = [*([id_column] if id_column else []), *ID_COLUMN_CANDIDATES]
    if kind == "csv":
        yield from _csv_chunks(path, id_names)
        return
    if kind == "tsv":
        raise DataError(f"{path}: a tab-separated table; tables are read as comma-separated CSV (save it as .csv "
                        "with commas)")
    if kind == "jsonl":
        yield from _json_lines_chunks(path, id_names)
        return
    if kind == "json":
        frame = _read_json(path, id_names)
        yield from (frame.iloc[start:start + CHUNK_ROWS] for start in range(0, max(len(frame), 1), CHUNK_ROWS))
        return
    raise DataError(f"{path}: unknown file type (expected .csv, .json, .jsonl, optionally .gz, or a folder)")


def _csv_chunks(path: Path, id_names: Sequence[str]) -> Iterator[pd.DataFrame]:
    """A CSV file (a leading ``# comment`` line skipped) in chunks of :data:`CHUNK_ROWS` rows."""
    opener = gzip.open if is_gzipped(path) else open
    with opener(path, "rt", encoding="utf-8") as handle:
        first_line = handle.readline()
        header = handle.readline() if first_line.startswith("#") else first_line
    skip = 1 if first_line.startswith("#") else 0
    _check_commas(path, header)
    try:
        with pd.read_csv(path, skiprows=skip, dtype=dict.fromkeys(id_names, str), chunksize=CHUNK_ROWS) as reader:
            yield from reader
    except pd.errors.ParserError as error:  # pandas' message ends in a newline: one line, naming the file
        raise DataError(f"{path}: not a comma-separated table ({' '.join(str(error).split())})") from error


def _read_json(path: Path, id_names: Sequence[str]) -> pd.DataFrame:
    """A JSON document (records, pandas ``orient="split"``, ``{key: record}`` or an ASE database) as one frame."""
    content = json.loads(_open_text(path))
    if isinstance(content, dict) and {"columns", "data"} <= set(content):  # pandas orient="split"
        frame = pd.DataFrame(content["data"], columns=content["columns"], index=content.get("index"))
        records = [dict(zip(content["columns"], row)) for row in content["data"]]
    elif isinstance(content, list):
        frame, records = pd.DataFrame(content), content
    elif isinstance(content, dict) and _is_ase_database(content):
        frame, records = _ase_database_frame(content, path), None
    elif isinstance(content, dict):  # {key: record}: the key is the row's id unless a record names one
        records = [{ID_COLUMN: str(key), **record} if isinstance(record, dict) else {ID_COLUMN: str(key)}
                   for key, record in content.items()]
        frame = pd.DataFrame(records)
    else:
        raise DataError(f"{path}: JSON holds a {type(content).__name__}, expected records or split orient")
    return _ids_as_written(frame, records, id_names)


def _check_commas(path: Path, header: str) -> None:
    """A :class:`DataError` naming the delimiter where a CSV's header line is split by tabs or semicolons, not
    commas (a TSV or a semicolon-separated export saved as ``.csv``)."""
    if "," in header:
        return
    for delimiter, name in (("\t", "tab"), (";", "semicolon")):
        if delimiter in header:
            raise DataError(f"{path}: the header line is separated by {name}s, not commas (a {name}-separated "
                            "file?); tables are read as comma-separated CSV")


def _ids_as_written(frame: pd.DataFrame, records: list | None, id_names: Sequence[str]) -> pd.DataFrame:
    """``frame`` with its id columns rebuilt from the JSON ``records`` as written (pandas turns ``[1, None, 3]``
    into ``1.0, NaN, 3.0``): numbers as JSON writes them, missing values as None."""
    if records is None:
        return frame
    for name in dict.fromkeys(id_names):
        if name in frame.columns:
            frame[name] = pd.Series([_id_text(record.get(name)) if isinstance(record, dict) else None
                                     for record in records], index=frame.index, dtype=object)
    return frame


def _id_text(value: Any) -> str | None:
    """A row id as written in the file (JSON numbers as JSON writes them); None where it is missing."""
    if _is_missing(value) or (isinstance(value, str) and not value.strip()):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def unique_ids(written: Sequence[str | None]) -> list[str]:
    """One unique id per row: the id as written; the row number (0-based, the ``row`` column) where it is missing;
    ``#2``, ``#3``, ... appended to the second, third occurrence of an id (a row-number id that equals an id
    written in the table is suffixed too: written ids keep their names)."""
    reserved = {value for value in written if value is not None}
    used: set[str] = set()
    ids = []
    for row, value in enumerate(written):
        base = value if value is not None else str(row)
        name, copy = base, 1
        while name in used or (name != value and name in reserved):  # an id written in the table keeps its name
            copy += 1
            name = f"{base}#{copy}"
        used.add(name)
        ids.append(name)
    return ids


def _is_ase_database(content: dict) -> bool:
    """Whether a JSON object is an ASE database file (``ase.io.write("x.json", atoms)``): ``ids``, ``nextid`` and
    one record per id."""
    return "nextid" in content and isinstance(content.get("ids"), list)


def _ase_database_frame(content: dict, path: Path) -> pd.DataFrame:
    """One row per structure of an ASE database JSON file (id: its database id; structure: a pymatgen dict)."""
    try:
        from ase.io import read
        from pymatgen.io.ase import AseAtomsAdaptor
    except ImportError as error:
        raise DataError(f"{path}: an ASE database JSON file; reading it needs ASE (pip install ase)") from error
    try:
        images = read(path, index=":", format="json")
    except Exception as error:
        raise DataError(f"{path}: an ASE database JSON file that ASE cannot read ({type(error).__name__}: "
                        f"{error})") from error
    structures = []
    for atoms in images:
        try:
            structures.append(json.dumps(AseAtomsAdaptor.get_structure(atoms).as_dict()))
        except Exception:  # a non-periodic Atoms: the encoder says why in its row
            structures.append(json.dumps({"@class": "Molecule", "sites": []}))
    return pd.DataFrame({ID_COLUMN: [str(key) for key in content["ids"]], STRUCTURE_COLUMN: structures})


READ_ERRORS = "read_errors"
"""Key of ``DataFrame.attrs`` holding, per row of a frame read from a file, why the row itself could not be
read (or None)."""


def _json_lines_chunks(path: Path, id_names: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
    """One row per non-blank line, :data:`CHUNK_ROWS` rows a frame; a line that is not a JSON object keeps its
    row, with the reason naming the file and the line number (1-based) in ``frame.attrs[READ_ERRORS]``; id
    columns as written. Lines are split as ``str.splitlines`` splits the whole text."""
    records: list[dict] = []
    errors: list[str | None] = []
    opener = gzip.open if is_gzipped(path) else open
    number, yielded = 0, False
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in itertools.chain.from_iterable(physical.splitlines() for physical in handle):
            number += 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                record, message = {}, f"line {number} of {path} is not valid JSON ({error.msg}, column {error.colno})"
            else:
                message = None
                if not isinstance(record, dict):
                    record, message = {}, f"line {number} of {path} holds a JSON {type(record).__name__}, not an object"
            records.append(record)
            errors.append(message)
            if len(records) == CHUNK_ROWS:
                yield _json_lines_frame(records, errors, id_names)
                records, errors, yielded = [], [], True
    if records or not yielded:
        yield _json_lines_frame(records, errors, id_names)


def _json_lines_frame(records: list[dict], errors: list[str | None], id_names: Sequence[str]) -> pd.DataFrame:
    frame = _ids_as_written(pd.DataFrame(records), records, id_names)
    frame.attrs[READ_ERRORS] = errors
    return frame


def _folder_chunks(path: Path) -> Iterator[pd.DataFrame]:
    """One row per CIF or POSCAR file in ``path`` (sorted by name), :data:`CHUNK_ROWS` files a frame; the file
    name is the row id. Only the names are listed up front; each chunk's files are read when it is reached."""
    names = sorted(entry.name for entry in os.scandir(path) if entry.is_file() and is_structure_file_name(entry.name))
    if not names:
        raise DataError(f"{path}: no CIF (*.cif) or POSCAR (POSCAR*, CONTCAR*, *.vasp) files in the folder")
    for start in range(0, len(names), CHUNK_ROWS):
        chunk = names[start:start + CHUNK_ROWS]
        yield pd.DataFrame({ID_COLUMN: chunk, STRUCTURE_COLUMN: [
            (path / name).read_text(encoding="utf-8", errors="replace") for name in chunk]})


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _structure_to_text(value: Any) -> str | None:
    """A cell of the structure column as text (dicts as JSON); None where the cell is empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, Structure):
        return json.dumps(value.as_dict())
    return str(value)


def _pick(columns: Sequence[str], requested: str | None, candidates: Iterable[str], what: str,
          path: Path, required: bool) -> str | None:
    if requested is not None:
        if requested not in columns:
            raise DataError(f"{path}: no {what} column {requested!r}; columns are {list(columns)}")
        return requested
    by_lower = {str(column).lower(): column for column in reversed(list(columns))}  # first of equal names
    found = next((name for name in candidates if name in columns), None) or next(  # else any case: "Structure"
        (by_lower[name.lower()] for name in candidates if name.lower() in by_lower), None)
    if found is None and required:
        raise DataError(f"{path}: no {what} column (tried {list(candidates)}); columns are {list(columns)}")
    return found


def read_table(
    path: str | os.PathLike,
    *,
    structure_column: str | None = None,
    scope_column: str | None = None,
    id_column: str | None = None,
    label_columns: Sequence[str] = (),
    extra_columns: Sequence[str] = (),
) -> datasets.Dataset:
    """Read crystals (and labels) from a file or a folder into a ``datasets.Dataset``.

    Output columns: ``id`` (str, unique: the id column's value as written, the row number where it is missing, a
    repeated id suffixed ``#2``, ``#3``, ...; see :func:`unique_ids`), ``row`` (0-based position in the file), ``source`` (the path), then
    either ``structure`` (text: CIF, POSCAR, pymatgen-dict JSON or pmg-str) or, where ``scope_column``
    is given, ``scope`` (ready SCOPE strings); each label column as float (NaN where missing); each extra
    column as is; ``error`` (None, or why the row cannot be used: an empty structure cell, a NaN label).
    A missing *column* is a :class:`DataError` naming the file; a missing *value* is a row error.

    Files are read :data:`CHUNK_ROWS` rows at a time (folders file by file) into an Arrow file that the dataset
    memory-maps (in ``datasets``' temporary cache folder, removed when the process ends), so a table larger than
    memory can be read; columns are those of the first chunk (a JSON Lines key first met later is not read).
    The dataset's fingerprint is a hash of that file's content: the same input gives the same fingerprint, and
    the ``cache_dir`` caches of :func:`add_scope_column` and :func:`add_token_columns` are found again.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    chunks = _folder_chunks(path) if path.is_dir() else _frame_chunks(path, id_column)
    first = next(chunks)
    columns = list(first.columns)
    if scope_column is None and structure_column is None:
        structure_column = _pick(columns, None, STRUCTURE_COLUMN_CANDIDATES, "structure", path, required=False)
        if structure_column is None:
            scope_column = _pick(columns, None, SCOPE_COLUMN_CANDIDATES, "structure or SCOPE", path, True)
    elif scope_column is not None:
        scope_column = _pick(columns, scope_column, (), "SCOPE", path, True)
    else:
        structure_column = _pick(columns, structure_column, (), "structure", path, True)
    id_name = _pick(columns, id_column, ID_COLUMN_CANDIDATES, "id", path, required=False)
    for name in (*label_columns, *extra_columns):
        _pick(columns, name, (), "label" if name in label_columns else "extra", path, True)

    layout = _TableLayout(path=path, text_name=scope_column or structure_column,  # type: ignore[arg-type]
                          text_column=SCOPE_COLUMN if scope_column is not None else STRUCTURE_COLUMN,
                          id_name=id_name, label_columns=tuple(label_columns))
    extra_parts: dict[str, list[pd.Series]] = {name: [] for name in extra_columns}
    file = Path(get_temporary_cache_files_directory()) / f"table-{uuid.uuid4().hex}.arrow"
    n_rows = 0
    try:
        with ArrowWriter(features=layout.features, path=str(file)) as writer:
            for frame in itertools.chain([first], chunks):
                frame = _with_columns(frame, [name for name in (layout.text_name, id_name, *label_columns,
                                                                *extra_columns) if name is not None])
                writer.write_table(layout.arrow_table(frame, n_rows))
                for name in extra_columns:
                    extra_parts[name].append(frame[name])
                n_rows += len(frame)
            writer.finalize()
    except BaseException:
        file.unlink(missing_ok=True)
        raise
    fingerprint = _file_fingerprint(file)
    dataset = datasets.Dataset(MemoryMappedTable.from_file(str(file)), info=datasets.DatasetInfo(
        features=layout.features), fingerprint=fingerprint)
    dataset = layout.reworded_errors(dataset)
    if id_name is not None:
        dataset = _unique_id_column(dataset)
    for name, parts in extra_parts.items():  # as a whole-file read would type them (pandas joins chunk dtypes)
        values = pd.concat(parts, ignore_index=True).tolist()
        feature = datasets.Features.from_arrow_schema(pa.Table.from_pydict({name: values}).schema)[name]
        if name in dataset.column_names:
            dataset = dataset.remove_columns(name, new_fingerprint=_derived(dataset, f"remove {name}"))
        dataset = dataset.add_column(name, values, feature=feature, new_fingerprint=_derived(dataset, f"extra {name}"))
    order = list(dict.fromkeys([ID_COLUMN, ROW_COLUMN, SOURCE_COLUMN, layout.text_column, *label_columns,
                                *extra_columns, ERROR_COLUMN]))
    if dataset.column_names != order:
        dataset = dataset.select_columns(order, new_fingerprint=_derived(dataset, "order"))
    return dataset


class _TableLayout:
    """The output columns of one :func:`read_table` call and how a chunk of the input frame fills them."""

    def __init__(self, path: Path, text_name: str, text_column: str, id_name: str | None,
                 label_columns: tuple[str, ...]) -> None:
        self.path, self.text_name, self.text_column = path, text_name, text_column
        self.id_name, self.label_columns = id_name, label_columns
        #: label columns that pandas read as text (object) in some chunk
        self.text_labels: set[str] = set()
        #: (row, message, message as a text column words it, column) of each label error from a numeric chunk
        self.numeric_label_errors: list[tuple[int, str, str, str]] = []
        self.features = datasets.Features({
            ID_COLUMN: datasets.Value("string"), ROW_COLUMN: datasets.Value("int64"),
            SOURCE_COLUMN: datasets.Value("string"), text_column: datasets.Value("string"),
            **{name: datasets.Value("float64") for name in label_columns},
            ERROR_COLUMN: datasets.Value("string"),
        })

    def reworded_errors(self, dataset: datasets.Dataset) -> datasets.Dataset:
        """``dataset`` with the label errors of numeric chunks worded as a text column words them, where the label
        column is text in another chunk: the messages a whole-file read (one column type) writes."""
        changes = [(row, old, new) for row, old, new, name in self.numeric_label_errors if name in self.text_labels]
        if not changes:
            return dataset
        errors = dataset.data.column(ERROR_COLUMN).to_pylist()
        for row, old, new in changes:
            if errors[row] == old:
                errors[row] = new
        dataset = dataset.remove_columns(ERROR_COLUMN, new_fingerprint=_derived(dataset, "remove errors"))
        return dataset.add_column(ERROR_COLUMN, errors, feature=datasets.Value("string"),
                                  new_fingerprint=_derived(dataset, "label errors"))

    def arrow_table(self, frame: pd.DataFrame, start: int) -> pa.Table:
        """The rows of ``frame`` (rows ``start``, ``start + 1``, ... of the file) as an Arrow table; ids as written
        (None where missing; made unique once the whole file is read), the row number where the file has none."""
        n_rows = len(frame)
        read_errors = frame.attrs.get(READ_ERRORS)
        errors: list[str | None] = list(read_errors) if read_errors else [None] * n_rows
        rows = list(range(start, start + n_rows))
        table: dict[str, list] = {
            ID_COLUMN: [_id_text(value) for value in frame[self.id_name]] if self.id_name else [str(r) for r in rows],
            ROW_COLUMN: rows,
            SOURCE_COLUMN: [str(self.path)] * n_rows,
        }
        texts = [_structure_to_text(v) for v in frame[self.text_name]]
        for index, text in enumerate(texts):
            if errors[index] is None and (text is None or not text.strip()):
                errors[index] = f"empty {self.text_name!r} cell"
        table[self.text_column] = texts
        for name in self.label_columns:
            values = pd.to_numeric(frame[name], errors="coerce").astype(float).tolist()
            as_text = not pd.api.types.is_numeric_dtype(frame[name].dtype)
            if as_text:
                self.text_labels.add(name)
            for index, value in enumerate(values):
                if not math.isfinite(value) and errors[index] is None:
                    raw = frame[name].iloc[index]
                    errors[index] = f"label {name!r} is {raw!r} (not a finite number)"
                    if not as_text:  # worded as in a text column, should a later chunk make it one
                        self.numeric_label_errors.append((start + index, errors[index],
                                                          f"label {name!r} is {_as_python(raw)!r} (not a finite number)",
                                                          name))
            table[name] = values
        table[ERROR_COLUMN] = errors
        return pa.Table.from_pydict(table, schema=self.features.arrow_schema)


def _as_python(value: Any) -> Any:
    """A numpy scalar as the Python value a text (object) column holds in its place (``np.float64(nan)`` → nan)."""
    return value.item() if isinstance(value, np.generic) else value


def _with_columns(frame: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """``frame`` with each of ``names`` it lacks added as missing values (a JSON Lines chunk without a key)."""
    missing = [name for name in dict.fromkeys(names) if name not in frame.columns]
    if not missing:
        return frame
    frame = frame.copy()
    for name in missing:
        frame[name] = np.nan
    return frame


def _file_fingerprint(path: Path) -> str:
    """A ``datasets`` fingerprint from a file's bytes (BLAKE2b, read in blocks)."""
    digest = hashlib.blake2b(b"cloud_hf.read_table/1", digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _derived(dataset: datasets.Dataset, step: str) -> str:
    """The fingerprint of ``dataset`` after a deterministic ``step`` (named, not hashed from its arguments)."""
    return hashlib.blake2b(f"{dataset._fingerprint}/{step}".encode(), digest_size=16).hexdigest()


def _unique_id_column(dataset: datasets.Dataset) -> datasets.Dataset:
    """``dataset`` with its ``id`` column made unique by :func:`unique_ids` (unchanged, and not read into Python,
    where every row has an id and no id repeats: the usual case)."""
    written = dataset.data.column(ID_COLUMN)
    if written.null_count == 0 and pc.count_distinct(written).as_py() == len(written):
        return dataset
    ids = unique_ids(written.to_pylist())
    dataset = dataset.remove_columns(ID_COLUMN, new_fingerprint=_derived(dataset, "remove id"))
    return dataset.add_column(ID_COLUMN, ids, feature=datasets.Value("string"),
                              new_fingerprint=_derived(dataset, "unique ids"))


def read_tables(paths: Sequence[str | os.PathLike], **kwargs: Any) -> datasets.Dataset:
    """:func:`read_table` on each path and concatenate (same options for all; ``source`` tells them apart)."""
    return datasets.concatenate_datasets([read_table(p, **kwargs) for p in paths])


# ----------------------------------------------------------------------------------------------------
# SCOPE and tokenization maps
# ----------------------------------------------------------------------------------------------------


def _cache_file(cache_dir: str | os.PathLike | None, stage: str, dataset: datasets.Dataset,
                settings: Any) -> str | None:
    """A cache file name that changes whenever the input rows or the settings change."""
    if cache_dir is None:
        return None
    key = hashlib.sha256(json.dumps([dataset._fingerprint, settings], sort_keys=True, default=str).encode())
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return str(Path(cache_dir) / f"{stage}-{key.hexdigest()[:20]}.arrow")


def add_scope_column(dataset: datasets.Dataset, encoder: Any, *, num_proc: int | None = None,
                     batch_size: int = 64, cache_dir: str | os.PathLike | None = None) -> datasets.Dataset:
    """Encode the ``structure`` column into a ``scope`` column with ``encoder`` (a ``ScopeEncoder``).

    The encoding is the encoder's own map function (:meth:`ScopeEncoder.map_dataset`); a row it cannot
    encode gets the reason in ``error`` (an earlier error of the row, e.g. a NaN label, is kept). A table
    that already carries ``scope`` (and no ``structure``) is returned unchanged. ``num_proc`` spreads the
    work over processes; ``cache_dir`` stores the result so a second run skips the encoding.
    """
    if STRUCTURE_COLUMN not in dataset.column_names:
        if SCOPE_COLUMN in dataset.column_names:
            return dataset
        raise DataError(f"dataset has neither {STRUCTURE_COLUMN!r} nor {SCOPE_COLUMN!r} column")
    settings = encoder.to_dict()
    num_proc = num_proc if num_proc and num_proc > 1 and len(dataset) >= 2 * batch_size else None
    encoded = encoder.map_dataset(
        dataset, input_column=STRUCTURE_COLUMN, output_column=SCOPE_COLUMN, error_column=SCOPE_ERROR_COLUMN,
        id_column=ID_COLUMN, batch_size=batch_size, num_proc=num_proc,
        cache_file_name=_cache_file(cache_dir, "scope", dataset, settings), desc="SCOPE encoding",
    )
    return encoded.map(_merge_scope_errors, batched=True, remove_columns=[SCOPE_ERROR_COLUMN],
                       desc="collecting SCOPE errors")


def _merge_scope_errors(batch: dict[str, list]) -> dict[str, list]:
    """Fold the encoder's ``scope_error`` into the row's ``error`` (the first error of a row wins)."""
    return {ERROR_COLUMN: [row_error or scope_error
                           for row_error, scope_error in zip(batch[ERROR_COLUMN], batch[SCOPE_ERROR_COLUMN])]}


class TokenMapper:
    """Batched ``Dataset.map`` function: ``scope`` → ``input_ids``/``attention_mask``; a row the model cannot read
    as it is (too many tokens, a token outside the vocabulary) becomes an error row, by the processor's check
    (:meth:`cloud_hf.processing_cloud.CloudProcessor.check_token_ids`, the one length and unknown-token policy)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        from cloud_hf.processing_cloud import CloudProcessor

        self.tokenizer = tokenizer
        self.max_length = max_length
        self.processor = CloudProcessor(tokenizer, max_length=max_length)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        errors: list[str | None] = list(batch[ERROR_COLUMN])
        usable = [i for i, scope in enumerate(batch[SCOPE_COLUMN]) if errors[i] is None and scope]
        # verbose=False: a row too long for the model is an error row below, not a transformers warning
        encoded = self.tokenizer([batch[SCOPE_COLUMN][i] for i in usable], truncation=False, verbose=False)
        input_ids: list[list[int]] = [[] for _ in errors]
        attention_mask: list[list[int]] = [[] for _ in errors]
        for position, index in enumerate(usable):
            ids = encoded["input_ids"][position]
            try:
                self.processor.check_token_ids(batch[SCOPE_COLUMN][index], ids, name=f"id {batch[ID_COLUMN][index]!r}")
            except CrystalInputError as error:
                errors[index] = str(error)
                continue
            input_ids[index] = ids
            attention_mask[index] = encoded["attention_mask"][position]
        for index, scope in enumerate(batch[SCOPE_COLUMN]):
            if errors[index] is None and not scope:
                errors[index] = f"id {batch[ID_COLUMN][index]!r}: empty SCOPE string"
        return {"input_ids": input_ids, "attention_mask": attention_mask, ERROR_COLUMN: errors}


def add_token_columns(dataset: datasets.Dataset, tokenizer: Any, max_length: int, *,
                      num_proc: int | None = None, batch_size: int = 1000,
                      cache_dir: str | os.PathLike | None = None) -> datasets.Dataset:
    """Tokenize the ``scope`` column; a row longer than ``max_length`` tokens (with [CLS]/[SEP]) is an error row."""
    settings = {"vocab": hashlib.sha256(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode()).hexdigest(),
                "max_length": max_length, "class": type(tokenizer).__name__}
    num_proc = num_proc if num_proc and num_proc > 1 and len(dataset) >= 2 * batch_size else None
    return dataset.map(TokenMapper(tokenizer, max_length), batched=True, batch_size=batch_size,
                       num_proc=num_proc, cache_file_name=_cache_file(cache_dir, "tokens", dataset, settings),
                       desc="Tokenizing")


class FeatureMapper:
    """Batched ``Dataset.map`` function: ``structure`` → one column per structure feature (its model input name,
    e.g. ``cell_features``), computed as the processor computes them (:func:`cloud_hf.features.feature_values`), so
    a recipe's rows carry the numbers the pipeline would give the same crystal. A row the
    features refuse (e.g. the cell descriptors refuse a layer in vacuum) becomes an error row (its values zeros)."""

    def __init__(self, features: Sequence[str], min_distance: float | None = None) -> None:
        self.features = list(features)
        self.min_distance = min_distance

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        from cloud_hf.features import feature_values, get_features
        from cloud_hf.structures import MIN_INTERATOMIC_DISTANCE, failure_message, load_cell

        errors: list[str | None] = list(batch[ERROR_COLUMN])
        features = get_features(self.features)
        columns: dict[str, list] = {feature.input_name: [] for feature in features}
        for index, value in enumerate(batch[STRUCTURE_COLUMN]):
            values = None
            if errors[index] is None:
                name = f"id {batch[ID_COLUMN][index]!r}"
                try:
                    cell = load_cell(value, name=name, min_distance=self.min_distance or MIN_INTERATOMIC_DISTANCE)
                    values = feature_values(features, cell)
                except Exception as error:  # any failure stays in its row, as in SCOPE encoding
                    errors[index] = failure_message(error, name)
            for feature in features:
                columns[feature.input_name].append(list(values[feature.input_name]) if values
                                                   else [0.0] * feature.size)
        return {**columns, ERROR_COLUMN: errors}


def add_feature_columns(dataset: datasets.Dataset, features: Sequence[str], *, num_proc: int | None = None,
                        batch_size: int = 64, min_distance: float | None = None,
                        cache_dir: str | os.PathLike | None = None) -> datasets.Dataset:
    """Add the structure features ``features`` (registered names, :mod:`cloud_hf.features`) of each row's
    ``structure``, each as the float-list column of its model input name; a row whose features cannot be computed
    gets the reason in ``error``. A table of ready SCOPE strings has no cell to describe: :class:`DataError`."""
    if not features:
        return dataset
    if STRUCTURE_COLUMN not in dataset.column_names:
        raise DataError(f"the model reads the structure features {list(features)}, computed from each crystal's "
                        f"cell: the table needs a {STRUCTURE_COLUMN!r} column (CIF, POSCAR, pymatgen dict), not only "
                        "SCOPE strings")
    from cloud_hf.features import get_features

    settings = {name: feature.version for name, feature in zip(features, get_features(features))}
    num_proc = num_proc if num_proc and num_proc > 1 and len(dataset) >= 2 * batch_size else None
    return dataset.map(FeatureMapper(features, min_distance), batched=True, batch_size=batch_size, num_proc=num_proc,
                       cache_file_name=_cache_file(cache_dir, "features", dataset,
                                                   {"features": settings, "min_distance": min_distance}),
                       desc="Structure features")


# ----------------------------------------------------------------------------------------------------
# bad rows, de-duplication, splits
# ----------------------------------------------------------------------------------------------------


def split_bad_rows(dataset: datasets.Dataset) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``(good, bad)``: rows without and with an ``error``, each in input order (the ``error`` column is read in
    Arrow batches, never as one Python list)."""
    if len(dataset) == 0:
        return dataset.select([]), dataset.select([])
    missing = np.concatenate([batch.column(0).is_null().to_numpy(zero_copy_only=False)
                              for batch in _arrow_batches(dataset, ERROR_COLUMN)])
    return dataset.select(np.flatnonzero(missing)), dataset.select(np.flatnonzero(~missing))


def _arrow_batches(dataset: datasets.Dataset, column: str) -> Iterator[pa.Table]:
    """``dataset``'s ``column`` (its selected rows, in order) as Arrow tables of :data:`CHUNK_ROWS` rows."""
    return dataset.select_columns([column]).with_format("arrow").iter(batch_size=CHUNK_ROWS)


def error_reasons(bad: datasets.Dataset) -> Counter:
    """Count bad rows by reason (the error message without the row-specific part)."""
    def reason(message: str) -> str:
        message = re.sub(r"^(id '[^']*'|id=\S+?):\s*", "", message)  # token and SCOPE errors name the row so
        return re.sub(r"\d+ tokens", "N tokens", message)[:100]

    return Counter(reason(m) for m in bad[ERROR_COLUMN])


def write_bad_rows(bad: datasets.Dataset, path: str | os.PathLike) -> Path:
    """Write ``source``, ``row``, ``id`` and ``error`` of every bad row to a CSV file (written even when empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [c for c in (SOURCE_COLUMN, ROW_COLUMN, ID_COLUMN, ERROR_COLUMN) if c in bad.column_names]
    pd.DataFrame({c: bad[c] for c in columns}, columns=columns).to_csv(path, index=False)
    return path


def drop_duplicates(dataset: datasets.Dataset, column: str = SCOPE_COLUMN) -> datasets.Dataset:
    """Keep the first row of every distinct value of ``column`` (e.g. one row per SCOPE string).

    A text column is compared by a 128-bit BLAKE2b digest of each value's UTF-8 bytes (None apart from every
    string), computed from the Arrow buffers batch by batch; the first row of each digest is found with numpy. So
    memory grows by 16 bytes a row (plus numpy's sort), never by the strings, and the kept rows are exactly those a
    Python set of the values keeps (two different strings would need the same 128-bit digest to be merged). Any
    other column is compared as Python values.
    """
    feature = dataset.features[column]
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        return _drop_duplicate_values(dataset, column)
    digests = np.empty(len(dataset), dtype="S16")
    start = 0
    for batch in _arrow_batches(dataset, column):
        for array in batch.column(0).chunks:
            digests[start:start + len(array)] = np.frombuffer(text_digests(array), dtype="S16")
            start += len(array)
    _, first = np.unique(digests, return_index=True)  # a stable sort: the index of each digest's first row
    return dataset.select(np.sort(first))


def _drop_duplicate_values(dataset: datasets.Dataset, column: str) -> datasets.Dataset:
    """:func:`drop_duplicates` for a column that is not text: a set of the Python values."""
    seen: set[Any] = set()
    keep = []
    for index, value in enumerate(dataset[column]):
        if value not in seen:
            seen.add(value)
            keep.append(index)
    return dataset.select(keep)


_NULL_DIGEST = hashlib.blake2b(b"", digest_size=16, person=b"cloud_hf:null").digest()


def text_digests(array: pa.Array) -> bytes:
    """The 16-byte BLAKE2b digest of each value of an Arrow text array, concatenated (a null has its own digest,
    equal to no string's), read from the array's buffers without making Python strings."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.large_string())
    _, offsets_buffer, data_buffer = array.buffers()
    offset_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[array.offset:array.offset + len(array) + 1].tolist()
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    valid = array.is_valid().to_pylist() if array.null_count else None
    out = bytearray()
    for index in range(len(array)):
        if valid is not None and not valid[index]:
            out += _NULL_DIGEST
        else:
            out += hashlib.blake2b(data[offsets[index]:offsets[index + 1]], digest_size=16,
                                   person=b"cloud_hf:text").digest()
    return bytes(out)


def random_split_indices(n_rows: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split ``range(n_rows)`` into disjoint shuffled parts of the given fractions (the last takes the rest)."""
    order = np.random.default_rng(seed).permutation(n_rows)
    bounds = np.cumsum([round(f * n_rows) for f in fractions[:-1]])
    return [np.sort(part) for part in np.split(order, bounds)]


def label_statistics(dataset: datasets.Dataset, label_columns: Sequence[str]) -> tuple[list[float], list[float]]:
    """Mean and standard deviation (physical units) of each label column, for target standardisation."""
    values = np.array([dataset[name] for name in label_columns], dtype=float)
    std = values.std(axis=1)
    return values.mean(axis=1).tolist(), np.where(std > 0, std, 1.0).tolist()


__all__ = [
    "TAB_SEPARATED_SUFFIXES",
    "DataError",
    "FeatureMapper",
    "TokenMapper",
    "add_feature_columns",
    "add_scope_column",
    "add_token_columns",
    "drop_duplicates",
    "error_reasons",
    "label_statistics",
    "random_split_indices",
    "read_table",
    "read_tables",
    "split_bad_rows",
    "unique_ids",
    "write_bad_rows",
]
