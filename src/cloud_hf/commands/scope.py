"""``cloud-hf scope``: SCOPE strings for CIF/POSCAR files, folders of them, or tables with a structure column.

Every input comes out as one row ``id, scope, error`` (CSV, or JSON lines for a ``.jsonl`` output), in
input order; a bad input has an empty scope and the reason. The exit code is 1 only when nothing could
be encoded.

Examples::

    cloud-hf scope NaCl.cif structures/                       # CSV on stdout
    cloud-hf scope --mode reference --output out.jsonl data.csv.gz --input-column cif
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

STRUCTURE_FILE_SUFFIXES = (".cif", ".vasp", ".poscar")
STRUCTURE_FILE_PREFIXES = ("POSCAR", "CONTCAR")
TABLE_SUFFIXES = (".csv", ".json", ".jsonl")
DEFAULT_INPUT_COLUMNS = ("cif", "structure", "poscar")
DEFAULT_ID_COLUMNS = ("material_id", "id")
PROGRESS_BAR_THRESHOLD = 100


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cloud-hf scope``."""
    parser = subparsers.add_parser(
        "scope",
        help="encode crystal structures as SCOPE strings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="CIF/POSCAR files, folders of them, or CSV/JSON/JSONL tables (optionally .gz)")
    parser.add_argument("--mode", choices=("canonical", "reference"), default="canonical",
                        help="canonical (default) or reference (byte-identical to the CLOUD reference encoder)")
    parser.add_argument("--backend", choices=("moyopy", "spglib"), default=None,
                        help="symmetry search (canonical default moyopy; reference mode always uses spglib)")
    parser.add_argument("--symprec", type=float, default=None,
                        help="distance tolerance in Å (canonical default 0.1, reference 0.01)")
    parser.add_argument("--angle-tolerance", type=float, default=None,
                        help="angle tolerance in degrees (canonical default: none, reference 5)")
    parser.add_argument("--input-column", default=None,
                        help=f"structure column of a table (default: the first of {', '.join(DEFAULT_INPUT_COLUMNS)})")
    parser.add_argument("--id-column", default=None,
                        help=f"id column of a table (default: {' or '.join(DEFAULT_ID_COLUMNS)}, else file:row)")
    parser.add_argument("--output", type=Path, default=None,
                        help="output file, .csv or .jsonl (default: CSV on stdout)")
    parser.add_argument("--num-proc", type=int, default=1, help="worker processes (default 1)")
    parser.set_defaults(func=run_scope)


def run_scope(args: argparse.Namespace) -> int:
    """Encode every input of ``args.paths``; write id, scope, error rows; 1 if nothing was encoded."""
    from tqdm.auto import tqdm

    from cloud_hf.scope import ScopeEncoder

    try:
        encoder = ScopeEncoder(args.mode, args.backend, args.symprec, args.angle_tolerance)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    items = list(iter_inputs(args.paths, args.input_column, args.id_column))
    ids = [item_id for item_id, _ in items]
    payloads = [(encoder.to_dict(), item_id, obj) for item_id, obj in items]
    if args.num_proc > 1:
        with ProcessPoolExecutor(args.num_proc) as pool:
            results = pool.map(_encode_one, payloads, chunksize=32)
            rows = list(tqdm(results, total=len(items), disable=len(items) < PROGRESS_BAR_THRESHOLD, unit="structure"))
    else:
        rows = [_encode_one(payload) for payload in tqdm(payloads, disable=len(items) < PROGRESS_BAR_THRESHOLD, unit="structure")]
    write_rows(ids, rows, args.output)
    encoded = sum(scope is not None for scope, _ in rows)
    print(f"encoded {encoded} of {len(rows)} inputs ({encoder.version})", file=sys.stderr)
    return 0 if encoded else 1


def _encode_one(payload: tuple[dict[str, Any], str, Any]) -> tuple[str | None, str | None]:
    """Worker: ``(scope, None)`` or ``(None, error)`` for one input (errors named by its id)."""
    from cloud_hf.scope import ScopeError
    from cloud_hf.scope.encoder import cached_encoder

    settings, item_id, obj = payload
    if isinstance(obj, _InputError):
        return None, f"{item_id}: {obj.reason}"
    try:
        return cached_encoder(settings).encode(obj, name=item_id), None
    except ScopeError as error:
        return None, str(error)


class _InputError:
    """A placeholder input for a row that could not even be read (missing column, unreadable table)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def iter_inputs(paths: list[Path], input_column: str | None, id_column: str | None) -> Iterator[tuple[str, Any]]:
    """``(id, structure input)`` for every structure in ``paths``, in order; bad tables give one error item."""
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and is_structure_file(p)):
                yield str(file), file
        elif _base_suffix(path) in TABLE_SUFFIXES:
            yield from _iter_table(path, input_column, id_column)
        else:
            yield str(path), path


def is_structure_file(path: Path) -> bool:
    """Whether a file in a folder looks like a CIF or POSCAR."""
    return path.suffix.lower() in STRUCTURE_FILE_SUFFIXES or path.name.startswith(STRUCTURE_FILE_PREFIXES)


def _base_suffix(path: Path) -> str:
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV, JSON (list of records, or pandas ``orient="split"``) or JSON-lines table."""
    kind = _base_suffix(path)
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    if kind == ".csv":
        import pandas as pd

        with opener(path, "rt") as handle:  # leading '# comment' lines (e.g. a citation) are skipped
            comment_lines = 0
            while handle.readline().startswith("#"):
                comment_lines += 1
        return pd.read_csv(path, skiprows=comment_lines, dtype=str, keep_default_na=False).to_dict("records")
    with opener(path, "rt") as handle:
        if kind == ".jsonl":
            return [json.loads(line) for line in handle if line.strip()]
        data = json.load(handle)
    if isinstance(data, dict) and {"columns", "data"} <= set(data):
        return [dict(zip(data["columns"], row)) for row in data["data"]]
    if isinstance(data, dict):
        return [{"id": key, **value} if isinstance(value, dict) else {"id": key, "structure": value} for key, value in data.items()]
    return list(data)


def _iter_table(path: Path, input_column: str | None, id_column: str | None) -> Iterator[tuple[str, Any]]:
    try:
        records = _read_records(path)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        yield str(path), _InputError(f"unreadable table: {error}")
        return
    columns = list(records[0]) if records else []
    column = input_column or next((name for name in DEFAULT_INPUT_COLUMNS if name in columns), None)
    if column is None or (records and column not in columns):
        wanted = column or " or ".join(DEFAULT_INPUT_COLUMNS)
        yield str(path), _InputError(f"no structure column {wanted!r} (columns: {', '.join(map(str, columns))})")
        return
    ids = id_column or next((name for name in DEFAULT_ID_COLUMNS if name in columns), None)
    for row, record in enumerate(records):
        item_id = f"{path}:{record[ids]}" if ids and ids in record else f"{path}:{row}"
        value = record.get(column)
        yield item_id, value if value not in (None, "") else _InputError(f"empty {column!r} value")


def write_rows(ids: list[str], rows: list[tuple[str | None, str | None]], output: Path | None) -> None:
    """Write ``id, scope, error`` rows as CSV (stdout or ``.csv``) or JSON lines (``.jsonl``)."""
    if output is not None and _base_suffix(output) == ".jsonl":
        with output.open("w") as handle:
            for item_id, (scope, error) in zip(ids, rows):
                handle.write(json.dumps({"id": item_id, "scope": scope, "error": error}) + "\n")
        return
    handle = output.open("w", newline="") if output is not None else sys.stdout
    try:
        writer = csv.writer(handle)
        writer.writerow(["id", "scope", "error"])
        writer.writerows([item_id, scope or "", error or ""] for item_id, (scope, error) in zip(ids, rows))
    finally:
        if output is not None:
            handle.close()
