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
from cloud_hf.thermodynamics import check_dos, dos_thermodynamics

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
        grid, density = self.frequencies[start:], self.dos[:, start:]
        modes = density[:, 0] * grid[0] / 3.0 + np.trapezoid(density, grid, axis=1)
        return self.dos * (3.0 / modes)[:, None]


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
    if not (n_atoms > 0).all():
        raise CloudDataError(f"{path}: row {int(np.argmin(n_atoms > 0))} has n_atoms ≤ 0")
    dos = np.stack(dos_rows)
    dos *= (3.0 * n_atoms / np.trapezoid(dos, frequencies, axis=1))[:, None]
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
