"""Collect crystals from command-line paths: structure files, folders of them, and tables of structures.

    >>> from cloud_hf.inputs import collect_crystals
    >>> [item.name for item in collect_crystals([Path("examples")])]  # doctest: +SKIP
    ['examples/CsCl.cif', 'examples/Li2O_antifluorite.cif', ...]

Nothing is skipped: every file, and every row of every table, becomes one :class:`CrystalInput`, in order;
one that cannot be read carries its ``error`` instead of a crystal, so a batch command can report it in its
own output row. Structure files are not parsed here: ``cloud_hf.structures`` reads them when they are used.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_hf.data import STRUCTURE_COLUMN, DataError, read_table

TABLE_SUFFIXES = (".csv", ".json", ".jsonl")
"""File suffixes read as tables of crystals (optionally ``.gz``-compressed); any other file is one structure."""


@dataclass
class CrystalInput:
    """One crystal: how outputs name it, and the crystal (a path, CIF text, dict or Structure) or why it failed."""

    name: str
    crystal: Any = None
    error: str | None = None


def collect_crystals(
    paths: Sequence[str | Path], structure_column: str | None = None, id_column: str | None = None
) -> Iterator[CrystalInput]:
    """One ``CrystalInput`` per crystal named by ``paths``, in order.

    ``structure_column`` and ``id_column`` choose the columns of table inputs (default: ``read_table``'s guess).

    A folder contributes each visible file in it (sorted by name, not recursive); a CSV/JSON/JSONL table one
    input per row (read with ``cloud_hf.data.read_table``); any other file is one structure, read later by
    ``cloud_hf.structures.load_structure``. Nothing is skipped: an unreadable input gives an input with an error.
    """
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(child for child in path.iterdir() if child.is_file() and not child.name.startswith("."))
            if not files:
                yield CrystalInput(name=str(path), error=f"{path}: empty folder")
            for file in files:
                yield from _crystals_in_file(file, structure_column, id_column)
        else:
            yield from _crystals_in_file(path, structure_column, id_column)


def _crystals_in_file(path: Path, structure_column: str | None, id_column: str | None) -> Iterator[CrystalInput]:
    if not path.exists():
        yield CrystalInput(name=str(path), error=f"{path}: no such file or folder")
    elif path.name.lower().removesuffix(".gz").endswith(TABLE_SUFFIXES):
        yield from _crystals_in_table(path, structure_column, id_column)
    else:
        yield CrystalInput(name=str(path), crystal=path)


def _crystals_in_table(path: Path, structure_column: str | None, id_column: str | None) -> Iterator[CrystalInput]:
    """One input per table row, named ``path:id``; a table that cannot be read is one failed input."""
    try:
        table = read_table(path, structure_column=structure_column, id_column=id_column)
    except (DataError, OSError, ValueError) as error:
        yield CrystalInput(name=str(path), error=str(error))
        return
    if STRUCTURE_COLUMN not in table.column_names:
        yield CrystalInput(name=str(path), error=f"{path}: the table has SCOPE strings but no structure column")
        return
    for row in table:
        name = f"{path}:{row['id']}"
        if row["error"] is not None:
            yield CrystalInput(name=name, error=f"{name}: {row['error']}")
            continue
        yield CrystalInput(name=name, crystal=row[STRUCTURE_COLUMN])  # text, read by cloud_hf.structures


__all__ = ["TABLE_SUFFIXES", "CrystalInput", "collect_crystals"]
