"""Collect crystals from command-line paths: structure files, folders of them, and tables of structures.

    >>> from cloud_hf.inputs import collect_crystals
    >>> [item.name for item in collect_crystals([Path("examples")])]  # doctest: +SKIP
    ['examples/CsCl.cif', 'examples/Li2O_antifluorite.cif', ...]

Nothing is skipped: every file (every data block of a multi-crystal CIF), every row of every table, and every
subfolder or unreadable entry of a folder becomes one :class:`CrystalInput`, in order;
one that cannot be read carries its ``error`` instead of a crystal, so a batch command can report it in its
own output row. Structure files are not parsed here (a CIF with several ``data_`` lines is only split into its
blocks): ``cloud_hf.structures`` reads them when they are used.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_hf.data import STRUCTURE_COLUMN, DataError, read_table
from cloud_hf.errors import CrystalInputError
from cloud_hf.formats import TABLE_SUFFIXES, is_cif_file_name, table_format
from cloud_hf.structures import cif_blocks


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

    A folder contributes each visible entry in it, sorted by name and not recursively: a file as below, a
    subfolder or an entry that is no readable file (a broken link, a symlink loop) as an input with an error
    saying so. A CSV/JSON/JSONL table gives one input per row (read with ``cloud_hf.data.read_table``; a
    table without rows, one input with that error); a CIF with several crystal data blocks one input per
    block, named ``path:block``; any other file is one structure, read later by ``cloud_hf.structures``.
    Nothing is skipped: an unreadable input gives an input with an error.
    """
    for path in map(Path, paths):
        if _is_dir(path):
            entries = sorted(child for child in path.iterdir() if not child.name.startswith("."))
            if not entries:
                yield CrystalInput(name=str(path), error=f"{path}: empty folder")
            for entry in entries:
                if _is_dir(entry):
                    yield CrystalInput(
                        name=str(entry),
                        error=f"{entry}: a subfolder, not read (folders are read one level deep; name it to read it)",
                    )
                else:
                    yield from _crystals_in_file(entry, structure_column, id_column)
        else:
            yield from _crystals_in_file(path, structure_column, id_column)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a symlink loop on some Python versions
        return False


def _crystals_in_file(path: Path, structure_column: str | None, id_column: str | None) -> Iterator[CrystalInput]:
    if path.is_symlink() and not path.exists():
        yield CrystalInput(name=str(path), error=f"{path}: a broken symbolic link or a symlink loop")
    elif not path.exists():
        yield CrystalInput(name=str(path), error=f"{path}: no such file or folder")
    elif not path.is_file():
        yield CrystalInput(name=str(path), error=f"{path}: not a regular file")
    elif table_format(path) is not None:
        yield from _crystals_in_table(path, structure_column, id_column)
    elif is_cif_file_name(path):
        yield from _crystals_in_cif(path)
    else:
        yield CrystalInput(name=str(path), crystal=path)


def _crystals_in_cif(path: Path) -> Iterator[CrystalInput]:
    """The file itself, or one input per data block (``path:block``) where it holds several crystals."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        yield CrystalInput(name=str(path), error=f"{path}: cannot read the file: {error.strerror or error}")
        return
    if len(re.findall(r"^\s*data_", text, flags=re.MULTILINE | re.IGNORECASE)) < 2:
        yield CrystalInput(name=str(path), crystal=path)
        return
    try:
        blocks = cif_blocks(text, label=str(path))
    except CrystalInputError:  # not readable as CIF at all: the encoder reports why, in this file's row
        blocks = []
    if len(blocks) < 2:
        yield CrystalInput(name=str(path), crystal=path)
        return
    for block_name, block_text in blocks:
        yield CrystalInput(name=f"{path}:{block_name}", crystal=block_text)


def _crystals_in_table(path: Path, structure_column: str | None, id_column: str | None) -> Iterator[CrystalInput]:
    """One input per table row, named ``path:id``; a table that cannot be read, or has no rows, is one failed input."""
    try:
        table = read_table(path, structure_column=structure_column, id_column=id_column)
    except Exception as error:  # a corrupt .gz, bad encoding, ...: the table's own row says why
        message = str(error) if isinstance(error, DataError) else f"{path}: unreadable table ({type(error).__name__}: {error})"
        yield CrystalInput(name=str(path), error=" ".join(message.split()))  # one line, whatever the reader said
        return
    if STRUCTURE_COLUMN not in table.column_names:
        yield CrystalInput(name=str(path), error=f"{path}: the table has SCOPE strings but no structure column")
        return
    if len(table) == 0:
        yield CrystalInput(name=str(path), error=f"{path}: the table has no rows (a header only)")
        return
    for row in table:
        name = f"{path}:{row['id']}"
        if row["error"] is not None:
            yield CrystalInput(name=name, error=f"{name}: {row['error']}")
            continue
        yield CrystalInput(name=name, crystal=row[STRUCTURE_COLUMN])  # text, read by cloud_hf.structures


__all__ = ["TABLE_SUFFIXES", "CrystalInput", "collect_crystals"]
