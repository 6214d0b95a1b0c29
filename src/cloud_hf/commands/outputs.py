"""Output files of ``cloud-hf scope`` and ``cloud-hf predict``: one rule for both commands.

* The format is the one the suffix names: a table is ``.csv``, ``.json`` (one array of records) or ``.jsonl`` (one
  record per line); a plot is ``.png``, ``.pdf`` or ``.svg`` (:data:`cloud_hf.plotting.PLOT_FORMATS`). Any other
  suffix is refused.
* Every output path is checked before any crystal is read (:func:`output_path_problem`): its folder is created if
  missing, and the file must be creatable there (a path under a file, a read-only place, a folder's name are
  refused). The command then exits with code 2 and one line on stderr, having done no work.
* Rows are written as they come (:class:`RowWriter`), so memory is bounded by a batch, not by the input, and an
  interrupted run keeps the rows written so far.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

TABLE_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}
"""File suffix → table format of ``--output``."""


def table_format(path: Path) -> str | None:
    """``"csv"``, ``"json"`` or ``"jsonl"`` from the suffix of ``path``; ``None`` for any other suffix."""
    return TABLE_FORMATS.get(path.suffix.lower())


def output_path_problem(path: Path, option: str, kind: str = "table") -> str | None:
    """Why ``path`` (given as ``option``) cannot be written as a ``kind`` (``"table"`` or ``"plot"``) output, in
    one line; ``None`` if it can. Creates the missing parent folders; leaves no file behind."""
    from cloud_hf.plotting import PLOT_FORMATS

    suffixes = list(TABLE_FORMATS) if kind == "table" else [f".{name}" for name in PLOT_FORMATS]
    if path.suffix.lower() not in suffixes:
        return (f"{option} {path}: the suffix {path.suffix or '(none)'} names no {kind} format; "
                f"use {', '.join(suffixes[:-1])} or {suffixes[-1]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            return f"{option} {path}: a folder, not a file"
        if path.exists():
            with path.open("a"):  # writable as it is (not truncated here)
                pass
        else:
            with path.open("x"):
                pass
            path.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        where = f" ({error.filename})" if error.filename and str(error.filename) != str(path) else ""
        return f"{option} {path}: cannot write there: {reason}{where}"
    return None


class RowWriter:
    """Writes records to a CSV, JSON or JSON Lines file (or CSV to stdout, ``path=None``) one at a time.

    ``csv_row`` turns a record into the flat row of the CSV (default: the record itself). The CSV header is the
    columns of the first row for which ``complete(row)`` holds (e.g. the first predicted crystal, whose row has
    every property column); rows before it wait in memory (failed rows, a few short fields each) and are written
    with it. Use as a context manager; ``count`` is the number of records written.
    """

    def __init__(self, path: Path | None, csv_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 complete: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.path = path
        self.format = "csv" if path is None else table_format(path)
        if self.format is None:
            raise ValueError(f"{path}: not a .csv, .json or .jsonl file")
        self.csv_row = csv_row or (lambda record: record)
        self.complete = complete or (lambda row: True)
        self.count = 0
        self._pending: list[dict[str, Any]] = []
        self._writer: csv.DictWriter | None = None
        self._handle: TextIO = sys.stdout if path is None else path.open("w", encoding="utf-8", newline="")
        if self.format == "json":
            self._handle.write("[")

    def write(self, record: dict[str, Any]) -> None:
        """Write one record (a CSV row may wait for the header, see the class docstring)."""
        if self.format == "csv":
            row = self.csv_row(record)
            if self._writer is None:
                self._pending.append(row)
                if self.complete(row):
                    self._flush_pending()
            else:
                self._writer.writerow(row)
        else:
            text = json.dumps(record, ensure_ascii=False)
            separator = ("," if self.count else "") + "\n" if self.format == "json" else ""
            self._handle.write(f"{separator}{text}" + ("\n" if self.format == "jsonl" else ""))
        self.count += 1

    def _flush_pending(self) -> None:
        columns = list(dict.fromkeys(column for row in reversed(self._pending) for column in row))
        trailing = [column for column in ("scope", "error") if column in columns]
        columns = [column for column in columns if column not in trailing] + trailing
        self._writer = csv.DictWriter(self._handle, fieldnames=columns, restval="")
        self._writer.writeheader()
        self._writer.writerows(self._pending)
        self._pending = []

    def close(self) -> None:
        """Write what waits and the JSON array's end; close the file (not stdout)."""
        if self.format == "csv" and self._writer is None:
            self._flush_pending()
        if self.format == "json":
            self._handle.write("\n]\n" if self.count else "]\n")
        if self.path is not None:
            self._handle.close()
        else:
            self._handle.flush()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["TABLE_FORMATS", "RowWriter", "output_path_problem", "table_format"]
