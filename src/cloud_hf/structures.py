"""Turn any crystal input into a validated structure; every failure is a ``ScopeError`` naming the input.

Accepted inputs: a pymatgen ``Structure``, an ASE ``Atoms``, a pymatgen structure dict
(``Structure.as_dict()``), CIF text, a path (``str`` / ``Path``) to a CIF, POSCAR or any other
file pymatgen reads, or a :class:`CrystalCell` already read by :func:`load_cell`.

Two entry points:

* :func:`load_structure` returns a pymatgen ``Structure`` (what the reference encoder and most users
  want);
* :func:`load_cell` returns a :class:`CrystalCell` of plain numpy arrays, the fast path of the canonical
  encoder. pymatgen-written CIFs and CIFs with a symmetry-operation loop are read by a small parser
  here (about 10× faster than pymatgen's ``CifParser``); anything unusual falls back to pymatgen.

Both apply the same checks (:func:`validate_cell`): no sites, NaN/inf lattice or coordinates, a
degenerate cell, unknown elements, partial occupancies and atoms closer than ``min_distance`` (Å).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Molecule, Structure
from pymatgen.core.periodic_table import Element

from cloud_hf.errors import ScopeError

MIN_INTERATOMIC_DISTANCE = 0.5
"""Default smallest allowed distance between two atoms, in Å; closer atoms are reported as overlapping."""

MIN_CELL_VOLUME = 1e-3
"""Smallest accepted cell volume, in Å³."""

CIF_SITE_TOLERANCE = 1e-4
"""Fractional distance below which two symmetry images are one site (pymatgen's ``CifParser`` default)."""

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


def load_structure(
    obj: Any,
    name: str | None = None,
    min_distance: float = MIN_INTERATOMIC_DISTANCE,
    allow_partial_occupancy: bool = False,
) -> Structure:
    """Read ``obj`` into a validated pymatgen ``Structure`` (see the module docstring for accepted inputs).

    Args:
        obj: the input.
        name: how error messages refer to the input (default: its path, CIF block name or type).
        min_distance: smallest allowed interatomic distance, in Å.
        allow_partial_occupancy: accept disordered sites (the reference encoder does; canonical SCOPE
            does not, as a Wyckoff orbit must hold one element).

    Raises:
        ScopeError: the input cannot be read, is not a periodic crystal, is disordered (unless
            allowed), or fails a check of :func:`validate_cell`.
    """
    label = describe_input(obj, name)
    structure = _to_structure(_decode_json_text(obj, label), label)
    validate_cell(_structure_arrays(structure, label, allow_partial_occupancy), min_distance=min_distance)
    return structure


def load_cell(obj: Any, name: str | None = None, min_distance: float = MIN_INTERATOMIC_DISTANCE) -> CrystalCell:
    """Read ``obj`` into a validated :class:`CrystalCell`, avoiding pymatgen objects where possible.

    Same inputs, checks and errors as :func:`load_structure`; a ``CrystalCell`` (already read) is only
    re-validated, so callers can read a file once and reuse the cell.
    """
    if isinstance(obj, CrystalCell):
        validate_cell(obj, min_distance=min_distance)
        return obj
    label = describe_input(obj, name)
    obj = _decode_json_text(obj, label)
    cell = None
    if isinstance(obj, Mapping):
        cell = _cell_from_dict(obj, label)
    elif isinstance(obj, str) and _looks_like_cif(obj):
        cell = parse_simple_cif(obj, label)
    elif isinstance(obj, (str, Path)) and Path(obj).suffix.lower() == ".cif" and _is_file(Path(obj)):
        cell = parse_simple_cif(_read_text(Path(obj), label), label)
    elif _is_ase_atoms(obj):
        cell = _cell_from_ase(obj, label)
    if cell is None:
        cell = _structure_arrays(_to_structure(obj, label), label)
    validate_cell(cell, min_distance=min_distance)
    return cell


def validate_cell(cell: CrystalCell, min_distance: float = MIN_INTERATOMIC_DISTANCE) -> None:
    """Check that ``cell`` is a usable crystal; raise ``ScopeError`` naming ``cell.name`` otherwise."""
    if len(cell) == 0:
        raise ScopeError(f"{cell.name}: empty structure (no sites)")
    if not np.all(np.isfinite(cell.lattice)):
        raise ScopeError(f"{cell.name}: the lattice contains NaN or infinite values")
    if not np.all(np.isfinite(cell.frac_coords)):
        raise ScopeError(f"{cell.name}: the atomic coordinates contain NaN or infinite values")
    volume = abs(float(np.linalg.det(cell.lattice)))
    if volume < MIN_CELL_VOLUME:
        raise ScopeError(f"{cell.name}: degenerate lattice (cell volume {volume:.3g} Å³)")
    bad = np.flatnonzero((cell.atomic_numbers < 1) | (cell.atomic_numbers > MAX_ATOMIC_NUMBER))
    if bad.size:
        raise ScopeError(f"{cell.name}: unknown element at site {bad[0]} (atomic number {cell.atomic_numbers[bad[0]]})")
    closest = closest_pair(cell.lattice, cell.frac_coords)
    if closest is not None and closest[2] < min_distance:
        i, j, distance = closest
        raise ScopeError(
            f"{cell.name}: overlapping atoms: sites {i} and {j} are {distance:.3f} Å apart "
            f"(minimum {min_distance} Å)"
        )


_NEIGHBOUR_CELLS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=float)


def closest_pair(lattice: np.ndarray, frac_coords: np.ndarray, chunk: int = 64) -> tuple[int, int, float] | None:
    """The two distinct sites closest to each other under periodic boundaries, with their distance in Å.

    Uses minimum-image differences plus the 26 neighbouring cells, in chunks of rows to bound memory.
    Returns ``None`` for a single site.
    """
    n_sites = len(frac_coords)
    if n_sites < 2:
        return None
    image_shifts = _NEIGHBOUR_CELLS @ lattice  # (27, 3) Å
    best = (0, 0, math.inf)
    for start in range(0, n_sites - 1, chunk):
        stop = min(start + chunk, n_sites - 1)
        delta = frac_coords[start:stop, None, :] - frac_coords[None, :, :]
        delta -= np.rint(delta)
        cart = (delta @ lattice)[:, :, None, :] + image_shifts  # (rows, n_sites, 27, 3)
        squared = np.einsum("ijkl,ijkl->ijk", cart, cart).min(axis=2)
        rows = np.arange(stop - start)
        squared[rows, rows + start] = math.inf  # a site and its own images
        i, j = divmod(int(np.argmin(squared)), n_sites)
        if squared[i, j] < best[2] ** 2:
            best = (min(start + i, j), max(start + i, j), math.sqrt(squared[i, j]))
    return best


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


# --- conversions ------------------------------------------------------------------------------------


def _decode_json_text(obj: Any, label: str) -> Any:
    """JSON text of a pymatgen dict (as stored in CSV columns) → the dict; anything else unchanged."""
    if isinstance(obj, str) and obj.lstrip().startswith("{"):
        try:
            return json.loads(obj)
        except json.JSONDecodeError as error:
            raise ScopeError(f"{label}: malformed JSON structure text: {error}") from error
    return obj


def _to_structure(obj: Any, label: str) -> Structure:
    """Any accepted input → pymatgen ``Structure`` (unvalidated)."""
    if isinstance(obj, Structure):
        return obj
    if isinstance(obj, CrystalCell):
        return Structure(obj.lattice, obj.atomic_numbers.tolist(), obj.frac_coords)
    if isinstance(obj, Molecule):
        raise ScopeError(f"{label}: non-periodic input (a Molecule); SCOPE needs a periodic crystal")
    if _is_ase_atoms(obj):
        _check_periodic_atoms(obj, label)
        from pymatgen.io.ase import AseAtomsAdaptor

        try:
            return AseAtomsAdaptor.get_structure(obj)
        except Exception as error:
            raise ScopeError(f"{label}: cannot convert the ASE Atoms: {error}") from error
    if isinstance(obj, Mapping):
        if obj.get("@class") == "Molecule" or ("sites" in obj and "lattice" not in obj):
            raise ScopeError(f"{label}: non-periodic input (a Molecule dict); SCOPE needs a periodic crystal")
        _check_dict_elements(obj, label)
        try:
            return Structure.from_dict(obj)
        except Exception as error:
            raise ScopeError(f"{label}: malformed pymatgen structure dict: {_reason(error)}") from error
    if isinstance(obj, str) and _looks_like_cif(obj):
        return _parse_with_pymatgen(obj, "cif", label)
    if isinstance(obj, str) and obj.lstrip().startswith("Full Formula"):  # the text of str(Structure)
        try:
            return structure_from_pmg_str(obj)
        except ValueError as error:
            raise ScopeError(f"{label}: malformed str(Structure) text: {error}") from error
    if isinstance(obj, str) and "\n" in obj:  # any other text that is not CIF is read as POSCAR
        return _parse_with_pymatgen(obj, "poscar", label)
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        if not _is_file(path):
            raise ScopeError(f"{label}: no such file" + (", and not CIF text" if isinstance(obj, str) else ""))
        if path.suffix.lower() == ".cif":
            return _parse_with_pymatgen(_read_text(path, label), "cif", label)
        try:
            loaded = Structure.from_file(path)
        except Exception as error:
            raise ScopeError(f"{label}: unreadable structure file: {_reason(error)}") from error
        return loaded
    raise ScopeError(
        f"{label}: unsupported input type {type(obj).__name__} (expected a pymatgen Structure, ASE Atoms, "
        "pymatgen dict, CIF text or a path)"
    )


def _is_file(path: Path) -> bool:
    """``path.is_file()``, false (not an error) for strings that cannot be paths, e.g. too long ones."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _parse_with_pymatgen(text: str, fmt: str, label: str) -> Structure:
    import warnings

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
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _read_text(path: Path, label: str) -> str:
    try:
        return path.read_text(errors="replace")
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
    for index, site in enumerate(sites):
        for species in site.get("species", []) if isinstance(site, Mapping) else []:
            symbol = species.get("element") if isinstance(species, Mapping) else None
            if symbol not in atomic_numbers_by_symbol():
                raise ScopeError(f"{label}: unknown element {symbol!r} at site {index}")


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
            numbers.append(atomic_numbers_by_symbol()[species["element"]])
            frac.append(site["abc"])
    except (KeyError, TypeError, ValueError):
        return None
    if lattice.shape != (3, 3):
        return None
    frac_coords = np.asarray(frac, dtype=float).reshape(-1, 3)
    return CrystalCell(lattice, frac_coords, np.asarray(numbers, dtype=np.int64), label)


# --- a small CIF reader for the common case ---------------------------------------------------------

_NUMBER_WITH_UNCERTAINTY = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:\(\d+\))?$")
_ELEMENT_PREFIX = re.compile(r"^([A-Z][a-z]?)")
_SYMMETRY_OPERATION_TAGS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz")
_SPACE_GROUP_NAME_TAGS = ("_symmetry_space_group_name_h-m", "_space_group_name_h-m_alt")


def _looks_like_cif(text: str) -> bool:
    return "\n" in text and "_cell_length_a" in text and re.search(r"^\s*data_", text, flags=re.MULTILINE) is not None


def _cif_tokens(line: str) -> list[str]:
    """Whitespace-separated CIF values; single- or double-quoted values may contain spaces."""
    return [quoted or quoted2 or bare for quoted, quoted2, bare in re.findall(r"'([^']*)'|\"([^\"]*)\"|(\S+)", line)]


def _cif_number(value: str) -> float:
    match = _NUMBER_WITH_UNCERTAINTY.match(value)
    if match is None:
        raise ValueError(value)
    return float(match.group(1))


def parse_symmetry_operation(text: str) -> tuple[np.ndarray, np.ndarray]:
    """A CIF symmetry operation such as ``'-x+1/2, y, z-1/4'`` → (3×3 integer rotation, translation)."""
    rotation = np.zeros((3, 3))
    translation = np.zeros(3)
    components = text.replace(" ", "").lower().split(",")
    if len(components) != 3:
        raise ValueError(f"symmetry operation {text!r} does not have three components")
    for row, component in enumerate(components):
        for term in re.findall(r"[+-]?[^+-]+", component):
            sign = -1.0 if term.startswith("-") else 1.0
            term = term.lstrip("+-")
            if term[-1] in "xyz":
                coefficient = term[:-1].rstrip("*")
                rotation[row, "xyz".index(term[-1])] += sign * (float(Fraction(coefficient)) if coefficient else 1.0)
            else:
                translation[row] += sign * float(Fraction(term))
    return rotation, translation


def parse_simple_cif(text: str, label: str) -> CrystalCell | None:
    """Read a single-block CIF with an ``_atom_site`` loop; ``None`` where pymatgen must do it.

    Handles pymatgen-written P1 CIFs and CIFs listing their symmetry operations. Falls back (returns
    ``None``) for several data blocks, multi-line text fields, partial occupancies, missing type symbols
    or a space group given only by name.
    """
    values: dict[str, str] = {}
    loops: list[dict[str, list[str]]] = []
    lines = text.splitlines()
    blocks = 0
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith(";"):
            return None
        if line.startswith("data_"):
            blocks += 1
            if blocks > 1:
                return None
            continue
        if line.lower() == "loop_":
            tags: list[str] = []
            while index < len(lines) and lines[index].strip().startswith("_"):
                tags.append(lines[index].strip().lower())
                index += 1
            cells: list[str] = []
            while index < len(lines):
                row = lines[index].strip()
                if not row or row.startswith("#"):
                    index += 1
                    continue
                if row.startswith(("_", "loop_", "data_", ";")):
                    break
                cells.extend(_cif_tokens(row))
                index += 1
            if not tags or len(cells) % len(tags):
                return None
            loops.append({tag: cells[k :: len(tags)] for k, tag in enumerate(tags)})
            continue
        if line.startswith("_"):
            parts = _cif_tokens(line)
            if len(parts) != 2:
                return None
            values[parts[0].lower()] = parts[1]
    atom_loop = next((loop for loop in loops if "_atom_site_fract_x" in loop), None)
    if atom_loop is None or "_atom_site_type_symbol" not in atom_loop:
        return None
    operations_loop = next((loop for loop in loops if any(tag in loop for tag in _SYMMETRY_OPERATION_TAGS)), None)
    try:
        lengths = [_cif_number(values[f"_cell_length_{axis}"]) for axis in "abc"]
        angles = [_cif_number(values[f"_cell_angle_{angle}"]) for angle in ("alpha", "beta", "gamma")]
        occupancies = [_cif_number(v) for v in atom_loop.get("_atom_site_occupancy", [])]
        coords = np.array(
            [[_cif_number(v) for v in atom_loop[f"_atom_site_fract_{axis}"]] for axis in "xyz"], dtype=float
        ).T
        symbols = []
        for symbol in atom_loop["_atom_site_type_symbol"]:
            match = _ELEMENT_PREFIX.match(symbol)
            symbols.append(atomic_numbers_by_symbol()[match.group(1)] if match else -1)
        if -1 in symbols:
            return None
        if operations_loop is None:
            name = next((values[tag] for tag in _SPACE_GROUP_NAME_TAGS if tag in values), "P 1")
            if name.replace(" ", "").upper() != "P1":
                return None
            operations = [(np.eye(3), np.zeros(3))]
        else:
            texts = next(operations_loop[tag] for tag in _SYMMETRY_OPERATION_TAGS if tag in operations_loop)
            operations = [parse_symmetry_operation(op) for op in texts]
    except (KeyError, ValueError, ZeroDivisionError):
        return None
    if any(abs(occupancy - 1.0) > 1e-6 for occupancy in occupancies):
        return None
    lattice = Lattice.from_parameters(*lengths, *angles).matrix
    if len(operations) == 1 and np.array_equal(operations[0][0], np.eye(3)) and not operations[0][1].any():
        return CrystalCell(lattice, coords, np.asarray(symbols, dtype=np.int64), label)
    return _expand_by_symmetry(lattice, coords, symbols, operations, label)


def _expand_by_symmetry(
    lattice: np.ndarray,
    coords: np.ndarray,
    numbers: list[int],
    operations: list[tuple[np.ndarray, np.ndarray]],
    label: str,
) -> CrystalCell:
    """Apply the symmetry operations to every asymmetric-unit site, merging images closer than the
    CIF site tolerance (fractional, periodic); sites come asymmetric-unit site by site."""
    rotations = np.stack([rotation for rotation, _ in operations])
    translations = np.stack([translation for _, translation in operations])
    all_coords: list[np.ndarray] = []
    all_numbers: list[int] = []
    for coord, number in zip(coords, numbers):
        images = np.mod(rotations @ coord + translations, 1.0)
        unique: list[np.ndarray] = []
        for image in images:
            if not any(np.all(np.abs((image - kept) - np.round(image - kept)) < CIF_SITE_TOLERANCE) for kept in unique):
                unique.append(image)
        all_coords.extend(unique)
        all_numbers.extend([number] * len(unique))
    return CrystalCell(lattice, np.array(all_coords).reshape(-1, 3), np.asarray(all_numbers, dtype=np.int64), label)
