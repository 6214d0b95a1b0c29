"""Turn any crystal input into a validated structure; every failure is a ``CrystalInputError`` naming the input.

Accepted inputs: a pymatgen ``Structure``, an ASE ``Atoms``, a pymatgen structure dict
(``Structure.as_dict()``) or its JSON text, CIF text, POSCAR text, the text of ``str(Structure)``, a path
(``str`` / ``Path``) to a CIF, POSCAR or any other file pymatgen reads, or a :class:`CrystalCell` already read
by :func:`load_cell`.

Each input format is one :class:`CrystalReader`, registered under its name with :func:`register_reader` (in the
manner of pymatgen's and ASE's format registries): it recognises an input by type, file name or text content
and reads it. Both entry points go through the same registry, in the same order (:func:`crystal_readers`):

* :func:`load_structure` returns a pymatgen ``Structure`` (what the reference encoder and most users
  want);
* :func:`load_cell` returns a :class:`CrystalCell` of plain numpy arrays, the fast path of the canonical
  encoder (a reader's ``to_cell``, else the arrays of its ``to_structure``).

A new format is one reader and one :func:`register_reader` call; the file-name rules of the built-in ones live
in :mod:`cloud_hf.formats`.

CIF files are read with gemmi (:func:`read_cif_cell`): its symmetry comes from the operator loop, else the
Hall symbol, else the Hermann–Mauguin name, else the International Tables number (gemmi's ``"S.H1N"``
order), so a CIF that gives its space group in any one of these ways is expanded to the full cell.
pymatgen stays the fallback for CIFs gemmi has no fractional coordinates for. One crystal per input: a CIF
with several crystal data blocks is refused here; :func:`cif_blocks` splits it (``cloud-hf`` gives each
block its own row).

Both entry points apply the same checks (:func:`validate_cell`): no sites, more than :data:`MAX_SITES`
sites, NaN/inf or absurdly large lattice or coordinates, a degenerate cell, unknown elements, partial or
zero occupancies, atoms closer than ``min_distance`` (Å), and isolated clusters (molecules in a box, see
:func:`cloud_hf.geometry.isolated_cluster_gaps`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
from pymatgen.core import Lattice, Molecule, Structure
from pymatgen.core.periodic_table import Element

from cloud_hf.errors import CloudConfigError, CloudError, CrystalInputError, ScopeError
from cloud_hf.formats import CIF_SUFFIXES, POSCAR_FILE_NAME, is_cif_file_name, is_poscar_file_name
from cloud_hf.geometry import (
    MAX_IMAGE_SHIFTS,
    MIN_INTERATOMIC_DISTANCE,
    closest_pair,
    interplanar_spacings,
    isolated_cluster_gaps,
    nearest_neighbour_distances,
)

logger = logging.getLogger(__name__)

MIN_CELL_VOLUME = 1e-3
"""Smallest accepted cell volume, in Å³."""

MAX_LATTICE_LENGTH = 1.0e4
"""Longest accepted lattice vector, in Å (1 µm); longer ones are a unit or parsing error, not a crystal."""

MAX_FRACTIONAL_COORDINATE = 1.0e3
"""Largest accepted |fractional coordinate|: an atom a thousand cells away is a corrupt coordinate."""

MAX_SITES = 200_000
"""Most sites accepted in one cell. Larger cells are refused with a ``CrystalInputError`` before any
symmetry search, instead of exhausting memory (an 884,000-atom CIF used to need 34 GiB)."""

ISOLATED_CLUSTER_GAP = 7.0
"""Empty-slab thickness, in Å, above which a direction counts as vacuum. A cell with an atom-free slab
thicker than this along all three lattice directions holds an isolated cluster (a molecule in a box),
not a crystal: bulk crystals, including molecular and van der Waals ones, leave gaps of ≤ 4 Å between
atomic planes. Slabs (vacuum in one direction) and wires (two) are accepted."""

MAX_ATOMIC_NUMBER = 118


@dataclass(frozen=True)
class CrystalCell:
    """A periodic, ordered crystal as plain arrays.

    Attributes:
        lattice: ``(3, 3)`` lattice vectors as rows, in Å.
        frac_coords: ``(n_sites, 3)`` fractional coordinates.
        atomic_numbers: ``(n_sites,)`` atomic numbers (1..118).
        name: how error messages refer to this input.
    """

    lattice: np.ndarray
    frac_coords: np.ndarray
    atomic_numbers: np.ndarray
    name: str

    def __len__(self) -> int:
        return len(self.atomic_numbers)


@cache
def element_symbols() -> tuple[str, ...]:
    """Chemical symbols indexed by atomic number (index 0 is an empty placeholder), Z = 1..118."""
    return ("", *(Element.from_Z(z).symbol for z in range(1, MAX_ATOMIC_NUMBER + 1)))


@cache
def atomic_numbers_by_symbol() -> dict[str, int]:
    """Chemical symbol → atomic number, for Z = 1..118."""
    return {symbol: z for z, symbol in enumerate(element_symbols()) if z}


HYDROGEN_ISOTOPES = ("D", "T")
"""Deuterium and tritium symbols: read as hydrogen (H) in every input (CIF, POSCAR, pymatgen dict), as pymatgen
reads them, with a logged warning: SCOPE and the models see H, with its mass."""


def note_hydrogen_isotopes(symbols: Iterable[str], label: str) -> None:
    """Log the warning that ``D``/``T`` among ``symbols`` are read as H (:data:`HYDROGEN_ISOTOPES`)."""
    found = sorted(set(symbols) & set(HYDROGEN_ISOTOPES))
    if found:
        logger.warning("%s: %s read as hydrogen (H), as pymatgen reads them; SCOPE and the models see H and its mass",
                       label, " and ".join(found))


def describe_input(obj: Any, name: str | None = None) -> str:
    """A short name for ``obj`` in error messages: ``name`` if given, else the path or the CIF block."""
    if name is not None:
        return str(name)
    if isinstance(obj, CrystalCell):
        return obj.name
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, str):
        block = re.search(r"^\s*data_(\S*)", obj, flags=re.MULTILINE)
        if block:
            return f"CIF data_{block.group(1)}"
        if "\n" not in obj and len(obj) < 300:
            return obj
        return "structure text"
    return type(obj).__name__


@dataclass(frozen=True)
class CrystalReader:
    """One input format: how an input in it is recognised, and how it is read.

    Attributes:
        name: the format's name in the registry (``"cif"``, ``"poscar"``, ...).
        recognise: ``recognise(obj, label)``: what the readers below take from ``obj`` (the object itself, the
            text of a file, a decoded dict), or ``None`` where ``obj`` is not in this format. It recognises by
            type, by file name or by text content, and may raise ``CrystalInputError`` for an input that is in
            this format but cannot be read (malformed JSON text).
        to_structure: ``to_structure(source, label, allow_partial_occupancy)``: an unvalidated pymatgen
            ``Structure``. Only a reader that refuses disorder itself needs the flag; :func:`load_structure`
            checks the sites' occupancies after any reader.
        to_cell: ``to_cell(source, label)``: an unvalidated :class:`CrystalCell` read without pymatgen, or
            ``None`` where this input needs pymatgen after all; ``None`` (no fast path): the arrays of
            ``to_structure``'s structure.
        fallback: whether the reader takes any input of its kind (any multi-line text, any file); fallbacks are
            tried after every other reader.
    """

    name: str
    recognise: Callable[[Any, str], Any]
    to_structure: Callable[[Any, str, bool], Structure]
    to_cell: Callable[[Any, str], CrystalCell | None] | None = None
    fallback: bool = False


_READERS: list[CrystalReader] = []
"""The registered readers, in registration order."""


def register_reader(reader: CrystalReader, before: str | None = None) -> None:
    """Add ``reader`` to the registry: tried after the readers registered before it, and before the fallbacks
    (unless it is one); with ``before``, just before the reader of that name (e.g. a JSON dialect before
    ``"pymatgen-dict"``, which takes any JSON object). ``CloudConfigError`` where a reader of that name is
    registered already, or ``before`` names none."""
    if any(known.name == reader.name for known in _READERS):
        raise CloudConfigError(f"a crystal reader named {reader.name!r} is registered already; unregister it first")
    if before is None:
        _READERS.append(reader)
        return
    names = [known.name for known in _READERS]
    if before not in names:
        raise CloudConfigError(f"register_reader: no crystal reader named {before!r} to go before; registered: {names}")
    _READERS.insert(names.index(before), reader)


def unregister_reader(name: str) -> CrystalReader:
    """Remove the reader registered as ``name`` and return it; ``CloudConfigError`` where there is none."""
    reader = next((known for known in _READERS if known.name == name), None)
    if reader is None:
        raise CloudConfigError(f"no crystal reader named {name!r}; registered: {[r.name for r in _READERS]}")
    _READERS.remove(reader)
    return reader


def crystal_readers() -> tuple[CrystalReader, ...]:
    """The registered readers in the order an input is offered to them (the first that recognises it reads it):
    in registration order, the fallbacks last."""
    return (*(r for r in _READERS if not r.fallback), *(r for r in _READERS if r.fallback))


def _recognise(obj: Any, label: str) -> tuple[CrystalReader, Any]:
    """The first reader that recognises ``obj``, and what it took from ``obj``; the one dispatch of
    :func:`load_structure` and :func:`load_cell`."""
    for reader in crystal_readers():
        source = reader.recognise(obj, label)
        if source is not None:
            return reader, source
    raise ScopeError(
        f"{label}: unsupported input type {type(obj).__name__} (expected a pymatgen Structure, ASE Atoms, "
        "pymatgen dict, CIF text or a path)"
    )


def input_format(obj: Any, name: str | None = None) -> str:
    """The name of the reader that reads ``obj`` (``"cif"``, ``"poscar"``, ...); ``CrystalInputError`` where none does."""
    label = describe_input(obj, name)
    with _as_crystal_input_error(label):
        return _recognise(obj, label)[0].name


def load_structure(
    obj: Any,
    name: str | None = None,
    min_distance: float = MIN_INTERATOMIC_DISTANCE,
    allow_partial_occupancy: bool = False,
) -> Structure:
    """Read ``obj`` into a validated pymatgen ``Structure`` (see the module docstring for accepted inputs).

    CIFs are read by pymatgen here (the reference encoder's reader, whose site order reference strings
    depend on), checked against gemmi's reading: where pymatgen's expanded cell holds a different number
    of atoms (it ignores a Hall-only space group and reads it as P1), gemmi's cell is used, sorted as
    pymatgen sorts its CIF structures.

    Args:
        obj: the input.
        name: how error messages refer to the input (default: its path, CIF block name or type).
        min_distance: smallest allowed interatomic distance, in Å.
        allow_partial_occupancy: accept disordered sites (the reference encoder does; canonical SCOPE
            does not, as a Wyckoff orbit must hold one element).

    Raises:
        CrystalInputError: the input cannot be read, is not a periodic crystal, is disordered (unless
            allowed), or fails a check of :func:`validate_cell`; any other failure of a reader is turned
            into one, so that one bad input never escapes as another exception type.
    """
    label = describe_input(obj, name)
    with _as_crystal_input_error(label):
        reader, source = _recognise(obj, label)
        structure = reader.to_structure(source, label, allow_partial_occupancy)
        validate_cell(_structure_arrays(structure, label, allow_partial_occupancy), min_distance=min_distance)
        return structure


def load_cell(obj: Any, name: str | None = None, min_distance: float = MIN_INTERATOMIC_DISTANCE) -> CrystalCell:
    """Read ``obj`` into a validated :class:`CrystalCell`, avoiding pymatgen objects where possible.

    Same inputs, checks and errors as :func:`load_structure`; a ``CrystalCell`` (already read) is only
    re-validated, so callers can read a file once and reuse the cell.
    """
    label = describe_input(obj, name)
    with _as_crystal_input_error(label):
        reader, source = _recognise(obj, label)
        cell = reader.to_cell(source, label) if reader.to_cell is not None else None
        if cell is None:
            cell = _structure_arrays(reader.to_structure(source, label, False), label)
        validate_cell(cell, min_distance=min_distance)
        return cell


def failure_message(error: Exception, name: str | None = None) -> str:
    """The text a batch writes in the row of an input that failed: the package's own errors as they are
    (they name the input), any other exception with its type, so nothing is lost and nothing looks alike."""
    if isinstance(error, CloudError):
        return str(error)
    prefix = f"{name}: " if name else ""
    return f"{prefix}unexpected {type(error).__name__}: {_reason(error) if str(error) else 'no message'}"


class _as_crystal_input_error:
    """Context manager: any exception other than the package's own becomes a ``CrystalInputError`` naming
    the input and the original type (``MemoryError`` included), so a batch can keep it in its row."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or isinstance(error, CloudError) or not isinstance(error, Exception):
            return False
        raise CrystalInputError(f"{self.label}: cannot read the input ({type(error).__name__}: {_reason(error)})") from error


def validate_cell(cell: CrystalCell, min_distance: float = MIN_INTERATOMIC_DISTANCE) -> None:
    """Check that ``cell`` is a usable crystal; raise ``CrystalInputError`` naming ``cell.name`` otherwise.

    The checks run cheapest first, and the neighbour search (:func:`closest_pair`) only on a cell already
    known to be finite and within :data:`MAX_SITES`, so its memory stays bounded.
    """
    if len(cell) == 0:
        raise ScopeError(f"{cell.name}: empty structure (no sites)")
    if len(cell) > MAX_SITES:
        raise ScopeError(
            f"{cell.name}: {len(cell)} sites, more than the {MAX_SITES} a cell may have "
            "(cloud_hf.structures.MAX_SITES); give the primitive or conventional cell instead of a supercell"
        )
    if cell.lattice.shape != (3, 3) or cell.frac_coords.shape != (len(cell), 3):
        raise ScopeError(f"{cell.name}: malformed cell (lattice {cell.lattice.shape}, coordinates {cell.frac_coords.shape})")
    if not np.all(np.isfinite(cell.lattice)):
        raise ScopeError(f"{cell.name}: the lattice contains NaN or infinite values")
    lengths = np.linalg.norm(cell.lattice, axis=1)
    if lengths.max() > MAX_LATTICE_LENGTH:
        raise ScopeError(
            f"{cell.name}: lattice vector of {lengths.max():.3g} Å, longer than the {MAX_LATTICE_LENGTH:g} Å accepted"
        )
    if not np.all(np.isfinite(cell.frac_coords)):
        site = int(np.flatnonzero(~np.isfinite(cell.frac_coords).all(axis=1))[0])
        raise ScopeError(f"{cell.name}: the atomic coordinates contain NaN or infinite values (site {site})")
    far = np.flatnonzero(np.abs(cell.frac_coords).max(axis=1) > MAX_FRACTIONAL_COORDINATE)
    if far.size:
        raise ScopeError(
            f"{cell.name}: site {far[0]} has fractional coordinates {cell.frac_coords[far[0]].tolist()}, "
            f"beyond ±{MAX_FRACTIONAL_COORDINATE:g} (a corrupt coordinate)"
        )
    volume = abs(float(np.linalg.det(cell.lattice)))
    if volume < MIN_CELL_VOLUME:
        raise ScopeError(f"{cell.name}: degenerate lattice (cell volume {volume:.3g} Å³)")
    bad = np.flatnonzero((cell.atomic_numbers < 1) | (cell.atomic_numbers > MAX_ATOMIC_NUMBER))
    if bad.size:
        raise ScopeError(f"{cell.name}: unknown element at site {bad[0]} (atomic number {cell.atomic_numbers[bad[0]]})")
    closest = closest_pair(cell.lattice, cell.frac_coords, cutoff=min_distance)
    if closest is not None and closest[2] < min_distance:
        i, j, distance = closest
        what = f"site {i} and its own periodic image are" if i == j else f"sites {i} and {j} are"
        raise ScopeError(
            f"{cell.name}: overlapping atoms: {what} {distance:.3f} Å apart (minimum {min_distance} Å)"
        )
    gaps = isolated_cluster_gaps(cell.lattice, cell.frac_coords)
    if min(gaps) > ISOLATED_CLUSTER_GAP:
        raise ScopeError(
            f"{cell.name}: an isolated cluster (a molecule in a box), not a crystal: atom-free slabs of "
            f"{', '.join(f'{gap:.1f}' for gap in gaps)} Å along the three lattice directions, all thicker than "
            f"{ISOLATED_CLUSTER_GAP:g} Å (cloud_hf.structures.ISOLATED_CLUSTER_GAP)"
        )


def structure_from_pmg_str(text: str) -> Structure:
    """Parse the text of ``str(Structure)`` (pymatgen's table: ``abc``, ``angles``, then one site per row).

    The lattice is rebuilt from a, b, c (Å) and α, β, γ (degrees), so its orientation is pymatgen's
    standard one; fractional coordinates are taken as written (6 decimals). A species cell may be a plain
    element (``Fe``), an ion (``Fe2+``) or a disordered occupancy (``Fe:0.5, Ni:0.5``).
    """
    lines = text.strip().splitlines()
    fields: dict[str, str] = {}
    table_start = None
    for index, line in enumerate(lines):
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("abc", "angles", "pbc"):
            fields[key.strip()] = value
        if line.lstrip().startswith("#") and "SP" in line.split():
            table_start = index
            break
    if "abc" not in fields or "angles" not in fields or table_start is None:
        raise ValueError("not a str(Structure) table: missing 'abc', 'angles' or the site header")
    abc = [float(v) for v in fields["abc"].split()]
    angles = [float(v) for v in fields["angles"].split()]
    header = lines[table_start].split()
    species_at, first_coordinate_at = header.index("SP"), header.index("a")
    species: list[Any] = []
    coordinates: list[list[float]] = []
    for line in lines[table_start + 2 :]:
        if not line.strip():
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) < first_coordinate_at + 3:
            raise ValueError(f"malformed site line {line.strip()!r}")
        species_cell = cells[species_at]
        if ":" in species_cell:
            species.append({name.strip(): float(occ) for name, occ in
                            (part.split(":") for part in species_cell.split(","))})
        else:
            species.append(species_cell)
        coordinates.append([float(v) for v in cells[first_coordinate_at : first_coordinate_at + 3]])
    if not species:
        raise ValueError("str(Structure) table has no sites")
    return Structure(Lattice.from_parameters(*abc, *angles), species, coordinates)


# --- readers: one per input format, registered at the end of this module in recognition order -------


def _instance_of(kind: type | tuple[type, ...]) -> Callable[[Any, str], Any]:
    """A ``recognise`` function that takes an input of type ``kind`` as it is."""
    def recognise(obj: Any, label: str) -> Any:
        return obj if isinstance(obj, kind) else None
    return recognise


def _dict_source(obj: Any, label: str) -> Mapping | None:
    """A pymatgen structure dict, or its JSON text (as stored in CSV columns) decoded; ``None`` for anything else."""
    if isinstance(obj, Mapping):
        return obj
    if isinstance(obj, str) and obj.lstrip().startswith("{"):
        try:
            return json.loads(obj)
        except json.JSONDecodeError as error:
            raise ScopeError(f"{label}: malformed JSON structure text: {error}") from error
    return None


def _structure_from_dict(data: Mapping, label: str, allow_partial_occupancy: bool = False) -> Structure:
    if data.get("@class") == "Molecule" or ("sites" in data and "lattice" not in data):
        raise ScopeError(f"{label}: non-periodic input (a Molecule dict); SCOPE needs a periodic crystal")
    _check_dict_elements(data, label)
    try:
        return Structure.from_dict(data)
    except Exception as error:
        raise ScopeError(f"{label}: malformed pymatgen structure dict: {_reason(error)}") from error


def _structure_as_given(structure: Structure, label: str, allow_partial_occupancy: bool = False) -> Structure:
    return structure


def _structure_from_cell(cell: CrystalCell, label: str, allow_partial_occupancy: bool = False) -> Structure:
    return Structure(cell.lattice, cell.atomic_numbers.tolist(), cell.frac_coords)


def _cell_as_given(cell: CrystalCell, label: str) -> CrystalCell:
    return cell


def _refuse_molecule(molecule: Molecule, label: str, allow_partial_occupancy: bool = False) -> Structure:
    raise ScopeError(f"{label}: non-periodic input (a Molecule); SCOPE needs a periodic crystal")


def _ase_source(obj: Any, label: str) -> Any:
    return obj if _is_ase_atoms(obj) else None


def _structure_from_ase(atoms: Any, label: str, allow_partial_occupancy: bool = False) -> Structure:
    _check_periodic_atoms(atoms, label)
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        return AseAtomsAdaptor.get_structure(atoms)
    except Exception as error:
        raise ScopeError(f"{label}: cannot convert the ASE Atoms: {error}") from error


def _pmg_str_source(obj: Any, label: str) -> str | None:
    """The text of ``str(Structure)``: it opens with its ``Full Formula`` line."""
    return obj if isinstance(obj, str) and obj.lstrip().startswith("Full Formula") else None


def _structure_from_pmg_str_text(text: str, label: str, allow_partial_occupancy: bool = False) -> Structure:
    try:
        return structure_from_pmg_str(text)
    except ValueError as error:
        raise ScopeError(f"{label}: malformed str(Structure) text: {error}") from error


def _file_source(obj: Any, label: str) -> str | Path | None:
    """Any path, existing or not (the reader says which): the last reader a ``str`` or ``Path`` is offered to."""
    return obj if isinstance(obj, (str, Path)) else None


def _structure_from_file(obj: str | Path, label: str, allow_partial_occupancy: bool = False) -> Structure:
    """Any file pymatgen's ``Structure.from_file`` reads (it decides by the file name)."""
    path = Path(obj)
    if not _is_file(path):
        raise ScopeError(f"{label}: no such file" + (", and not CIF text" if isinstance(obj, str) else ""))
    return _read_structure_file(path, label, Structure.from_file)


def _read_structure_file(path: Path, label: str, read: Callable[[Path], Structure]) -> Structure:
    """``read(path)``; a failure other than the package's own errors is reported as an unreadable structure file."""
    try:
        return read(path)
    except CloudError:
        raise
    except Exception as error:
        raise ScopeError(f"{label}: unreadable structure file: {_reason(error)}") from error


def _is_file(path: Path) -> bool:
    """``path.is_file()``, false (not an error) for strings that cannot be paths, e.g. too long ones."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


MAGNETIC_CIF_TAG_PREFIXES = ("_space_group_magn", "_space_group_symop_magn", "_magnetic_space_group")
"""Tag prefixes of a magnetic CIF's symmetry (magCIF): its operators carry time reversal, and gemmi does not read
them (it would expand the atoms by P1), so such a CIF is read with pymatgen's magnetic CIF reader."""

INCOMMENSURATE_CIF_TAG_PREFIXES = ("_cell_modulation_dimension", "_cell_wave_vector")


def _block_tags(block: gemmi.cif.Block) -> list[str]:
    """Every tag of a CIF block, lower case (pairs and loop columns)."""
    tags = []
    for item in block:
        if item.pair is not None:
            tags.append(item.pair[0].lower())
        elif item.loop is not None:
            tags.extend(tag.lower() for tag in item.loop.tags)
    return tags


def _magnetic_tags(block: gemmi.cif.Block) -> list[str]:
    """The magCIF symmetry tags of ``block`` (empty for a CIF without magnetic symmetry)."""
    return [tag for tag in _block_tags(block) if tag.startswith(MAGNETIC_CIF_TAG_PREFIXES)]


def _read_magnetic_cif(text: str, label: str) -> Structure:
    """A magnetic CIF expanded by its magnetic symmetry operators (operators and centerings, or a BNS group) with
    pymatgen's reader; refused, never read as P1, where pymatgen finds no magnetic symmetry or the structure is
    incommensurate."""
    from pymatgen.io.cif import CifParser

    tags = [tag for block in _parse_cif_document(text, label) for tag in _block_tags(block)]
    if any(tag.startswith(INCOMMENSURATE_CIF_TAG_PREFIXES) for tag in tags):
        raise ScopeError(f"{label}: an incommensurate magnetic CIF (a modulated structure, no periodic cell); "
                         "not supported")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser.from_str(text)
            structures = parser.parse_structures(primitive=False, on_error="raise")
    except Exception as error:
        raise ScopeError(f"{label}: a magnetic CIF whose magnetic symmetry cannot be read: {_reason(error)}") from error
    if any("No magnetic symmetry detected" in message for message in parser.warnings):
        raise ScopeError(
            f"{label}: a magnetic CIF (tags {', '.join(sorted(set(t for t in tags if t.startswith(MAGNETIC_CIF_TAG_PREFIXES))))}) "
            "without magnetic symmetry operators (_space_group_symop_magn_operation.xyz) or a BNS group that can "
            "be read; refused rather than read without its symmetry"
        )
    if len(structures) != 1:
        raise ScopeError(f"{label}: {len(structures)} structures in a magnetic CIF; one crystal per input")
    return structures[0]


def _parse_with_pymatgen(text: str, fmt: str, label: str) -> Structure:
    if fmt == "cif" and any(prefix in text.lower() for prefix in MAGNETIC_CIF_TAG_PREFIXES):
        document = _parse_cif_document(text, label)
        if any(_magnetic_tags(block) for block in document):
            return _read_magnetic_cif(text, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_str(text, fmt=fmt)
    except Exception as error:
        kind = "CIF" if fmt == "cif" else "POSCAR"
        raise ScopeError(f"{label}: unreadable or malformed {kind}: {_reason(error)}") from error


def _reason(error: Exception) -> str:
    """One line saying what went wrong inside a parser."""
    if isinstance(error, KeyError):
        return f"missing key {error}"
    if isinstance(error, ZeroDivisionError) or "is not a multiple of" in str(error):
        return "the file is truncated or a loop has missing values"
    if isinstance(error, OverflowError) or "infinity" in str(error):
        return "a number in the file is infinite or too large"
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _read_text(path: Path, label: str) -> str:
    """The text of a structure file, without a UTF-8 byte-order mark."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").removeprefix("\ufeff")
    except OSError as error:
        raise ScopeError(f"{label}: cannot read the file: {error.strerror or error}") from error


def _structure_arrays(structure: Structure, label: str, allow_partial_occupancy: bool = False) -> CrystalCell:
    """Arrays of a structure, checking its species in one pass; a disordered site (where allowed) is
    represented by its first element."""
    symbols_to_numbers = atomic_numbers_by_symbol()
    numbers = []
    for index, site in enumerate(structure):
        occupants = list(site.species.items())
        if not occupants:
            raise ScopeError(f"{label}: site {index} has no species")
        if not allow_partial_occupancy and (len(occupants) > 1 or abs(occupants[0][1] - 1.0) > 1e-8):
            raise ScopeError(
                f"{label}: disordered site {index} ({site.species}): partial occupancies are not supported; "
                "order the structure first (e.g. pymatgen's OrderDisorderedStructureTransformation)"
            )
        for species, _ in occupants:
            if getattr(species, "symbol", None) not in symbols_to_numbers:
                raise ScopeError(f"{label}: unknown element {species!s} at site {index}")
        numbers.append(symbols_to_numbers[occupants[0][0].symbol])
    return CrystalCell(
        lattice=np.asarray(structure.lattice.matrix, dtype=float),
        frac_coords=np.asarray(structure.frac_coords, dtype=float),
        atomic_numbers=np.asarray(numbers, dtype=np.int64),
        name=label,
    )


def _is_ase_atoms(obj: Any) -> bool:
    """Whether ``obj`` is an ``ase.Atoms`` (or a subclass such as pymatgen's ``MSONAtoms``); ASE stays optional."""
    ase = sys.modules.get("ase")  # an Atoms object can only exist once ase has been imported
    return ase is not None and isinstance(obj, ase.Atoms)


def _check_periodic_atoms(atoms: Any, label: str) -> None:
    if not all(atoms.pbc):
        raise ScopeError(f"{label}: non-periodic input (ASE Atoms with pbc={list(atoms.pbc)}); SCOPE needs a periodic crystal")


def _cell_from_ase(atoms: Any, label: str) -> CrystalCell:
    _check_periodic_atoms(atoms, label)
    lattice = np.asarray(atoms.cell.array, dtype=float)
    if not np.all(np.isfinite(lattice)) or abs(np.linalg.det(lattice)) < MIN_CELL_VOLUME:
        frac = np.full((len(atoms), 3), np.nan)
    else:
        frac = np.asarray(atoms.get_scaled_positions(wrap=False), dtype=float)
    return CrystalCell(lattice, frac, np.asarray(atoms.numbers, dtype=np.int64), label)


def _check_dict_elements(data: Mapping, label: str) -> None:
    """Raise ``ScopeError`` for the first site of a pymatgen dict whose element is not a chemical element."""
    sites = data.get("sites")
    if not isinstance(sites, list):
        return
    symbols = []
    for index, site in enumerate(sites):
        for species in site.get("species", []) if isinstance(site, Mapping) else []:
            symbol = species.get("element") if isinstance(species, Mapping) else None
            if symbol not in atomic_numbers_by_symbol() and symbol not in HYDROGEN_ISOTOPES:
                raise ScopeError(f"{label}: unknown element {symbol!r} at site {index}")
            symbols.append(symbol)
    note_hydrogen_isotopes(symbols, label)


def _cell_from_dict(data: Mapping, label: str) -> CrystalCell | None:
    """Read a pymatgen structure dict directly; ``None`` (use pymatgen) for anything unusual."""
    _check_dict_elements(data, label)
    try:
        lattice = np.asarray(data["lattice"]["matrix"], dtype=float)
        frac, numbers = [], []
        for site in data["sites"]:
            (species,) = site["species"]
            if float(species.get("occu", 1.0)) != 1.0:
                return None
            element = species["element"]
            numbers.append(1 if element in HYDROGEN_ISOTOPES else atomic_numbers_by_symbol()[element])
            frac.append(site["abc"])
        frac_coords = np.asarray(frac, dtype=float).reshape(-1, 3)
    except (KeyError, TypeError, ValueError):
        return None  # pymatgen's reading names what is wrong
    if lattice.shape != (3, 3):
        return None
    return CrystalCell(lattice, frac_coords, np.asarray(numbers, dtype=np.int64), label)


# --- POSCAR -----------------------------------------------------------------------------------------


def _poscar_source(obj: Any, label: str) -> str | Path | None:
    """Any multi-line text that no other reader recognised (the text itself), or a file with a POSCAR name
    (:data:`cloud_hf.formats.POSCAR_FILE_NAME`; its path)."""
    if isinstance(obj, str) and "\n" in obj:
        return obj
    if isinstance(obj, (str, Path)) and is_poscar_file_name(obj) and _is_file(Path(obj)):
        return Path(obj)
    return None


def _structure_from_poscar(source: str | Path, label: str, allow_partial_occupancy: bool = False) -> Structure:
    """POSCAR text, or a POSCAR file, checked (:func:`_checked_poscar_text`) and read by pymatgen."""
    if isinstance(source, str):
        return _parse_with_pymatgen(_checked_poscar_text(source, label), "poscar", label)
    return _read_structure_file(source, label, lambda path: _read_poscar_file(path, label))


def _read_poscar_file(path: Path, label: str) -> Structure:
    text = _checked_poscar_text(_read_text(path, label), label)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(text, fmt="poscar")


def _checked_poscar_text(text: str, label: str) -> str:
    """POSCAR text ready for pymatgen: a species line, one positive scale factor, and counts that match.

    * A VASP 4 POSCAR has no species line (the counts follow the lattice) and pymatgen then names the species
      H, He, Li, ... silently. Its species are taken from the comment line when that line is exactly one element
      symbol per count (the usual VASP 4 convention, also ASE's); otherwise it is refused.
    * A negative scale factor is the cell volume (Å³) and three scale factors scale the x, y, z components of the
      lattice vectors and of Cartesian coordinates (VASP's and ASE's rule); pymatgen multiplies Cartesian
      coordinates by a negative volume and cannot read three factors, so both are applied here and the text
      handed on has scale 1.
    * Species names and counts of different lengths, or fewer (or more) coordinate lines than the counts give
      atoms, are refused with both numbers.
    """
    lines = text.splitlines()
    if len(lines) < 7:
        return text
    counts = lines[5].split()
    if counts and all(token.isdigit() for token in counts):  # VASP 4: line 6 holds the counts
        symbols = lines[0].split()
        if not (len(symbols) == len(counts) and all(symbol in atomic_numbers_by_symbol() for symbol in symbols)):
            raise ScopeError(
                f"{label}: VASP 4 POSCAR without a species line: the elements of its {len(counts)} species are not "
                f"in the file; add the species line above the counts (VASP 5), or put the symbols on the first line"
            )
        lines = [*lines[:5], " ".join(symbols), *lines[5:]]
    species, counts = lines[5].split(), lines[6].split() if len(lines) > 6 else []
    if not counts or not all(token.isdigit() for token in counts):
        return text  # not a POSCAR layout this reader knows: pymatgen says what is wrong
    note_hydrogen_isotopes(species, label)
    if len(species) != len(counts):
        raise ScopeError(f"{label}: POSCAR line 6 names {len(species)} species ({' '.join(species)}) but line 7 "
                         f"gives {len(counts)} atom counts ({' '.join(counts)}); give one count per species")
    mode_line = 8 if len(lines) > 7 and lines[7].strip()[:1].lower() == "s" else 7  # after "Selective dynamics"
    n_atoms = sum(int(count) for count in counts)
    coordinates = lines[mode_line + 1:]
    given = next((index for index, line in enumerate(coordinates) if not _is_coordinate_line(line)), len(coordinates))
    if given != n_atoms and (given < n_atoms or coordinates[n_atoms].strip()):
        raise ScopeError(f"{label}: the POSCAR's atom counts ({' '.join(counts)}) give {n_atoms} atoms but "
                         f"{given} coordinate lines follow")
    cartesian = len(lines) > mode_line and lines[mode_line].strip()[:1].lower() in ("c", "k")
    lines = _unit_scale_poscar_lines(lines, mode_line, n_atoms, cartesian, label)
    return "\n".join(lines) + "\n"


def _is_coordinate_line(line: str) -> bool:
    """Whether a POSCAR line starts with three numbers (a position)."""
    tokens = line.split()[:3]
    try:
        [float(token) for token in tokens]
    except ValueError:
        return False
    return len(tokens) == 3


def _unit_scale_poscar_lines(lines: list[str], mode_line: int, n_atoms: int, cartesian: bool,
                             label: str) -> list[str]:
    """POSCAR lines (with a species line) with the scale factor applied to the lattice and Cartesian coordinates
    and written as 1, where pymatgen would misread it (a negative volume, three factors); unchanged otherwise."""
    tokens = lines[1].split()
    try:
        scale = [float(token) for token in tokens[:3]] if len(tokens) >= 3 else [float(tokens[0])]
        lattice = np.array([[float(value) for value in line.split()[:3]] for line in lines[2:5]])
    except (ValueError, IndexError):
        return lines  # pymatgen says what is wrong
    if len(scale) == 1 and scale[0] > 0:
        return lines
    if len(scale) == 3 and not all(value > 0 for value in scale):
        raise ScopeError(f"{label}: POSCAR line 2 gives three scale factors {tokens[:3]}; they must all be > 0 "
                         "(a single negative number is a volume)")
    if len(scale) == 1 and scale[0] == 0:
        raise ScopeError(f"{label}: POSCAR line 2: scale factor 0")
    if lattice.shape != (3, 3) or not np.all(np.isfinite(lattice)):
        return lines
    if len(scale) == 1:  # a negative number is the volume of the cell, Å³
        volume = abs(float(np.linalg.det(lattice)))
        if not volume > 0:
            raise ScopeError(f"{label}: POSCAR: a negative scale factor (a volume) with a degenerate lattice")
        factors = np.full(3, (-scale[0] / volume) ** (1.0 / 3.0))
    else:
        factors = np.array(scale)
    lattice = lattice * factors  # each Cartesian component x, y, z by its factor
    lines = [lines[0], "1.0", *(" ".join(f"{value:.12g}" for value in row) for row in lattice), *lines[5:]]
    if cartesian:
        first = mode_line + 1
        for index in range(first, first + n_atoms):
            values = lines[index].split()
            position = np.array([float(value) for value in values[:3]]) * factors
            lines[index] = " ".join([*(f"{value:.12g}" for value in position), *values[3:]])
    return lines


# --- CIF: gemmi ---------------------------------------------------------------------------------------
#
# gemmi replaces a hand-written reader that read a CIF giving its space group only by IT number or Hall
# symbol as P1 (silently wrong crystals). Measured with `benchmarks/bench_structures.py --cif` on 500 MP-20
# CIFs: read_cif_cell is 30× faster than pymatgen's CifParser, with the same site counts on 500/500.

CIF_SYMMETRY_ORDER = "S.H1N"
"""gemmi's order for a block's space group: symmetry operators, else Hall symbol, else H-M name (with a
``.`` the H-M name wins over an inconsistent Hall symbol, ``1``: origin choice 1), else IT number."""

_SYMMETRY_TAGS = (
    "_space_group_symop_operation_xyz", "_symmetry_equiv_pos_as_xyz", "_space_group_name_hall",
    "_symmetry_space_group_name_hall", "_space_group_name_h-m_alt", "_symmetry_space_group_name_h-m",
    "_space_group_it_number", "_symmetry_int_tables_number",
)


def _looks_like_cif(text: str) -> bool:
    return "\n" in text and re.search(r"^\s*data_", text, flags=re.MULTILINE | re.IGNORECASE) is not None


def _cif_text_of(obj: Any, label: str) -> str | None:
    """The CIF text of ``obj`` (CIF text, a path to a ``.cif`` / ``.mcif`` file, or a file with a POSCAR name that
    holds CIF text); ``None`` if it is not a CIF."""
    if isinstance(obj, str) and _looks_like_cif(obj.removeprefix("\ufeff")):
        return obj.removeprefix("\ufeff")
    if isinstance(obj, (str, Path)) and is_cif_file_name(obj) and _is_file(Path(obj)):
        return _read_text(Path(obj), label)  # read as CIF even if it does not look like one: gemmi says why not
    if isinstance(obj, (str, Path)) and is_poscar_file_name(obj) and _is_file(Path(obj)):
        text = _read_text(Path(obj), label)
        if _looks_like_cif(text):  # CIF text under a POSCAR name (.vasp): read as what it is
            return text
    return None


def _parse_cif_document(text: str, label: str) -> gemmi.cif.Document:
    try:
        return gemmi.cif.read_string(text)
    except (ValueError, RuntimeError) as error:
        raise ScopeError(f"{label}: unreadable or malformed CIF: {_gemmi_reason(error)}") from error


def _gemmi_reason(error: Exception) -> str:
    """gemmi's parse error ``string:9:0(159): Wrong number of values in loop _atom_site_*`` in words."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    match = re.match(r"^\S*?:(\d+):\d+(?:\(\d+\))?:\s*(.*)$", message)
    if match is None:
        return message
    line, reason = match.groups()
    hint = " (is the file truncated?)" if "number of values in loop" in reason or reason == "parse error" else ""
    return f"line {line}: {reason[:1].lower()}{reason[1:]}{hint}"


def _crystal_blocks(document: gemmi.cif.Document) -> list[gemmi.cif.Block]:
    """The data blocks that hold atom sites (a CIF may also carry blocks of publication data only)."""
    return [block for block in document if len(block.find_values("_atom_site_label")) or len(block.find_values("_atom_site_fract_x"))]


def cif_blocks(text: str, label: str = "CIF") -> list[tuple[str, str]]:
    """``(block name, CIF text of the block)`` for every data block of ``text`` that holds atom sites.

    A CIF with several crystals gives one entry per crystal, in file order; command-line inputs and tables
    use it to give each block its own row (named ``<file>:<block name>``). ``CrystalInputError`` where the
    text is not CIF at all.
    """
    blocks = _crystal_blocks(_parse_cif_document(text, label))
    return [(block.name, block.as_string()) for block in blocks]


def read_cif_cell(text: str, label: str) -> CrystalCell | None:
    """Read a one-crystal CIF with gemmi into an (unvalidated) ordered :class:`CrystalCell`.

    Returns ``None`` (read it with pymatgen) for a block without fractional coordinates. Raises
    ``CrystalInputError`` for malformed or truncated text, several crystal blocks, a missing cell, a
    symmetry given but not understood, an unknown element (named by its ``_atom_site`` row and label, as in
    the file), a site of occupancy 0, or a partial occupancy.
    """
    small = _read_small_structure(text, label, allow_partial_occupancy=False)
    return None if small is None else _cell_from_sites(small, small.get_all_unit_cell_sites(), label)


def _read_small_structure(text: str, label: str, allow_partial_occupancy: bool) -> gemmi.SmallStructure | None:
    """gemmi's reading of the one crystal block of ``text``, with its space group set and its sites checked."""
    blocks = _crystal_blocks(_parse_cif_document(text, label))
    if not blocks:
        raise ScopeError(f"{label}: unreadable or malformed CIF: no _atom_site loop (no atoms)")
    if len(blocks) > 1:
        names = ", ".join(f"data_{block.name}" for block in blocks)
        raise ScopeError(
            f"{label}: {len(blocks)} crystal data blocks ({names}); one crystal per input: split the file with "
            "cloud_hf.structures.cif_blocks (cloud-hf scope and predict give each block its own row)"
        )
    block = blocks[0]
    _check_cell_values(block, label)
    if not len(block.find_values("_atom_site_fract_x")) or _magnetic_tags(block):
        return None  # pymatgen reads it: Cartesian-only sites, or magnetic symmetry (which gemmi does not know)
    try:
        small = gemmi.make_small_structure_from_block(block)
    except (RuntimeError, ValueError) as error:  # gemmi checks the cell: "Impossible angle - N*180deg."
        raise ScopeError(f"{label}: impossible cell: {_reason(error)}") from error
    cell = small.cell
    lengths, angles = (cell.a, cell.b, cell.c), (cell.alpha, cell.beta, cell.gamma)
    if not all(length > 0 for length in lengths) or not all(0 < angle < 180 for angle in angles):
        raise ScopeError(
            f"{label}: impossible cell: lengths {', '.join(f'{v:g}' for v in lengths)} Å must be > 0 and angles "
            f"{', '.join(f'{v:g}' for v in angles)}° between 0° and 180°"
        )
    small.determine_and_set_spacegroup(CIF_SYMMETRY_ORDER)
    if small.spacegroup is None and any(len(block.find_values(tag)) for tag in _SYMMETRY_TAGS):
        raise ScopeError(f"{label}: the CIF gives a space group or symmetry operations that cannot be interpreted")
    if small.spacegroup is not None and small.check_spacegroup().strip():
        logger.warning("%s", symmetry_disagreement(small, label))
    _read_hydrogen_isotopes_as_hydrogen(small, label)
    for row, site in enumerate(small.sites, start=1):
        where = f"_atom_site row {row} (label {site.label!r})"
        if site.element.atomic_number == 0:
            raise ScopeError(f"{label}: unknown element {site.type_symbol or site.label!r} at {where}")
        if site.occ == 0:
            raise ScopeError(f"{label}: {where} has occupancy 0 (an empty site); remove it from the file")
        if site.occ > 1.0 + 1e-6:
            raise ScopeError(f"{label}: {where} has occupancy {site.occ:g}, more than 1 (not a possible occupancy)")
        if not allow_partial_occupancy and abs(site.occ - 1.0) > 1e-6:
            raise ScopeError(
                f"{label}: disordered site at {where} (occupancy {site.occ:g}): partial occupancies are not "
                "supported; order the structure first (e.g. pymatgen's OrderDisorderedStructureTransformation)"
            )
    n_operations = len(small.spacegroup.operations()) if small.spacegroup is not None else 1
    if len(small.sites) * n_operations > 10 * MAX_SITES:
        raise ScopeError(
            f"{label}: {len(small.sites)} sites × {n_operations} symmetry operations: far more than the "
            f"{MAX_SITES} sites a cell may have (cloud_hf.structures.MAX_SITES)"
        )
    return small


def _read_hydrogen_isotopes_as_hydrogen(small: gemmi.SmallStructure, label: str) -> None:
    """Sites of D or T (gemmi knows D as Z = 1 but not T) become H, with the note of :func:`note_hydrogen_isotopes`."""
    symbols = []
    for site in small.sites:
        symbol = re.match(r"[A-Za-z]*", site.type_symbol or site.label).group()
        if site.element.name == "D" or (site.element.atomic_number == 0 and symbol in HYDROGEN_ISOTOPES):
            symbols.append(symbol if symbol in HYDROGEN_ISOTOPES else "D")
            site.element = gemmi.Element("H")
    note_hydrogen_isotopes(symbols, label)


def symmetry_disagreement(small: gemmi.SmallStructure, label: str) -> str:
    """One line saying which of a CIF's symmetry operators, Hall symbol, H-M name and IT number disagree (gemmi's
    ``check_spacegroup``), what each reads as, and which one was used (the :data:`CIF_SYMMETRY_ORDER` rule)."""
    def group(spacegroup: gemmi.SpaceGroup | None) -> str:
        return "not a space group gemmi knows" if spacegroup is None else f"{spacegroup.xhm()} (SG {spacegroup.number})"

    given = []
    if small.symops:
        ops = gemmi.GroupOps([gemmi.Op(triplet) for triplet in small.symops])
        given.append(("symmetry operators", f"symmetry operators ({len(small.symops)}): {group(gemmi.find_spacegroup_by_ops(ops))}"))
    if small.spacegroup_hall.strip():
        hall = small.spacegroup_hall.strip()
        try:
            from_hall = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(hall))
        except (RuntimeError, ValueError):
            from_hall = None
        given.append(("Hall symbol", f"Hall symbol {hall!r}: {group(from_hall)}"))
    if small.spacegroup_hm.strip():
        hm = small.spacegroup_hm.strip()
        given.append(("H-M name", f"H-M name {hm!r}: {group(gemmi.find_spacegroup_by_name(hm))}"))
    if small.spacegroup_number:
        given.append(("IT number", f"IT number {small.spacegroup_number}"))
    used = given[0][0] if given else "IT number"
    return (f"{label}: the CIF's symmetry disagrees with itself ({'; '.join(text for _, text in given)}); read with "
            f"the {used}: {group(small.spacegroup)} (rule: symmetry operators, else Hall symbol, else H-M name, "
            "else IT number)")


CELL_TAGS = ("_cell_length_a", "_cell_length_b", "_cell_length_c",
             "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
"""The six cell parameters a CIF must give (Å, degrees): none is ever assumed (gemmi would take 1 Å and 90°)."""

_CIF_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?(\(\d+\))?$")
"""A CIF number: digits, an optional exponent and an optional standard uncertainty in brackets, e.g. 5.431(2)."""


def _check_cell_values(block: gemmi.cif.Block, label: str) -> None:
    """``CrystalInputError`` naming the tag when one of the six :data:`CELL_TAGS` is missing, unknown (``?``),
    inapplicable (``.``) or not a number, whichever reader reads the rest of the block."""
    for tag in CELL_TAGS:
        value = block.find_value(tag)
        if value is None:
            problem = "missing"
        elif value in ("?", "."):
            problem = "unknown ('?')" if value == "?" else "inapplicable ('.')"
        elif not _CIF_NUMBER.match(value):  # a quoted number is text, which gemmi reads as NaN
            problem = f"not a number ({value!r})"
        else:
            continue
        raise ScopeError(f"{label}: the cell is not given: {tag} is {problem}; a CIF must give all three cell "
                         "lengths (Å) and angles (°)")


def _cell_from_sites(small: gemmi.SmallStructure, sites: list, label: str) -> CrystalCell:
    cell = small.cell
    lattice = Lattice.from_parameters(cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma).matrix
    frac_coords = np.array([site.fract.tolist() for site in sites], dtype=float).reshape(-1, 3)
    numbers = np.array([site.element.atomic_number for site in sites], dtype=np.int64)
    return CrystalCell(lattice, frac_coords, numbers, label)


def _structure_from_cif(text: str, label: str, allow_partial_occupancy: bool) -> Structure:
    """A CIF read by pymatgen (the reference's reader and site order), unless gemmi's reading of the same
    file shows that pymatgen lost atoms (it reads a Hall-symbol-only CIF as P1); then gemmi's cell, sorted
    by electronegativity as pymatgen sorts CIF structures."""
    small = _read_small_structure(text, label, allow_partial_occupancy)
    structure = _parse_with_pymatgen(text, "cif", label)
    if small is None:
        return structure
    sites = small.get_all_unit_cell_sites()
    gemmi_atoms = float(sum(site.occ for site in sites))
    pymatgen_atoms = float(sum(site.species.num_atoms for site in structure))
    if abs(gemmi_atoms - pymatgen_atoms) < 1e-3:
        return structure
    if any(abs(site.occ - 1.0) > 1e-6 for site in small.sites):
        raise ScopeError(
            f"{label}: pymatgen reads {pymatgen_atoms:g} atoms per cell and gemmi {gemmi_atoms:g}; the CIF's "
            "symmetry is ambiguous"
        )
    cell = _cell_from_sites(small, sites, label)
    return Structure(cell.lattice, cell.atomic_numbers.tolist(), cell.frac_coords).get_sorted_structure()


def _cell_from_cif(text: str, label: str) -> CrystalCell:
    """A CIF read by gemmi (:func:`read_cif_cell`), or by pymatgen where gemmi has no fractional coordinates or
    the CIF has magnetic symmetry."""
    cell = read_cif_cell(text, label)
    return cell if cell is not None else _structure_arrays(_parse_with_pymatgen(text, "cif", label), label)


# --- the registry: the first reader that recognises an input reads it, in this order -----------------

register_reader(CrystalReader("pymatgen-dict", _dict_source, _structure_from_dict, _cell_from_dict))
register_reader(CrystalReader("cif", _cif_text_of, _structure_from_cif, _cell_from_cif))
register_reader(CrystalReader("crystal-cell", _instance_of(CrystalCell), _structure_from_cell, _cell_as_given))
register_reader(CrystalReader("structure", _instance_of(Structure), _structure_as_given))
register_reader(CrystalReader("molecule", _instance_of(Molecule), _refuse_molecule))
register_reader(CrystalReader("ase", _ase_source, _structure_from_ase, _cell_from_ase))
register_reader(CrystalReader("pmg-str", _pmg_str_source, _structure_from_pmg_str_text))
register_reader(CrystalReader("poscar", _poscar_source, _structure_from_poscar, fallback=True))
register_reader(CrystalReader("file", _file_source, _structure_from_file, fallback=True))


__all__ = [
    "CELL_TAGS",
    "CIF_SUFFIXES",
    "CIF_SYMMETRY_ORDER",
    "HYDROGEN_ISOTOPES",
    "INCOMMENSURATE_CIF_TAG_PREFIXES",
    "ISOLATED_CLUSTER_GAP",
    "MAGNETIC_CIF_TAG_PREFIXES",
    "MAX_ATOMIC_NUMBER",
    "MAX_FRACTIONAL_COORDINATE",
    "MAX_IMAGE_SHIFTS",
    "MAX_LATTICE_LENGTH",
    "MAX_SITES",
    "MIN_CELL_VOLUME",
    "MIN_INTERATOMIC_DISTANCE",
    "POSCAR_FILE_NAME",
    "CrystalCell",
    "CrystalReader",
    "ScopeError",
    "atomic_numbers_by_symbol",
    "cif_blocks",
    "closest_pair",
    "crystal_readers",
    "describe_input",
    "element_symbols",
    "failure_message",
    "input_format",
    "interplanar_spacings",
    "isolated_cluster_gaps",
    "load_cell",
    "load_structure",
    "nearest_neighbour_distances",
    "note_hydrogen_isotopes",
    "read_cif_cell",
    "register_reader",
    "structure_from_pmg_str",
    "symmetry_disagreement",
    "unregister_reader",
    "validate_cell",
]
