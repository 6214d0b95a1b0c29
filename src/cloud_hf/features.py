"""Structure features: fixed-length numbers a head reads from a crystal's cell beside its SCOPE tokens, one
registry for all of them.

A feature is one function of a validated cell (:class:`cloud_hf.structures.CrystalCell`) that returns a fixed
number of floats, registered under a name with the model input it fills::

    from cloud_hf.features import register_feature

    register_feature("packing", packing_fraction, input_name="packing_features", value_names=("packing_fraction",),
                     description="packing fractions")

A head declares the features it reads by name (``CloudConfig.structure_feature_names``); the checkpoint's
[`CloudProcessor`] computes exactly those and returns each under its ``input_name`` `(batch, size)`; the pipeline,
``cloud-hf predict`` and the recipes pass the processor's outputs on without naming them. The processor saves the
``version`` of each feature it computes, so a processor saved with one definition refuses another instead of feeding
its model other numbers. Statistics a head standardises a feature by are fitted on its training crystals and kept
with the head (``CloudConfig.feature_statistics``); :meth:`StructureFeature.statistics` computes them.

The built-in features register themselves when their module is imported. :data:`BUILTIN_FEATURE_MODULES` lists
those modules; they are imported on the first look-up, so a processor without features imports no structure code.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cloud_hf.errors import CloudConfigError, CloudDataError

if TYPE_CHECKING:
    from cloud_hf.structures import CrystalCell

BUILTIN_FEATURE_MODULES = ("cloud_hf.cell_descriptors", "cloud_hf.mass_descriptors")
"""Modules whose import registers the built-in features (one line per module)."""
RESERVED_INPUT_NAMES = frozenset({"input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds",
                                  "n_atoms", "temperature", "labels"})
"""Model inputs a feature may not take the name of: the processor's own outputs and the heads' other inputs."""

_REGISTRY: dict[str, StructureFeature] = {}
_builtins_loaded = False


@dataclass(frozen=True)
class StructureFeature:
    """A registered structure feature (see :func:`register_feature`)."""

    name: str
    function: Callable[[CrystalCell], Sequence[float]]
    input_name: str
    value_names: tuple[str, ...]
    description: str
    check: Callable[[CrystalCell], None] | None = None
    version: int = 1

    @property
    def size(self) -> int:
        """Values per crystal."""
        return len(self.value_names)

    def compute(self, cell: CrystalCell) -> tuple[float, ...]:
        """The feature's values of one validated cell (after ``check``, which the processor runs first)."""
        values = tuple(float(value) for value in self.function(cell))
        if len(values) != self.size:
            raise CloudDataError(f"structure feature {self.name!r} gave {len(values)} values for {cell.name}; it is "
                                 f"registered with {self.size} ({', '.join(self.value_names)})")
        return values

    def statistics(self, rows: Any) -> list[list[float]]:
        """``[means, stds]`` per value over ``rows`` `(n, size)` (std ≥ 1e-6, float64): what a head standardises
        this feature by, fitted on its training crystals."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.size or not len(rows):
            raise ValueError(f"{self.description} rows must be (n ≥ 1, {self.size}), got {rows.shape}")
        return [rows.mean(0).tolist(), np.maximum(rows.std(0), 1e-6).tolist()]

    def check_statistics(self, statistics: Any, key: str) -> None:
        """:class:`CloudConfigError` naming ``key`` unless ``statistics`` is None or ``[means, stds]`` of ``size``
        finite values each, stds > 0."""
        if statistics is None:
            return
        if (len(statistics) != 2 or any(len(row) != self.size for row in statistics)
                or not all(math.isfinite(value) for row in statistics for value in row)
                or not all(std > 0 for std in statistics[1])):
            raise CloudConfigError(f"{key} must be [means, stds] of {self.size} values each "
                                   f"({', '.join(self.value_names)}), stds > 0; got {statistics!r}")


def register_feature(name: str, function: Callable[[CrystalCell], Sequence[float]], *, input_name: str,
                     value_names: Sequence[str], description: str | None = None,
                     check: Callable[[CrystalCell], None] | None = None, version: int = 1) -> StructureFeature:
    """Register a structure feature; returns it.

    Args:
        name: the name heads declare it by (``CloudConfig.structure_features``).
        function: a validated cell → ``len(value_names)`` floats (units in its docstring).
        input_name: the model input the processor returns it as, `(batch, len(value_names))`.
        value_names: what each value is, in order (e.g. ``"ln_density"``).
        description: a plural noun phrase for messages (default: ``name`` with spaces).
        check: run on each cell before the feature is computed; raises
            :class:`~cloud_hf.errors.CrystalInputError` naming the input for a cell the feature cannot describe.
        version: bump it when the definition changes: a processor saved with another version refuses to load.

    Registering the same definition again is a no-op; another definition under a taken name or input name is a
    :class:`CloudConfigError`.
    """
    feature = StructureFeature(name, function, input_name, tuple(value_names), description or name.replace("_", " "),
                               check, int(version))
    if not name or not input_name or not feature.value_names or feature.version < 1:
        raise CloudConfigError(f"structure feature {name!r}: needs a name, an input name, ≥ 1 value name and a "
                               f"version ≥ 1")
    if input_name in RESERVED_INPUT_NAMES:
        raise CloudConfigError(f"structure feature {name!r}: input name {input_name!r} is taken by the models' own "
                               f"inputs ({', '.join(sorted(RESERVED_INPUT_NAMES))})")
    for other in _REGISTRY.values():
        if other != feature and (other.name == name or other.input_name == input_name):
            raise CloudConfigError(f"structure feature {name!r} (input {input_name!r}): {other.name!r} is already "
                                   f"registered under that name or input name")
    _REGISTRY[name] = feature
    return feature


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_FEATURE_MODULES:
            importlib.import_module(module)


def registered_features() -> dict[str, StructureFeature]:
    """Every registered feature by name (the built-in ones included)."""
    _load_builtins()
    return dict(_REGISTRY)


def get_feature(name: str) -> StructureFeature:
    """The feature registered under ``name``; :class:`CloudConfigError` naming the registered ones otherwise."""
    _load_builtins()
    if name not in _REGISTRY:
        raise CloudConfigError(f"structure feature {name!r} is not registered (registered: {sorted(_REGISTRY)}); "
                               "import the module that registers it (cloud_hf.features.register_feature)")
    return _REGISTRY[name]


def get_features(names: Iterable[str]) -> list[StructureFeature]:
    """The features registered under ``names``, in order."""
    return [get_feature(name) for name in names]


def feature_values(features: Sequence[StructureFeature], cell: CrystalCell) -> dict[str, tuple[float, ...]]:
    """The values of ``features`` for a validated cell by model input name, each feature's check run first (a
    :class:`~cloud_hf.errors.CrystalInputError` naming the input for a cell it refuses: the cell descriptors refuse
    vacuum, which would set them). What the processor and the recipes' data path both compute."""
    for feature in features:
        if feature.check is not None:
            feature.check(cell)
    return {feature.input_name: feature.compute(cell) for feature in features}


def input_names(names: Iterable[str]) -> list[str]:
    """The model inputs of the features ``names``, in order (e.g. ``["cell_features"]``)."""
    return [feature.input_name for feature in get_features(names)]


__all__ = ["BUILTIN_FEATURE_MODULES", "StructureFeature", "feature_values", "get_feature", "get_features",
           "input_names",
           "register_feature", "registered_features"]
