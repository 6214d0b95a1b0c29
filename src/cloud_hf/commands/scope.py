"""``cloud-hf scope``: SCOPE strings for CIF/POSCAR files, folders of them, or tables with a structure column.

Every input comes out as one row ``id, scope, error`` (CSV, a JSON array for ``.json``, JSON lines for ``.jsonl``), in
input order; a bad input has an empty scope and the reason. Inputs are collected as for ``cloud-hf predict``
(:func:`cloud_hf.inputs.collect_crystals`): every file of a folder is one row, every row of a table is one
row. The exit code is 1 only when nothing could be encoded.

Examples::

    cloud-hf scope NaCl.cif structures/                       # CSV on stdout
    cloud-hf scope --mode reference --output out.jsonl data.csv.gz --input-column cif
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from cloud_hf.cli import plain_text
from cloud_hf.commands.outputs import RowWriter, output_path_problem

PROGRESS_BAR_THRESHOLD = 100


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cloud-hf scope``."""
    parser = subparsers.add_parser(
        "scope",
        help="encode crystal structures as SCOPE strings",
        description=plain_text(__doc__),
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
                        help="structure column of a table (default: structure, cif, poscar or atoms, the first present)")
    parser.add_argument("--id-column", default=None,
                        help="id column of a table (default: id, material_id, ... where present, else the row number)")
    parser.add_argument("--output", type=Path, default=None,
                        help="output file, .csv, .json or .jsonl (default: CSV on stdout)")
    parser.add_argument("--num-proc", type=int, default=1, help="worker processes (default 1)")
    parser.set_defaults(func=run_scope)


def run_scope(args: argparse.Namespace) -> int:
    """Encode every input of ``args.paths``; write id, scope, error rows as they come; 1 if nothing was encoded.

    The settings and the output path are checked before any crystal is read (one line on stderr, exit code 2).
    """
    from tqdm.auto import tqdm

    from cloud_hf.inputs import collect_crystals
    from cloud_hf.scope import ScopeEncoder

    problem = output_path_problem(args.output, "--output") if args.output is not None else None
    if problem is None and args.num_proc < 1:
        problem = f"--num-proc must be >= 1, got {args.num_proc}"
    if problem is None:
        try:
            encoder = ScopeEncoder(args.mode, args.backend, args.symprec, args.angle_tolerance)
        except ValueError as error:
            problem = str(error)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    items = list(collect_crystals(args.paths, structure_column=args.input_column, id_column=args.id_column))
    payloads = ((encoder.to_dict(), item) for item in items)
    encoded = 0
    with contextlib.ExitStack() as stack:
        if args.num_proc > 1:
            pool = stack.enter_context(ProcessPoolExecutor(args.num_proc))
            rows = pool.map(_encode_one, payloads, chunksize=32)
        else:
            rows = map(_encode_one, payloads)
        writer = stack.enter_context(RowWriter(args.output))
        for item, (scope, error) in zip(items, tqdm(rows, total=len(items), unit="structure",
                                                    disable=len(items) < PROGRESS_BAR_THRESHOLD)):
            writer.write({"id": item.name, "scope": scope, "error": error})
            encoded += scope is not None
    print(f"encoded {encoded} of {len(items)} inputs ({encoder.version})", file=sys.stderr)
    return 0 if encoded else 1


def _encode_one(payload: tuple[dict[str, Any], Any]) -> tuple[str | None, str | None]:
    """Worker: ``(scope, None)`` or ``(None, error)`` for one ``CrystalInput`` (errors name the input)."""
    from cloud_hf.scope.encoder import cached_encoder
    from cloud_hf.structures import failure_message

    settings, item = payload
    if item.error is not None:
        return None, item.error
    try:
        return cached_encoder(settings).encode(item.crystal, name=item.name), None
    except Exception as error:  # any failure of one input stays in its row (MemoryError included)
        return None, failure_message(error, item.name)
