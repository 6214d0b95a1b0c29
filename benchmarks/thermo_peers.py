"""The peer models of the heat-capacity benchmark: what a CLOUD thermodynamics model has to beat.

Two scikit-learn peers, each one regressor per label column (per-atom C_v at a label temperature, or S(300 K)),
trained on the rows that have that label (NaN labels skipped):

* **GB peer**: ``GradientBoostingRegressor(random_state=0)`` on composition descriptors and space group
  (:data:`GB_FEATURES`: mean/min/max atomic mass, electronegativity mean and spread, mean atomic radius, atoms per
  cell, space-group number); missing features are imputed with the training median;
* **strong peer**: ``HistGradientBoostingRegressor(random_state=0)`` (defaults) on composition statistics
  (atom-fraction-weighted mean, min, max, std of Z, mass, electronegativity, row, group, radius, Mendeleev number),
  the four cell descriptors of :mod:`cloud_hf.cell_descriptors`, space group, mean 1/√mass and the share of atoms
  lighter than carbon (:data:`STRONG_FEATURES`); NaN features are read as missing.

Features come from each crystal's CIF (pymatgen; symmetry by ``SpacegroupAnalyzer(symprec=0.1)``); a part that
fails (composition, cell, symmetry) leaves its features NaN and is counted in :attr:`PeerFeatures.failures`.
They are cached in ``outputs/peer_features_<hash>.npz``, keyed by the crystals' ``source:id`` keys and a digest of
each CIF, so a rerun (or a subset of a cached run) reads them back instantly.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline

from cloud_hf.cell_descriptors import CELL_DESCRIPTORS, cell_descriptors
from cloud_hf.phonons import PhononCrystals

FEATURE_VERSION = "2"
"""Bumped whenever a feature changes, so that older caches are not read."""
DEFAULT_CACHE_DIR = Path("outputs")
ELEMENT_PROPERTIES = ("Z", "mass", "electronegativity", "row", "group", "radius", "mendeleev")
"""Per-element properties whose composition statistics the strong peer reads (mass in amu, radius in Å)."""
GB_FEATURES = ("mean_mass", "min_mass", "max_mass", "mean_electronegativity", "electronegativity_spread",
               "mean_radius", "atoms_per_cell", "space_group")
STRONG_FEATURES = (
    *(f"{stat}_{name}" for name in ELEMENT_PROPERTIES for stat in ("mean", "min", "max", "std")),
    "n_elements", "atoms_per_cell", *CELL_DESCRIPTORS, "space_group", "mean_inverse_sqrt_mass", "light_share",
)
LIGHTER_THAN_CARBON = 6
"""Atoms with Z below this (H to B) count in the ``light_share`` feature."""
S_TEMPERATURE = 300.0
"""The temperature (K) of the entropy label column."""


@cache
def element_properties(symbol: str) -> np.ndarray:
    """:data:`ELEMENT_PROPERTIES` of an element (pymatgen data; NaN where it has none, e.g. the electronegativity
    of a noble gas)."""
    from pymatgen.core import Element

    element = Element(symbol)
    radius = element.atomic_radius or element.average_ionic_radius
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = [element.Z, float(element.atomic_mass), element.X, element.row, element.group,
                  float(radius) if radius else np.nan, element.mendeleev_no]
    return np.array([np.nan if value is None else float(value) for value in values], dtype=np.float64)


def composition_rows(symbols: Sequence[str], fractions: np.ndarray, n_sites: int) -> tuple[list[float], list[float]]:
    """The composition parts of the GB and the strong peer's features, from the crystal's elements and their atom
    fractions (summing to 1) and the atoms in its cell."""
    properties = np.stack([element_properties(symbol) for symbol in symbols])  # (n_elements, n_properties)
    mean = fractions @ properties
    std = np.sqrt(np.maximum(fractions @ (properties - mean) ** 2, 0.0))
    mass, electronegativity = properties[:, 1], properties[:, 2]
    gradient_boosting = [mean[1], mass.min(), mass.max(), mean[2], electronegativity.max() - electronegativity.min(),
                         mean[5], float(n_sites)]  # mean[5]: the mean radius
    statistics = np.stack([mean, properties.min(0), properties.max(0), std], axis=1).ravel()  # property-major
    light = float(fractions[properties[:, 0] < LIGHTER_THAN_CARBON].sum())
    strong = [*statistics.tolist(), float(len(symbols)), float(n_sites), float(fractions @ mass ** -0.5), light]
    return gradient_boosting, strong


def crystal_features(cif: str | None, name: str, cell_function: Callable[[Any], Sequence[float]] = cell_descriptors,
                     structure: Any = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(GB features, strong features, failures)`` of one crystal (its ``cif``, or a read pymatgen ``structure``):
    NaN where a part fails, each failure as ``"name: part: reason"``. ``cell_function`` gives the strong peer's four
    cell values (e.g. :func:`cloud_hf.cell_descriptors.packing_descriptors`' first four for slabs and layers)."""
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from cloud_hf.structures import load_cell

    gradient_boosting = np.full(len(GB_FEATURES), np.nan)
    strong = np.full(len(STRONG_FEATURES), np.nan)
    failures: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = structure if structure is not None else Structure.from_str(cif, fmt="cif")
    except Exception as error:  # any unreadable CIF is a counted failure, not a crash
        return gradient_boosting, strong, [f"{name}: cif: {type(error).__name__}: {error}"]
    parts: dict[str, Callable[[], None]] = {}
    n_statistics = 4 * len(ELEMENT_PROPERTIES)
    cell_start = STRONG_FEATURES.index(CELL_DESCRIPTORS[0])

    def composition() -> None:
        fractional = structure.composition.fractional_composition
        symbols = [element.symbol for element in fractional]
        fractions = np.array([fractional[symbol] for symbol in symbols], dtype=np.float64)
        gb_part, strong_part = composition_rows(symbols, fractions, len(structure))
        gradient_boosting[:7] = gb_part
        strong[:n_statistics + 2] = strong_part[:n_statistics + 2]
        strong[-2:] = strong_part[-2:]

    def cell() -> None:
        cell = cell_function(load_cell(structure, name=name))
        strong[cell_start: cell_start + len(CELL_DESCRIPTORS)] = list(cell)[:len(CELL_DESCRIPTORS)]

    def symmetry() -> None:
        number = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number()
        gradient_boosting[-1] = strong[STRONG_FEATURES.index("space_group")] = float(number)

    parts.update(composition=composition, cell=cell, symmetry=symmetry)
    for part, compute in parts.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compute()
        except Exception as error:  # counted; the part's features stay NaN
            failures.append(f"{name}: {part}: {type(error).__name__}: {error}")
    return gradient_boosting, strong, failures


def crystal_keys(crystals: PhononCrystals) -> list[str]:
    """``source:id`` of each row (an id may have rows of two sources, with different cells)."""
    return [f"{source}:{crystal_id}" for source, crystal_id in zip(crystals.sources, crystals.ids)]


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass
class PeerFeatures:
    """The two peers' features of a list of crystals, row for row."""

    keys: list[str]
    digests: list[str]
    gradient_boosting: np.ndarray
    """``(n, len(GB_FEATURES))``."""
    strong: np.ndarray
    """``(n, len(STRONG_FEATURES))``."""
    failures: list[str] = field(default_factory=list)
    """One line per failed part (its features NaN): ``"source:id: part: reason"``."""
    seconds: float = 0.0
    """Wall time of the extraction that made them (of every crystal it made them for), s."""
    per_crystal_seconds: float = 0.0
    """``seconds`` over the crystals of that extraction, s."""
    cached: bool = False
    """Whether these were read back from a cache."""

    def save(self, path: Path) -> None:
        np.savez_compressed(path, keys=np.array(self.keys), digests=np.array(self.digests),
                            gradient_boosting=self.gradient_boosting, strong=self.strong,
                            failures=np.array(self.failures, dtype=str), seconds=self.seconds,
                            per_crystal_seconds=self.per_crystal_seconds,
                            version=FEATURE_VERSION)

    @staticmethod
    def load(path: Path) -> PeerFeatures | None:
        """The features cached in ``path``, or None when they were made by another :data:`FEATURE_VERSION`."""
        with np.load(path) as stored:
            if str(stored["version"]) != FEATURE_VERSION:
                return None
            return PeerFeatures(keys=stored["keys"].tolist(), digests=stored["digests"].tolist(),
                                gradient_boosting=stored["gradient_boosting"], strong=stored["strong"],
                                failures=stored["failures"].tolist(), seconds=float(stored["seconds"]),
                                per_crystal_seconds=float(stored["per_crystal_seconds"]), cached=True)

    def select(self, rows: Sequence[int] | np.ndarray) -> PeerFeatures:
        """The features of ``rows`` (indices, or a bool mask), in that order."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, dtype=int)
        keys = [self.keys[row] for row in rows]
        wanted = set(keys)
        return PeerFeatures(keys=keys, digests=[self.digests[row] for row in rows],
                            gradient_boosting=self.gradient_boosting[rows], strong=self.strong[rows],
                            failures=[line for line in self.failures if line.split(": ")[0] in wanted],
                            seconds=self.seconds, per_crystal_seconds=self.per_crystal_seconds, cached=self.cached)

    def rows(self, keys: Sequence[str], digests: Sequence[str]) -> PeerFeatures | None:
        """These features for ``keys`` (in that order) if every (key, CIF digest) pair is here, else None."""
        index = {pair: row for row, pair in enumerate(zip(self.keys, self.digests))}
        rows = [index.get(pair) for pair in zip(keys, digests)]
        return None if any(row is None for row in rows) else self.select(rows)


def peer_features(crystals: PhononCrystals, cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
                  progress: bool = False) -> PeerFeatures:
    """Both peers' features of ``crystals``: read from a cache in ``cache_dir`` that holds every row (same key and
    CIF), else computed (about 12 ms a crystal on one core) and cached as ``peer_features_<hash>.npz``."""
    keys = crystal_keys(crystals)
    digests = [_digest(cif) for cif in crystals.cifs]
    cache_path = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        name = _digest(FEATURE_VERSION + "\n" + "\n".join(f"{k} {d}" for k, d in zip(keys, digests)))
        cache_path = cache_dir / f"peer_features_{name}.npz"
        candidates = [cache_path] if cache_path.is_file() else []
        candidates += sorted(path for path in cache_dir.glob("peer_features_*.npz") if path != cache_path)
        for path in candidates:
            try:
                stored = PeerFeatures.load(path)
            except (OSError, ValueError, KeyError):  # an unreadable or older cache is ignored
                continue
            found = stored.rows(keys, digests) if stored is not None else None
            if found is not None:
                return found
    started = time.perf_counter()
    gradient_boosting = np.full((len(keys), len(GB_FEATURES)), np.nan)
    strong = np.full((len(keys), len(STRONG_FEATURES)), np.nan)
    failures: list[str] = []
    for row, (key, cif) in enumerate(zip(keys, crystals.cifs)):
        gradient_boosting[row], strong[row], failed = crystal_features(cif, key)
        failures += failed
        if progress and (row + 1) % 1000 == 0:
            print(f"  peer features: {row + 1}/{len(keys)} ({time.perf_counter() - started:.0f} s)", flush=True)
    seconds = time.perf_counter() - started
    features = PeerFeatures(keys, digests, gradient_boosting, strong, failures, seconds, seconds / max(len(keys), 1))
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        features.save(cache_path)
    return features


def peer_labels(crystals: PhononCrystals) -> np.ndarray:
    """The peers' targets, ``(n, n_T + 1)``: per-atom C_v at every label temperature, then S(300 K), J/(mol·K);
    NaN where a source has no label."""
    entropy = crystals.entropy[:, crystals.label_column(S_TEMPERATURE)]
    return np.column_stack([crystals.heat_capacity, entropy])


class ColumnRegressors:
    """One regressor per label column, each fitted on the rows where that column is finite; a column without
    training labels predicts NaN."""

    def __init__(self, make: Callable[[], RegressorMixin]) -> None:
        self.make = make
        self.models: list[RegressorMixin | None] = []

    def fit(self, features: np.ndarray, labels: np.ndarray) -> ColumnRegressors:
        self.models = []
        for column in labels.T:
            rows = np.isfinite(column)
            self.models.append(self.make().fit(features[rows], column[rows]) if rows.any() else None)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``(n, n_columns)``, the units of the labels."""
        return np.column_stack([np.full(len(features), np.nan) if model is None else model.predict(features)
                                for model in self.models])


def gradient_boosting_peer() -> RegressorMixin:
    """The GB peer's regressor of one column: median imputation, then default gradient boosting (seeded)."""
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                         GradientBoostingRegressor(random_state=0))


def strong_peer() -> RegressorMixin:
    """The strong peer's regressor of one column: default histogram gradient boosting (seeded)."""
    return HistGradientBoostingRegressor(random_state=0)


PEERS: dict[str, tuple[str, Callable[[], RegressorMixin]]] = {
    "strong peer (HGB: composition + cell + SG)": ("strong", strong_peer),
    "GB peer (composition + SG)": ("gradient_boosting", gradient_boosting_peer),
}
"""Peer name → (its :class:`PeerFeatures` attribute, its per-column regressor)."""


def fit_peer(name: str, features: PeerFeatures, labels: np.ndarray) -> ColumnRegressors:
    """The peer ``name`` of :data:`PEERS` fitted on ``features`` and ``labels`` (:func:`peer_labels`)."""
    attribute, make = PEERS[name]
    return ColumnRegressors(make).fit(getattr(features, attribute), labels)


def predict_peer(name: str, model: ColumnRegressors, features: PeerFeatures) -> np.ndarray:
    """Predictions of a :func:`fit_peer` model, ``(n, n_T + 1)`` as :func:`peer_labels`."""
    return model.predict(getattr(features, PEERS[name][0]))


def column_mae(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean |error| per column over the rows where both are finite (NaN for a column without any), ``(n_columns,)``
    in the labels' units."""
    error = np.abs(np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64))
    counts = np.isfinite(error).sum(0)
    totals = np.where(np.isfinite(error), error, 0.0).sum(0)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


__all__ = ["GB_FEATURES", "PEERS", "STRONG_FEATURES", "ColumnRegressors", "PeerFeatures", "column_mae",
           "crystal_features", "crystal_keys", "fit_peer", "peer_features", "peer_labels", "predict_peer"]
