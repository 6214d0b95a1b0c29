"""The phonon data: Petretto et al. DFPT phonon DOS with structures, DOS-derived C_v(T) and S(T), and the join of
cloud_cv's 300 K labels to those structures.

```python
from cloud_hf.phonons import load_phonon_table, phonon_splits

table = load_phonon_table()                   # ../shared/data/phonons/petretto_phdos_train.csv.gz
heat, entropy = table.thermo_labels([50, 300])  # per mole of cells, from the DOS
train, validation, test = phonon_splits(table)  # test ids fixed in recipes/splits/phonons_test_ids.txt
```

The DOS of the file is scaled to a maximum of 1 on a 0–1000 cm⁻¹ grid of 20 cm⁻¹ steps; :class:`PhononTable` keeps
it normalised to 3·N modes per cm⁻¹ (N = atoms in the phonon cell). Labels from it are harmonic and use a Debye
ω² onset below the first bin (20 cm⁻¹), the physical acoustic limit that the coarse grid does not resolve.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cloud_hf.errors import CloudDataError
from cloud_hf.thermodynamics import dos_modes, dos_thermodynamics, normalise_dos
from cloud_hf.units import MODES_PER_ATOM, per_atom, per_cell
from cloud_hf.validation import atom_count_problem, check_dos, dos_values_problem

__all__ = [
    "DEFAULT_PHONON_FILE",
    "DEFAULT_TEST_IDS_FILE",
    "PhononTable",
    "join_cloud_cv",
    "load_phonon_table",
    "phonon_splits",
    "read_split_ids",
    "write_test_split",
]

_REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PHONON_FILE = _REPO_ROOT.parent / "shared" / "data" / "phonons" / "petretto_phdos_train.csv.gz"
"""The phonon table beside a repository checkout (``../shared/data/phonons/``)."""
DEFAULT_TEST_IDS_FILE = _REPO_ROOT / "recipes" / "splits" / "phonons_test_ids.txt"
"""The committed test split: Materials Project ids that nothing trains or tunes on."""

TEST_SPLIT_SEED = 9
TEST_SPLIT_SIZE = 160
DOS_ONSET = "debye"
"""How labels treat the DOS below the first bin (see :func:`cloud_hf.thermodynamics.dos_thermodynamics`)."""

_COLUMNS = ("mp_id", "formula", "n_atoms", "cif", "frequencies_cm1", "dos", "scope_reference", "cv_label_300")


@dataclass
class PhononTable:
    """Crystals with their phonon DOS (row ``i`` of every field is one crystal)."""

    mp_ids: list[str]
    formulas: list[str]
    n_atoms: np.ndarray
    """Atoms in the phonon cell, ``(n,)``."""
    cifs: list[str]
    frequencies: np.ndarray
    """The common frequency grid, cm⁻¹, ``(M,)``."""
    dos: np.ndarray
    """g(ω) in modes per cm⁻¹ per cell, normalised to 3·N modes (trapezoid), ``(n, M)``."""
    scope_references: list[str]
    cv_label_300: np.ndarray
    """cloud_cv's C_v(300 K) label of the crystal, J/(mol-cell·K), ``(n,)``."""

    def __len__(self) -> int:
        return len(self.mp_ids)

    def select(self, rows: Sequence[int]) -> PhononTable:
        """The table restricted to ``rows`` (in that order)."""
        rows = list(rows)
        return PhononTable(
            mp_ids=[self.mp_ids[i] for i in rows], formulas=[self.formulas[i] for i in rows],
            n_atoms=self.n_atoms[rows], cifs=[self.cifs[i] for i in rows], frequencies=self.frequencies,
            dos=self.dos[rows], scope_references=[self.scope_references[i] for i in rows],
            cv_label_300=self.cv_label_300[rows],
        )

    def thermo_labels(self, temperatures: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """DOS-derived harmonic C_v(T) and S(T) per mole of cells, J/(mol·K), each ``(n, n_T)`` (float64)."""
        result = dos_thermodynamics(
            torch.as_tensor(self.frequencies), torch.as_tensor(self.dos), torch.as_tensor(temperatures,
            dtype=torch.float64), torch.as_tensor(self.n_atoms, dtype=torch.float64), low_frequency=DOS_ONSET,
        )
        return result.heat_capacity.numpy(), result.entropy.numpy()

    def per_atom_dos(self) -> np.ndarray:
        """g(ω) per atom, modes per cm⁻¹, ``(n, M)``, normalised as :meth:`thermo_labels` and the DOS head count
        modes: 3 per atom = the Debye onset below the first point above 0 (ω₁ = 20 cm⁻¹: g(ω₁)·ω₁/3) plus the
        trapezoids from ω₁ on (the ω = 0 point, which neither counts, is scaled alike).

        (The table's own scaling, a trapezoid from ω = 0, differs from this by up to ~1 % of the modes for crystals
        with much weight at 20 cm⁻¹; DOS labels scaled that way asked the head for a spectrum its C_v labels contradict.)
        """
        start = 1 if self.frequencies[0] == 0 else 0
        return self.dos * (MODES_PER_ATOM / dos_modes(self.dos[:, start:], self.frequencies[start:]))[:, None]


def load_phonon_table(path: str | Path | None = None) -> PhononTable:
    """Read the phonon file (every row kept); a :class:`CloudDataError` names the row and column of a bad value."""
    path = Path(path) if path is not None else DEFAULT_PHONON_FILE
    if not path.is_file():
        raise CloudDataError(f"{path}: phonon file not found (expected ../shared/data/phonons/ beside the repository)")
    frame = pd.read_csv(path)
    missing = [column for column in _COLUMNS if column not in frame.columns]
    if missing:
        raise CloudDataError(f"{path}: missing columns {missing}")
    grids = [json.loads(text) for text in frame["frequencies_cm1"]]
    frequencies = np.asarray(grids[0], dtype=np.float64)
    dos_rows = []
    for row, (grid, text) in enumerate(zip(grids, frame["dos"])):
        if grid != grids[0]:
            raise CloudDataError(f"{path}: row {row} ({frame['mp_id'][row]}) has another frequency grid")
        values = np.asarray(json.loads(text), dtype=np.float64)
        try:
            check_dos(torch.as_tensor(frequencies), torch.as_tensor(values))
        except CloudDataError as error:
            raise CloudDataError(f"{path}: row {row} ({frame['mp_id'][row]}): {error}") from None
        dos_rows.append(values)
    n_atoms = frame["n_atoms"].to_numpy(dtype=np.float64)
    bad_row = next((row for row, count in enumerate(n_atoms) if atom_count_problem(count)), None)
    if bad_row is not None:
        raise CloudDataError(f"{path}: row {bad_row} has n_atoms ≤ 0")
    dos = np.stack(dos_rows)
    dos *= (MODES_PER_ATOM * n_atoms / np.trapezoid(dos, frequencies, axis=1))[:, None]  # 3N by the file's own count
    return PhononTable(
        mp_ids=frame["mp_id"].tolist(), formulas=frame["formula"].tolist(), n_atoms=n_atoms,
        cifs=frame["cif"].tolist(), frequencies=frequencies, dos=dos,
        scope_references=frame["scope_reference"].tolist(),
        cv_label_300=frame["cv_label_300"].to_numpy(dtype=np.float64),
    )


def join_cloud_cv(table: PhononTable, cloud_cv: pd.DataFrame, tolerance: float = 1e-6) -> list[str | None]:
    """The mp_id of each cloud_cv row (columns ``cloud``, ``cv``, ``n_atoms``), or None where no structure matches.

    A reference SCOPE string can belong to several crystals (it keeps no lattice parameters or coordinates), so
    a row matches the crystal with the same string, the same atom count and the same C_v(300 K) label (within
    ``tolerance`` J/(mol·K)); each crystal is used at most once.
    """
    candidates: dict[str, list[int]] = defaultdict(list)
    for index, scope in enumerate(table.scope_references):
        candidates[scope].append(index)
    used: set[int] = set()
    matches: list[str | None] = []
    for scope, label, atoms in zip(cloud_cv["cloud"], cloud_cv["cv"], cloud_cv["n_atoms"]):
        found = None
        for index in candidates.get(scope, []):
            if index not in used and table.n_atoms[index] == atoms and abs(table.cv_label_300[index] - label) <= tolerance:
                found = index
                break
        if found is not None:
            used.add(found)
        matches.append(table.mp_ids[found] if found is not None else None)
    return matches


def write_test_split(table: PhononTable, path: str | Path = DEFAULT_TEST_IDS_FILE,
                     size: int = TEST_SPLIT_SIZE, seed: int = TEST_SPLIT_SEED) -> list[str]:
    """Draw the test split once (seeded, uniform over crystals) and write its ids, one per line, sorted."""
    ids = sorted(random.Random(seed).sample(sorted(table.mp_ids), size))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# phonon test split: never trained or tuned on (cloud_hf.phonons.write_test_split, "
                    f"seed {seed})\n" + "\n".join(ids) + "\n")
    return ids


def read_split_ids(path: str | Path = DEFAULT_TEST_IDS_FILE) -> list[str]:
    """The ids of a split file (``#`` comment lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise CloudDataError(f"{path}: split file not found")
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def phonon_splits(table: PhononTable, validation_fraction: float = 0.1, seed: int = 0,
                  test_ids_file: str | Path = DEFAULT_TEST_IDS_FILE) -> tuple[PhononTable, PhononTable, PhononTable]:
    """Train, validation and test tables: test is the committed split; validation is carved from the rest (seeded)."""
    test_ids = set(read_split_ids(test_ids_file))
    unknown = test_ids - set(table.mp_ids)
    if unknown:
        raise CloudDataError(f"{test_ids_file}: {len(unknown)} test ids are not in the phonon table, e.g. {sorted(unknown)[:3]}")
    test_rows = [i for i, mp_id in enumerate(table.mp_ids) if mp_id in test_ids]
    rest = [i for i, mp_id in enumerate(table.mp_ids) if mp_id not in test_ids]
    random.Random(seed).shuffle(rest)
    n_validation = math.ceil(validation_fraction * len(rest))
    return table.select(sorted(rest[n_validation:])), table.select(sorted(rest[:n_validation])), table.select(test_rows)


# --- all phonon sources: Petretto (DFPT), phonondb (finite displacements), JARVIS metals (C_v at 300 K) ----------

_DATA_DIR = DEFAULT_PHONON_FILE.parent
PHONONDB_FILE = _DATA_DIR / "phonondb_train.csv.gz"
"""Togo's phonondb, processed with phonopy (``../shared/data/phonons/``): DOS in 10 cm⁻¹ bins, C_v/S/F per atom."""
JARVIS_METALS_FILE = _DATA_DIR / "jarvis_metals_train.csv.gz"
"""JARVIS-DFT metals with C_v(300 K) per atom (``../shared/data/phonons/``)."""
SOURCES = ("phonondb", "petretto", "jarvis")
"""The phonon sources, in the order of their ``source_ids`` (0 = phonondb, the default of a prediction)."""
LABEL_TEMPERATURES = (5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 250.0, 300.0, 400.0, 500.0, 600.0,
                      800.0, 1000.0)
"""Temperatures (K) of the C_v and S labels of every source: phonondb's own (the others are derived or NaN)."""
WIDE_FREQUENCIES = [*(float(omega) for omega in range(20, 1001, 20)), *(float(omega) for omega in range(1050, 4001, 50))]
"""The DOS grid that reaches every mode, cm⁻¹: 20 cm⁻¹ steps to 1000 (the Petretto grid, where most of the weight
is), then 50 cm⁻¹ steps to 4000 (O–H, C–H, B–H stretches go to ~3,700 in phonondb); the Debye ω² onset lies
below the first point."""
UNSTABLE_IMAGINARY_FRACTION = 0.005
"""A phonondb crystal with more than this share of imaginary modes is dynamically unstable in its calculation
(the data README's threshold); :func:`load_phonon_crystals` leaves such crystals out (see the README for the
measurement behind the rule)."""
PETRETTO_LABEL_TOLERANCE = 0.02
"""A Petretto DOS is used (with the C_v/S curves derived from it) only where its C_v(300 K) is within this
relative distance of the crystal's DFPT label (cloud_cv): 82 % of the rows. In the others the coarse DOS gives a
higher C_v (modes above its 1000 cm⁻¹ edge, or a poorly resolved spectrum), and only the DFPT C_v(300 K) label is
kept. Measured on the 525 crystals that phonondb also has (stable there): the DFPT labels agree with phonondb to
0.035 J/(mol·K) per atom at 300 K (mean |difference|), the DOS-derived values of the kept rows to 0.042, those of
every row to 0.31 (``benchmarks/phonon_sources_agreement.py``)."""
NON_METAL_ELEMENTS = frozenset(
    ["H", "He", "B", "C", "N", "O", "F", "Ne", "Si", "P", "S", "Cl", "Ar", "Ge", "As", "Se", "Br", "Kr", "Sb", "Te", "I", "Xe", "At", "Rn", "Ts", "Og"])
"""Elements that make a crystal not all-metal (the phonon data's ``all_metal`` rule)."""


@dataclass
class PhononCrystals:
    """Phonon crystals of every source, one row each, with per-atom labels (NaN where a source gives none)."""

    ids: list[str]
    """Materials Project id (phonondb, Petretto) or JARVIS id; the key of every split."""
    sources: list[str]
    """One of :data:`SOURCES` per row."""
    formulas: list[str]
    n_atoms: np.ndarray
    """Atoms in the row's cell (``cifs``), ``(n,)``."""
    cifs: list[str]
    all_metal: np.ndarray
    """True where every element is a metal, ``(n,)`` bool."""
    imaginary_fraction: np.ndarray
    """Share of imaginary modes (phonondb; NaN elsewhere), ``(n,)``."""
    frequencies: np.ndarray
    """The DOS grid, cm⁻¹, ``(M,)`` (:data:`WIDE_FREQUENCIES`)."""
    dos: np.ndarray
    """g(ω) per atom on the grid, modes per cm⁻¹, 3 modes per atom with the Debye onset below the first point;
    NaN rows where the source has no (full) DOS, ``(n, M)``."""
    temperatures: np.ndarray
    """Label temperatures, K, ``(n_T,)``."""
    heat_capacity: np.ndarray
    """C_v per mole of atoms, J/(mol·K), ``(n, n_T)``, NaN where absent."""
    entropy: np.ndarray
    """S per mole of atoms, J/(mol·K), ``(n, n_T)``, NaN where absent."""

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, rows: Sequence[int]) -> PhononCrystals:
        """The crystals of ``rows`` (in that order)."""
        rows = list(rows)
        pick = lambda values: [values[i] for i in rows]  # noqa: E731
        return PhononCrystals(
            ids=pick(self.ids), sources=pick(self.sources), formulas=pick(self.formulas), n_atoms=self.n_atoms[rows],
            cifs=pick(self.cifs), all_metal=self.all_metal[rows], imaginary_fraction=self.imaginary_fraction[rows],
            frequencies=self.frequencies, dos=self.dos[rows], temperatures=self.temperatures,
            heat_capacity=self.heat_capacity[rows], entropy=self.entropy[rows],
        )

    def where(self, keep: np.ndarray | Sequence[bool]) -> PhononCrystals:
        """The crystals where ``keep`` is true."""
        return self.select(np.flatnonzero(np.asarray(keep, dtype=bool)).tolist())

    def elements(self) -> list[frozenset[str]]:
        """The element symbols of each crystal (from its formula)."""
        return [frozenset(formula_elements(formula)) for formula in self.formulas]

    def source_mask(self, source: str) -> np.ndarray:
        """``(n,)`` bool: the rows of ``source``."""
        return np.asarray([name == source for name in self.sources], dtype=bool)

    def label_column(self, temperature: float) -> int:
        """The column of ``temperature`` (K) among the label temperatures."""
        matches = np.flatnonzero(np.isclose(self.temperatures, temperature))
        if not len(matches):
            raise CloudDataError(f"no labels at {temperature} K; label temperatures are {self.temperatures.tolist()}")
        return int(matches[0])

    @staticmethod
    def concatenate(parts: Sequence[PhononCrystals]) -> PhononCrystals:
        """The rows of every part, in order (same grid and temperatures)."""
        first = parts[0]
        for part in parts[1:]:
            if not (np.array_equal(part.frequencies, first.frequencies)
                    and np.array_equal(part.temperatures, first.temperatures)):
                raise CloudDataError("phonon crystals on different grids or label temperatures cannot be joined")
        join = lambda name: [value for part in parts for value in getattr(part, name)]  # noqa: E731
        stack = lambda name: np.concatenate([getattr(part, name) for part in parts])  # noqa: E731
        return PhononCrystals(
            ids=join("ids"), sources=join("sources"), formulas=join("formulas"), n_atoms=stack("n_atoms"),
            cifs=join("cifs"), all_metal=stack("all_metal"), imaginary_fraction=stack("imaginary_fraction"),
            frequencies=first.frequencies, dos=stack("dos"), temperatures=first.temperatures,
            heat_capacity=stack("heat_capacity"), entropy=stack("entropy"),
        )


@dataclass
class BadPhononRow:
    """A row a reader could not use: where it came from and why."""

    source: str
    file: str
    row: int
    id: str
    reason: str


def is_all_metal(formula_elements: Sequence[str]) -> bool:
    """Whether every element of a crystal is a metal (none of :data:`NON_METAL_ELEMENTS`)."""
    return not (set(formula_elements) & NON_METAL_ELEMENTS)


def formula_elements(formula: str) -> list[str]:
    """The element symbols of a formula, in its order (pymatgen ``Composition``)."""
    from pymatgen.core import Composition

    return [element.symbol for element in Composition(formula).elements]


def histogram_to_grid(density: np.ndarray, bin_width: float, grid: Sequence[float]) -> np.ndarray:
    """Point values of a histogram DOS on ``grid``: the mean density over each point's cell (half-way to its
    neighbours; the first point's cell starts as far below it as the second ends above), so that the modes of every
    bin are kept wherever the grid is coarser than the bins. ``density`` `(..., K)`: bin k covers
    [k·w, (k+1)·w) cm⁻¹ (w = ``bin_width``); zero above the last bin."""
    grid = np.asarray(grid, dtype=np.float64)
    density = np.asarray(density, dtype=np.float64)
    middle = (grid[1:] + grid[:-1]) / 2.0
    edges = np.concatenate([[grid[0] - (middle[0] - grid[0])], middle, [grid[-1] + (grid[-1] - middle[-1])]])
    edges = np.clip(edges, 0.0, None)
    bin_edges = np.arange(density.shape[-1] + 1) * bin_width
    cumulative = np.concatenate([np.zeros((*density.shape[:-1], 1)), np.cumsum(density * bin_width, axis=-1)], -1)
    modes_below = np.stack([np.interp(edges, bin_edges, row) for row in cumulative.reshape(-1, cumulative.shape[-1])])
    modes_below = modes_below.reshape(*density.shape[:-1], len(edges))
    return np.diff(modes_below, axis=-1) / np.diff(edges)


def normalise_per_atom(dos: np.ndarray, grid: Sequence[float]) -> np.ndarray:
    """``dos`` `(..., M)` scaled to 3 modes per atom as the DOS head counts them
    (:func:`cloud_hf.thermodynamics.normalise_dos`: the Debye onset below the first point plus the trapezoids)."""
    return normalise_dos(dos, np.asarray(grid, dtype=np.float64))


def _bad_labels(values: np.ndarray, count: int, what: str) -> str | None:
    if values.shape != (count,):
        return f"{what} has {values.size} values, expected {count}"
    if not np.isfinite(values).all():
        return f"{what} has NaN or infinite values"
    return None


def read_phonondb(path: str | Path = PHONONDB_FILE, grid: Sequence[float] = WIDE_FREQUENCIES,
                  ) -> tuple[PhononCrystals, list[BadPhononRow]]:
    """The phonondb table: per-atom DOS on ``grid`` (from its 10 cm⁻¹ bins), C_v and S per atom at
    :data:`LABEL_TEMPERATURES`. Rows with a malformed DOS or labels, or a bad atom count, are returned as bad rows
    (never dropped in silence); every other row is kept (unstable ones too: the rule is applied later)."""
    path = Path(path)
    if not path.is_file():
        raise CloudDataError(f"{path}: phonondb file not found (expected ../shared/data/phonons/ beside the repository)")
    frame = pd.read_csv(path)
    missing = [column for column in ("mp_id", "formula", "n_atoms", "cif", "imaginary_mode_fraction", "cv_per_atom",
                                     "entropy_per_atom", "dos") if column not in frame.columns]
    if missing:
        raise CloudDataError(f"{path}: missing columns {missing}")
    n_temperatures = len(LABEL_TEMPERATURES)
    keep, bad, dos_rows, heat_rows, entropy_rows = [], [], [], [], []
    for row, record in enumerate(frame.itertuples(index=False)):
        reason = None
        try:
            dos = np.asarray(json.loads(record.dos), dtype=np.float64)
            heat = np.asarray(json.loads(record.cv_per_atom), dtype=np.float64)
            entropy = np.asarray(json.loads(record.entropy_per_atom), dtype=np.float64)
        except (TypeError, ValueError) as error:
            reason = f"unreadable JSON list: {error}"
        else:
            reason = (dos_values_problem(dos) or _bad_labels(heat, n_temperatures, "cv_per_atom")
                      or _bad_labels(entropy, n_temperatures, "entropy_per_atom"))
        if reason is None and not (isinstance(record.cif, str) and record.cif.strip()):
            reason = "no CIF"
        if reason is None:
            reason = atom_count_problem(record.n_atoms)
        if reason is not None:
            bad.append(BadPhononRow("phonondb", str(path), row, str(record.mp_id), reason))
            continue
        keep.append(row)
        dos_rows.append(normalise_per_atom(histogram_to_grid(dos, 10.0, grid), grid))
        heat_rows.append(heat)
        entropy_rows.append(entropy)
    part = frame.iloc[keep]
    crystals = PhononCrystals(
        ids=part["mp_id"].astype(str).tolist(), sources=["phonondb"] * len(part), formulas=part["formula"].tolist(),
        n_atoms=part["n_atoms"].to_numpy(dtype=np.float64), cifs=part["cif"].tolist(),
        all_metal=part["all_metal"].to_numpy(dtype=bool) if "all_metal" in part else
        np.asarray([is_all_metal(formula_elements(f)) for f in part["formula"]], dtype=bool),
        imaginary_fraction=part["imaginary_mode_fraction"].to_numpy(dtype=np.float64),
        frequencies=np.asarray(grid, dtype=np.float64), dos=_stack(dos_rows, len(grid)),
        temperatures=np.asarray(LABEL_TEMPERATURES), heat_capacity=_stack(heat_rows, n_temperatures),
        entropy=_stack(entropy_rows, n_temperatures),
    )
    return crystals, bad


def _stack(rows: list[np.ndarray], width: int) -> np.ndarray:
    return np.stack(rows) if rows else np.zeros((0, width))


def read_jarvis_metals(path: str | Path = JARVIS_METALS_FILE, grid: Sequence[float] = WIDE_FREQUENCIES,
                       ) -> tuple[PhononCrystals, list[BadPhononRow]]:
    """The JARVIS metals: C_v(300 K) per atom only (no DOS, no S); rows without a finite label are bad rows."""
    path = Path(path)
    if not path.is_file():
        raise CloudDataError(f"{path}: JARVIS metals file not found (expected ../shared/data/phonons/)")
    frame = pd.read_csv(path)
    missing = [column for column in ("jid", "formula", "n_atoms", "cif", "cv_300_per_atom") if column not in frame]
    if missing:
        raise CloudDataError(f"{path}: missing columns {missing}")
    labels = pd.to_numeric(frame["cv_300_per_atom"], errors="coerce").to_numpy(dtype=np.float64)
    atoms = pd.to_numeric(frame["n_atoms"], errors="coerce").to_numpy(dtype=np.float64)
    bad, keep = [], []
    for row, jid in enumerate(frame["jid"].astype(str)):
        reason = ("cv_300_per_atom is missing or not finite" if not np.isfinite(labels[row])
                  else atom_count_problem(atoms[row])
                  or ("no CIF" if not (isinstance(frame["cif"][row], str) and frame["cif"][row].strip()) else None))
        if reason:
            bad.append(BadPhononRow("jarvis", str(path), row, jid, reason))
        else:
            keep.append(row)
    part = frame.iloc[keep]
    temperatures = np.asarray(LABEL_TEMPERATURES)
    heat = np.full((len(part), len(temperatures)), np.nan)
    heat[:, list(temperatures).index(300.0)] = labels[keep]
    return PhononCrystals(
        ids=part["jid"].astype(str).tolist(), sources=["jarvis"] * len(part), formulas=part["formula"].tolist(),
        n_atoms=atoms[keep], cifs=part["cif"].tolist(),
        all_metal=np.asarray([is_all_metal(formula_elements(f)) for f in part["formula"]], dtype=bool),
        imaginary_fraction=np.full(len(part), np.nan), frequencies=np.asarray(grid, dtype=np.float64),
        dos=np.full((len(part), len(grid)), np.nan), temperatures=temperatures, heat_capacity=heat,
        entropy=np.full_like(heat, np.nan),
    ), bad


def petretto_crystals(table: PhononTable, grid: Sequence[float] = WIDE_FREQUENCIES) -> PhononCrystals:
    """The Petretto table as per-atom rows on ``grid``: DOS and DOS-derived C_v/S curves at
    :data:`LABEL_TEMPERATURES` where the DOS reproduces the crystal's DFPT C_v(300 K) label (within
    :data:`PETRETTO_LABEL_TOLERANCE`); elsewhere only that label, a DFPT value of the full spectrum."""
    grid = np.asarray(grid, dtype=np.float64)
    temperatures = np.asarray(LABEL_TEMPERATURES)
    heat, entropy = table.thermo_labels(temperatures)
    heat, entropy = per_atom(heat, table.n_atoms), per_atom(entropy, table.n_atoms)
    column_300 = list(temperatures).index(300.0)
    edge = np.abs(per_cell(heat[:, column_300], table.n_atoms) / table.cv_label_300 - 1.0) > PETRETTO_LABEL_TOLERANCE
    source_grid = np.asarray(table.frequencies, dtype=np.float64)
    atom_dos = table.per_atom_dos()
    dos = np.stack([np.interp(grid, source_grid, row, right=0.0) for row in atom_dos]) if len(table) else \
        np.zeros((0, len(grid)))
    dos = normalise_per_atom(dos, grid) if len(table) else dos
    dos[edge] = np.nan
    heat[edge] = np.nan
    entropy[edge] = np.nan
    heat[edge, column_300] = per_atom(table.cv_label_300[edge], table.n_atoms[edge])
    return PhononCrystals(
        ids=list(table.mp_ids), sources=["petretto"] * len(table), formulas=list(table.formulas),
        n_atoms=table.n_atoms.copy(), cifs=list(table.cifs),
        all_metal=np.asarray([is_all_metal(formula_elements(f)) for f in table.formulas], dtype=bool),
        imaginary_fraction=np.full(len(table), np.nan), frequencies=grid, dos=dos, temperatures=temperatures,
        heat_capacity=heat, entropy=entropy,
    )


def load_phonon_crystals(petretto_file: str | Path | None = DEFAULT_PHONON_FILE,
                         phonondb_file: str | Path | None = PHONONDB_FILE,
                         jarvis_file: str | Path | None = JARVIS_METALS_FILE,
                         max_imaginary_fraction: float | None = UNSTABLE_IMAGINARY_FRACTION,
                         grid: Sequence[float] = WIDE_FREQUENCIES,
                         ) -> tuple[PhononCrystals, list[BadPhononRow]]:
    """One table of the phonon crystals of every given source (None leaves a source out), keyed by ``ids`` with
    their ``sources``, and the rows left out with their reasons: malformed rows, and phonondb crystals with more
    than ``max_imaginary_fraction`` imaginary modes (None keeps them)."""
    parts: list[PhononCrystals] = []
    bad: list[BadPhononRow] = []
    if phonondb_file is not None:
        crystals, rows = read_phonondb(phonondb_file, grid)
        bad += rows
        if max_imaginary_fraction is not None:
            unstable = crystals.imaginary_fraction > max_imaginary_fraction
            bad += [BadPhononRow("phonondb", str(phonondb_file), -1, crystals.ids[i],
                                 f"unstable: {crystals.imaginary_fraction[i]:.2%} imaginary modes "
                                 f"(> {max_imaginary_fraction:.2%})") for i in np.flatnonzero(unstable)]
            crystals = crystals.where(~unstable)
        parts.append(crystals)
    if petretto_file is not None:
        parts.append(petretto_crystals(load_phonon_table(petretto_file), grid))
    if jarvis_file is not None:
        crystals, rows = read_jarvis_metals(jarvis_file, grid)
        bad += rows
        parts.append(crystals)
    if not parts:
        raise CloudDataError("no phonon source given")
    return PhononCrystals.concatenate(parts), bad


DEFAULT_SOURCES_TEST_IDS_FILE = _REPO_ROOT / "recipes" / "splits" / "phonon_sources_test_ids.txt"
"""The committed test split of every source: ids (Materials Project or JARVIS) that no source trains or tunes on."""
SOURCES_TEST_SEED = 19
SOURCES_TEST_PHONONDB = 1000
SOURCES_TEST_JARVIS = 50


def write_sources_test_split(phonondb_ids: Sequence[str], jarvis_ids: Sequence[str],
                             petretto_test_ids: Sequence[str], path: str | Path = DEFAULT_SOURCES_TEST_IDS_FILE,
                             seed: int = SOURCES_TEST_SEED) -> list[str]:
    """Draw the test split of every source once: the Petretto test ids, plus phonondb ids drawn uniformly (seeded)
    until :data:`SOURCES_TEST_PHONONDB` phonondb crystals are in it (Petretto test ids that phonondb also has
    count), plus :data:`SOURCES_TEST_JARVIS` JARVIS metals; written sorted, one id per line."""
    rng = random.Random(seed)
    chosen = set(petretto_test_ids)
    phonondb = sorted(set(phonondb_ids))
    already = len(chosen & set(phonondb))
    chosen |= set(rng.sample(sorted(set(phonondb) - chosen), SOURCES_TEST_PHONONDB - already))
    chosen |= set(rng.sample(sorted(set(jarvis_ids)), SOURCES_TEST_JARVIS))
    ids = sorted(chosen)
    path = Path(path)
    path.write_text("# phonon test split of every source (Petretto's 160 + phonondb + JARVIS metals): never trained "
                    f"or tuned on, from any source (cloud_hf.phonons.write_sources_test_split, seed {seed})\n"
                    + "\n".join(ids) + "\n")
    return ids


def crystals_splits(crystals: PhononCrystals, validation_fraction: float = 0.1, seed: int = 0,
                    test_ids_file: str | Path = DEFAULT_SOURCES_TEST_IDS_FILE,
                    holdout_elements: Sequence[str] = (),
                    ) -> tuple[PhononCrystals, PhononCrystals, PhononCrystals]:
    """Train, validation and test crystals: test = every row whose id is in the committed split (whatever its
    source); validation = a seeded share of the other ids (an id's rows of every source on the same side), plus
    every non-test crystal containing one of ``holdout_elements`` (a shifted carve)."""
    test_ids = set(read_split_ids(test_ids_file))
    is_test = np.asarray([crystal_id in test_ids for crystal_id in crystals.ids], dtype=bool)
    held = set(holdout_elements)
    shifted = {crystal_id for crystal_id, elements, test in zip(crystals.ids, crystals.elements(), is_test)
               if not test and elements & held} if held else set()
    rest = sorted({crystal_id for crystal_id, test in zip(crystals.ids, is_test) if not test} - shifted)
    random.Random(seed).shuffle(rest)
    validation_ids = set(rest[:math.ceil(validation_fraction * len(rest))]) | shifted
    is_validation = np.asarray([crystal_id in validation_ids for crystal_id in crystals.ids], dtype=bool)
    return crystals.where(~is_test & ~is_validation), crystals.where(is_validation), crystals.where(is_test)


__all__ += [
    "DEFAULT_SOURCES_TEST_IDS_FILE",
    "JARVIS_METALS_FILE",
    "LABEL_TEMPERATURES",
    "PHONONDB_FILE",
    "SOURCES",
    "UNSTABLE_IMAGINARY_FRACTION",
    "WIDE_FREQUENCIES",
    "BadPhononRow",
    "PhononCrystals",
    "crystals_splits",
    "formula_elements",
    "histogram_to_grid",
    "is_all_metal",
    "load_phonon_crystals",
    "normalise_per_atom",
    "petretto_crystals",
    "read_jarvis_metals",
    "read_phonondb",
    "write_sources_test_split",
]
