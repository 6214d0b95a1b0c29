"""``ScopeEncoder``: crystal structures to SCOPE strings, one at a time, in batches, or as a datasets map."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset, Features, Value

from cloud_hf.scope.canonical import CANONICAL_VERSION, DecodedScope, canonical_scope, decode_canonical
from cloud_hf.scope.reference import REFERENCE_ANGLE_TOLERANCE, REFERENCE_SYMPREC, reference_scope
from cloud_hf.scope.symmetry import BACKENDS, SUPERCELL_REDUCTION_MIN_SITES, find_symmetry, reduce_supercell
from cloud_hf.structures import (
    MIN_INTERATOMIC_DISTANCE,
    CrystalCell,
    ScopeError,
    describe_input,
    failure_message,
    load_cell,
    load_structure,
)

MODES = ("canonical", "reference")
FORMAT_VERSIONS = {"canonical": CANONICAL_VERSION, "reference": "reference-1"}

CANONICAL_SYMPREC = 0.1
"""Default distance tolerance of canonical mode, in Å (as the Materials Project). Moving every atom by up
to a fifth of it (0.02 Å) keeps the string (the tolerance policy in docs/design.md)."""


class ScopeEncoder:
    """Encode crystal structures as SCOPE strings.

    Args:
        mode: ``"canonical"`` (default: one string per crystal, decodable) or ``"reference"``
            (byte-identical to the CLOUD reference encoder, for its released checkpoint).
        backend: symmetry search, ``"moyopy"`` (canonical default, fast) or ``"spglib"``; reference mode
            always uses spglib, as the reference does.
        symprec: distance tolerance of the symmetry search, in Å (canonical 0.1, reference 0.01).
        angle_tolerance: angle tolerance of the lattice check, in degrees (canonical ``None``: metric
            check only; reference 5).
        min_distance: atoms closer than this (Å) are reported as overlapping.

    ``to_dict()`` / ``from_dict()`` carry these settings (plus the format ``version``) through tokenizer
    and model configs, so a checkpoint always encodes the way it was trained.
    """

    def __init__(
        self,
        mode: str = "canonical",
        backend: str | None = None,
        symprec: float | None = None,
        angle_tolerance: float | None = None,
        min_distance: float = MIN_INTERATOMIC_DISTANCE,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown SCOPE mode {mode!r}; choose one of {MODES}")
        if mode == "reference":
            if backend not in (None, "spglib"):
                raise ValueError("reference mode reproduces spglib's Wyckoff letters: its backend must be 'spglib'")
            backend = "spglib"
            symprec = REFERENCE_SYMPREC if symprec is None else symprec
            angle_tolerance = REFERENCE_ANGLE_TOLERANCE if angle_tolerance is None else angle_tolerance
        else:
            backend = backend or "moyopy"
            symprec = CANONICAL_SYMPREC if symprec is None else symprec
        if backend not in BACKENDS:
            raise ValueError(f"unknown symmetry backend {backend!r}; choose one of {BACKENDS}")
        if not 0 < symprec < float("inf"):
            raise ValueError(f"symprec must be a positive distance in Å, got {symprec}")
        if angle_tolerance is not None and not 0 < angle_tolerance < 180:
            raise ValueError(f"angle_tolerance must be an angle in degrees between 0 and 180, got {angle_tolerance}")
        self.mode = mode
        self.backend = backend
        self.symprec = float(symprec)
        self.angle_tolerance = None if angle_tolerance is None else float(angle_tolerance)
        self.min_distance = float(min_distance)

    @property
    def version(self) -> str:
        """Format version of the strings this encoder writes: ``canonical-1`` or ``reference-1``."""
        return FORMAT_VERSIONS[self.mode]

    def to_dict(self) -> dict[str, Any]:
        """The settings that determine the output (JSON-serialisable)."""
        return {
            "mode": self.mode,
            "version": self.version,
            "backend": self.backend,
            "symprec": self.symprec,
            "angle_tolerance": self.angle_tolerance,
            "min_distance": self.min_distance,
        }

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> ScopeEncoder:
        """Rebuild an encoder from :meth:`to_dict` output; refuses a format version this package cannot write."""
        options = dict(settings)
        version = options.pop("version", None)
        encoder = cls(**options)
        if version is not None and version != encoder.version:
            raise ValueError(
                f"SCOPE format version {version!r} is not supported by this cloud-hf (it writes {encoder.version!r} "
                f"in {encoder.mode} mode)"
            )
        return encoder

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self.to_dict().items() if key != "version")
        return f"{type(self).__name__}({options})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScopeEncoder) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))

    def preload(self) -> None:
        """Load, in this process, everything encoding needs on first use: the symmetry backend and the per-space-group
        tables (importing pymatgen's prototype tables alone takes seconds).

        ``map_dataset(num_proc=N)`` calls it before forking its workers, so that they share the loaded tables
        instead of each paying the load (``benchmarks/bench_startup.py`` measures ``num_proc`` 1 against 2).
        """
        from cloud_hf.scope.tables import (
            NUMBER_OF_SPACE_GROUPS,
            pymatgen_generator_strings,
            space_group_tables,
        )

        for number in range(1, NUMBER_OF_SPACE_GROUPS + 1):
            space_group_tables(number)
        if self.mode == "reference":
            pymatgen_generator_strings()
        importlib.import_module(self.backend)

    # --- encoding ---------------------------------------------------------------------------------

    def encode(self, obj: Any, name: str | None = None) -> str:
        """The SCOPE string of one structure.

        Args:
            obj: a pymatgen ``Structure``, ASE ``Atoms``, pymatgen dict, CIF text, or a path to a
                CIF/POSCAR file.
            name: how error messages refer to the input (default: its path, CIF block or type).

        Raises:
            ScopeError: unreadable or invalid input, or a failed symmetry search; the message names the input.
        """
        if self.mode == "reference":
            label = describe_input(obj, name)
            structure = load_structure(obj, name=label, min_distance=self.min_distance, allow_partial_occupancy=True)
            return reference_scope(structure, name=label, symprec=self.symprec, angle_tolerance=self.angle_tolerance)
        return self.encode_validated_cell(load_cell(obj, name=name, min_distance=self.min_distance))

    def encode_validated_cell(self, cell: CrystalCell) -> str:
        """The canonical SCOPE string of a cell that :func:`cloud_hf.structures.load_cell` has already read and
        validated with this encoder's ``min_distance``: the symmetry search only, without checking the cell again
        (the check, a periodic neighbour search, measured 0.21 ms of the 2.5 ms a crystal cost ``CloudProcessor``
        with it done twice).

        Raises:
            ScopeError: a failed symmetry search (or a reference-mode encoder: that mode reads its input itself).
        """
        if self.mode != "canonical":
            raise ScopeError("encode_validated_cell is for canonical SCOPE (reference mode reads the input as the "
                             "reference does)")
        lattice, frac_coords, numbers = cell.lattice, np.mod(cell.frac_coords, 1.0), cell.atomic_numbers
        if len(cell) >= SUPERCELL_REDUCTION_MIN_SITES:  # the backends' primitive search is O(n²)
            lattice, frac_coords, numbers = reduce_supercell(lattice, frac_coords, numbers, self.symprec)
        symmetry = find_symmetry(
            lattice,
            frac_coords,
            numbers,
            backend=self.backend,
            symprec=self.symprec,
            angle_tolerance=self.angle_tolerance,
            name=cell.name,
        )
        return canonical_scope(numbers, symmetry)

    def __call__(self, obj: Any, name: str | None = None) -> str:
        return self.encode(obj, name=name)

    def encode_many(
        self, objs: Iterable[Any], ids: Sequence[Any] | None = None
    ) -> list[tuple[str | None, str | None]]:
        """Encode every input, in order: ``(scope, None)`` on success, ``(None, error message)`` otherwise
        (a failure of any exception type stays in its row)."""
        results: list[tuple[str | None, str | None]] = []
        for index, obj in enumerate(objs):
            name = str(ids[index]) if ids is not None else None
            try:
                results.append((self.encode(obj, name=name), None))
            except Exception as error:  # any failure stays in its row (MemoryError included)
                results.append((None, failure_message(error, name or describe_input(obj))))
        return results

    def decode(self, scope: str) -> DecodedScope:
        """Read a canonical SCOPE string back into (space group, [(element, Wyckoff)], composition)."""
        if self.mode != "canonical":
            raise ScopeError("decode is defined for canonical SCOPE only (reference strings lose the element–site link)")
        return decode_canonical(scope)

    def as_map_function(
        self,
        input_column: str = "cif",
        output_column: str = "scope",
        error_column: str = "scope_error",
        id_column: str | None = None,
    ) -> ScopeMapFunction:
        """A picklable function for ``Dataset.map(fn, batched=True, num_proc=N)``.

        It adds ``output_column`` (the SCOPE string, ``None`` for a bad row) and ``error_column``
        (``None``, or the reason naming the row by ``id_column`` when given); every row is kept, in order.
        The input column may hold CIF text, pymatgen dicts (or their JSON text) or file paths.
        """
        return ScopeMapFunction(self.to_dict(), input_column, output_column, error_column, id_column)

    def map_dataset(
        self,
        dataset: Dataset,
        input_column: str = "cif",
        output_column: str = "scope",
        error_column: str = "scope_error",
        id_column: str | None = None,
        **map_kwargs: Any,
    ) -> Dataset:
        """``dataset`` with ``output_column`` and ``error_column`` added by a batched ``Dataset.map``.

        ``map_kwargs`` go to ``Dataset.map`` (``num_proc``, ``batch_size``, ``cache_file_name`` …); the
        output features are set so that batches of failed rows never produce a null-typed column.
        """
        function = self.as_map_function(input_column, output_column, error_column, id_column)
        if (map_kwargs.get("num_proc") or 1) > 1:
            self.preload()  # forked workers inherit the loaded tables instead of each loading them again
        return dataset.map(function, batched=True, features=function.output_features(dataset.features), **map_kwargs)


@dataclass(frozen=True)
class ScopeMapFunction:
    """Batched ``datasets`` map function built by :meth:`ScopeEncoder.as_map_function`."""

    encoder_settings: dict[str, Any]
    input_column: str
    output_column: str = "scope"
    error_column: str = "scope_error"
    id_column: str | None = None

    def __post_init__(self) -> None:
        if len({self.input_column, self.output_column, self.error_column}) < 3:
            raise ValueError(
                f"input_column {self.input_column!r}, output_column {self.output_column!r} and error_column "
                f"{self.error_column!r} must differ: the map would overwrite its input with the SCOPE strings"
            )

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[str | None]]:
        """Encode one batch: ``{output_column: scopes, error_column: errors}``, row for row."""
        if self.input_column not in batch:
            raise KeyError(f"input column {self.input_column!r} is missing; columns are {sorted(batch)}")
        if self.id_column is not None and self.id_column not in batch:
            raise KeyError(f"id column {self.id_column!r} is missing; columns are {sorted(batch)}")
        encoder = cached_encoder(self.encoder_settings)
        inputs = batch[self.input_column]
        ids = [f"{self.id_column}={value}" for value in batch[self.id_column]] if self.id_column else None
        scopes, errors = [], []
        for index, value in enumerate(inputs):
            name = ids[index] if ids else None
            if value is None:
                scopes.append(None)
                errors.append(f"{name}: empty {self.input_column!r} value" if name else f"empty {self.input_column!r} value")
                continue
            try:
                scopes.append(encoder.encode(value, name=name))
                errors.append(None)
            except Exception as error:  # any failure stays in its row (MemoryError included); recipes map here too
                scopes.append(None)
                errors.append(failure_message(error, name or f"row {index} of the batch"))
        return {self.output_column: scopes, self.error_column: errors}

    def output_features(self, input_features: Features | None) -> Features:
        """``input_features`` plus the two string columns this function adds.

        Pass it as ``Dataset.map(..., features=...)``: without it, ``datasets`` types a column from the
        first batch written, and a shard whose first batch failed entirely would give a null column.
        """
        features = Features(dict(input_features or {}))
        features[self.output_column] = Value("string")
        features[self.error_column] = Value("string")
        return features


_ENCODERS: dict[str, ScopeEncoder] = {}


def cached_encoder(settings: dict[str, Any]) -> ScopeEncoder:
    """The encoder for ``settings`` (``ScopeEncoder.to_dict()``), built once per process.

    Map and CLI workers receive plain settings (cheap to pickle) and rebuild the encoder once.
    """
    key = json.dumps(settings, sort_keys=True)
    if key not in _ENCODERS:
        _ENCODERS[key] = ScopeEncoder.from_dict(settings)
    return _ENCODERS[key]
