"""The file-name rules of every input: which names are structure files (CIF, POSCAR) and which are tables.

    >>> table_format("train.csv.gz"), table_format("POSCAR"), is_cif_file_name("x.mcif")
    ('csv', None, True)

One home for these rules: :mod:`cloud_hf.structures` (which reader a path goes to), :mod:`cloud_hf.data` (how a
table is parsed, which files of a folder are rows) and :mod:`cloud_hf.inputs` (which command-line files are
tables) all ask here. Names only: no file is opened, and nothing here depends on pymatgen.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CIF_SUFFIXES = (".cif", ".mcif")
"""Suffixes (any case) of CIF files, magnetic CIFs (magCIF) included."""

POSCAR_FILE_NAME = re.compile(r"POSCAR|CONTCAR|\.(vasp|poscar)$", re.IGNORECASE)
"""File names read as POSCAR (``search``: any name containing POSCAR or CONTCAR, as pymatgen's
``Structure.from_file`` decides, or ending in ``.vasp`` / ``.poscar``)."""

GZIP_SUFFIX = ".gz"
"""Suffix of a gzip-compressed table (``train.csv.gz``)."""

TABLE_FORMATS = {
    "csv": (".csv",),
    "tsv": (".tsv", ".tab"),
    "jsonl": (".jsonl",),
    "json": (".json",),
}
"""Table format → the suffixes (any case, before an optional :data:`GZIP_SUFFIX`) that name it. ``tsv`` is
recognised only to be refused with a message that says so (tables are comma-separated CSV)."""

TAB_SEPARATED_SUFFIXES = TABLE_FORMATS["tsv"]
"""Suffixes of tab-separated tables."""

TABLE_SUFFIXES = (*TABLE_FORMATS["csv"], *TABLE_FORMATS["json"], *TABLE_FORMATS["jsonl"])
"""Suffixes of the tables that are read (optionally ``.gz``-compressed); any other file is one structure."""


def _name(path: str | os.PathLike) -> str:
    return Path(path).name


def is_cif_file_name(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a CIF file (a :data:`CIF_SUFFIXES` suffix)."""
    return Path(path).suffix.lower() in CIF_SUFFIXES


def is_poscar_file_name(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a POSCAR file (:data:`POSCAR_FILE_NAME`)."""
    return POSCAR_FILE_NAME.search(_name(path)) is not None


def is_structure_file_name(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a structure file a folder table reads: a CIF or a POSCAR."""
    return is_cif_file_name(path) or is_poscar_file_name(path)


def table_format(path: str | os.PathLike) -> str | None:
    """The :data:`TABLE_FORMATS` key ``path`` names (``"csv"``, ``"tsv"``, ``"jsonl"``, ``"json"``), ignoring case and
    a ``.gz`` suffix; ``None`` where it names no table."""
    name = _name(path).lower().removesuffix(GZIP_SUFFIX)
    return next((kind for kind, suffixes in TABLE_FORMATS.items() if name.endswith(suffixes)), None)


def is_gzipped(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read through gzip: its last suffix is ``.gz`` as written (lower case)."""
    return Path(path).suffix == GZIP_SUFFIX


__all__ = [
    "CIF_SUFFIXES",
    "GZIP_SUFFIX",
    "POSCAR_FILE_NAME",
    "TABLE_FORMATS",
    "TABLE_SUFFIXES",
    "TAB_SEPARATED_SUFFIXES",
    "is_cif_file_name",
    "is_gzipped",
    "is_poscar_file_name",
    "is_structure_file_name",
    "table_format",
]
