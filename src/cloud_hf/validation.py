"""The one home of the checks on physical inputs: temperatures (K), atom counts per cell and phonon DOS grids.

Every check raises :class:`~cloud_hf.errors.CloudDataError` naming the argument and the bad values (or, for a data
file's row, returns the reason for its bad-row report); the heads, the pipeline, ``cloud-hf predict``, the
thermodynamics functions and the phonon readers all call these. Checks that read tensor values are skipped inside
a traced graph (:func:`in_traced_graph`): a traced graph cannot branch on data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from cloud_hf.errors import CloudDataError

__all__ = [
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "atom_count_problem",
    "batch_n_atoms",
    "batch_temperatures",
    "check_dos",
    "check_n_atoms",
    "check_temperatures",
    "dos_values_problem",
    "in_traced_graph",
    "temperature_values",
]

Number = float | int
TensorLike = torch.Tensor | Number | Sequence[float]

MIN_TEMPERATURE = 1e-3
"""Lowest accepted temperature, K: below it float32 cannot hold T³ terms and (T/θ)³ of a stiff crystal."""
MAX_TEMPERATURE = 1e6
"""Highest accepted temperature, K: far above any solid's melting point (the Dulong–Petit limit holds long before)."""


def in_traced_graph() -> bool:
    """Whether this code is being traced into a graph (``torch.compile``, ``torch.export``, the ONNX exporter,
    ``torch.jit.trace``). Checks that read tensor values are skipped there (a traced graph cannot branch on data),
    and nothing made there is cached (it would be a placeholder, not a tensor); every eager call runs the checks."""
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing())


# --- temperatures -------------------------------------------------------------------------------------------------

def _temperature_problem(values: torch.Tensor, name: str = "temperature") -> str | None:
    """Why float64 temperatures (K) cannot be used, naming ``name`` and up to 8 bad values; ``None`` if they can."""
    bad = ~(torch.isfinite(values) & (values > 0))
    if bool(bad.any()):
        return f"{name} must be finite and > 0 K, got {values[bad][:8].tolist()}"
    bad = (values < MIN_TEMPERATURE) | (values > MAX_TEMPERATURE)
    if bool(bad.any()):
        return (f"{name} must lie between {MIN_TEMPERATURE:g} K and {MAX_TEMPERATURE:g} K (outside, float32 "
                f"under- or overflows), got {values[bad][:8].tolist()}")
    return None


def temperature_values(temperatures: Any, name: str = "temperatures") -> tuple[float, ...]:
    """Temperatures (K) given as a real number or a 1-D array-like (list, tuple, numpy array or scalar, tensor),
    checked in float64 (finite, within [:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`] K) before any model
    runs; :class:`CloudDataError` naming ``name`` otherwise (a string is refused, never split into characters)."""
    if isinstance(temperatures, (str, bytes)):
        raise CloudDataError(f"{name} must be a number or a list of numbers (K), got the string {temperatures!r}")
    if isinstance(temperatures, torch.Tensor):
        array = temperatures.detach().cpu().numpy()
    else:
        try:
            array = np.asarray(temperatures)
        except (TypeError, ValueError) as error:  # ragged nesting
            raise CloudDataError(f"{name} must be a number or a 1-D list of numbers (K): {error}") from error
    if array.dtype.kind not in "iuf":  # strings, booleans, objects (None, mixed types)
        raise CloudDataError(f"{name} must be real numbers (K), got {temperatures!r}")
    if array.ndim > 1:
        raise CloudDataError(f"{name} must be a number or a 1-D list of numbers (K), got shape {array.shape}")
    values = torch.from_numpy(array.astype(np.float64).reshape(-1))
    if not values.numel():
        raise CloudDataError(f"{name} must hold at least one temperature (K)")
    problem = _temperature_problem(values, name)
    if problem is not None:
        raise CloudDataError(problem)
    return tuple(values.tolist())


def check_temperatures(temperature: TensorLike, like: torch.Tensor | None = None) -> torch.Tensor:
    """Temperatures (K) as a floating tensor of ``like``'s dtype (or wider), checked in float64 as
    :func:`temperature_values` checks them; a :class:`CloudDataError` naming the bad values otherwise (skipped
    inside a traced graph, :func:`in_traced_graph`)."""
    given = temperature.dtype if isinstance(temperature, torch.Tensor) and temperature.is_floating_point() else None
    if not isinstance(temperature, torch.Tensor):  # numbers are read in float64, not the default float32
        temperature = torch.as_tensor(temperature, dtype=torch.float64)
    if not in_traced_graph():
        problem = _temperature_problem(temperature.detach().to(torch.float64))
        if problem is not None:
            raise CloudDataError(problem)
    dtype = like.dtype if like is not None and like.dtype.is_floating_point else torch.get_default_dtype()
    device = like.device if like is not None else temperature.device
    return temperature.to(device=device, dtype=torch.promote_types(given, dtype) if given is not None else dtype)


def batch_temperatures(temperature: TensorLike, batch_size: int, like: torch.Tensor,
                       vector: Literal["grid", "per_crystal"] = "grid") -> torch.Tensor:
    """A head's ``temperature`` input (K), checked by :func:`check_temperatures`, shaped for a batch of
    ``batch_size`` crystals.

    A number is every crystal's temperature; a 2-D tensor `(batch, n_T)` a grid per crystal. A 1-D one is, with
    ``vector="grid"``, one grid for every crystal (the result is always `(batch, n_T)`), and with
    ``vector="per_crystal"``, one temperature per crystal (the result is `(batch,)` or `(batch, n_T)`).
    """
    temp = check_temperatures(temperature, like)
    if vector == "grid":
        if temp.dim() == 0:
            temp = temp.reshape(1, 1).expand(batch_size, 1)
        elif temp.dim() == 1:  # the same temperatures for every crystal
            temp = temp.expand(batch_size, -1)
        if temp.dim() != 2 or temp.shape[0] != batch_size:
            raise CloudDataError(f"temperature has shape {tuple(temp.shape)}; expected ({batch_size}, num_temperatures)")
        return temp
    if temp.dim() == 0:
        temp = temp.expand(batch_size)
    if temp.dim() not in (1, 2) or temp.shape[0] != batch_size:
        raise CloudDataError(
            f"temperature has shape {tuple(temp.shape)}; expected ({batch_size},) for one temperature "
            f"per crystal or ({batch_size}, num_temperatures) for a grid per crystal"
        )
    return temp


# --- atom counts --------------------------------------------------------------------------------------------------

def _bad_atom_counts(atoms: torch.Tensor) -> torch.Tensor:
    """Where atom counts cannot be used: not finite, or not > 0."""
    return ~(torch.isfinite(atoms) & (atoms > 0))


def atom_count_problem(n_atoms: Any) -> str | None:
    """Why one row's atom count cannot be used, as a bad-row report's reason; ``None`` if it can."""
    bad = bool(_bad_atom_counts(torch.tensor(float(n_atoms), dtype=torch.float64)))
    return f"n_atoms {n_atoms} is not > 0" if bad else None


def check_n_atoms(n_atoms: TensorLike, like: torch.Tensor) -> torch.Tensor:
    """Atoms per cell as a tensor of ``like``'s dtype, all finite and > 0 (the bad rows are named; not checked
    inside a traced graph)."""
    atoms = torch.as_tensor(n_atoms, device=like.device).to(like.dtype)
    if in_traced_graph():
        return atoms
    bad = _bad_atom_counts(atoms)
    if bool(bad.any()):
        rows = bad.reshape(-1).nonzero().reshape(-1)[:8].tolist()
        raise CloudDataError(f"n_atoms must be > 0; rows {rows} have {atoms.reshape(-1)[rows].tolist()}")
    return atoms


def batch_n_atoms(n_atoms: TensorLike | None, batch_size: int, like: torch.Tensor) -> torch.Tensor:
    """A head's ``n_atoms`` input: atoms per cell `(batch,)` in ``like``'s dtype, checked by :func:`check_n_atoms`;
    1 for every crystal (per mole of atoms) when not given."""
    if n_atoms is None:
        return torch.ones(batch_size, dtype=like.dtype, device=like.device)
    atoms = check_n_atoms(n_atoms, like).reshape(-1)
    if atoms.shape[0] != batch_size:
        raise CloudDataError(f"n_atoms has {atoms.shape[0]} entries for a batch of {batch_size} crystals")
    return atoms


# --- phonon DOS ---------------------------------------------------------------------------------------------------

def dos_values_problem(values: np.ndarray | torch.Tensor) -> str | None:
    """Why one DOS row (values in any scale) cannot be a spectrum, as a bad-row report's reason: empty, NaN or
    infinite, negative, or no modes; ``None`` if it can."""
    values = torch.as_tensor(values)
    if values.numel() == 0:
        return "empty DOS"
    if not bool(torch.isfinite(values).all()):
        return "DOS has NaN or infinite values"
    if bool((values < 0).any()):
        return "DOS has negative values"
    if not bool((values > 0).any()):
        return "DOS has no modes"
    return None


def check_dos(frequencies: torch.Tensor, dos: torch.Tensor) -> None:
    """Raise :class:`CloudDataError` naming the row for a DOS that is NaN, negative, all zero or of the wrong
    length, or for a frequency grid that is not strictly increasing from ≥ 0."""
    if frequencies.dim() != 1 or frequencies.numel() < 2:
        raise CloudDataError(f"frequencies must be a 1-D grid of ≥ 2 points, got shape {tuple(frequencies.shape)}")
    steps = frequencies.diff()
    if not bool((steps > 0).all()) or not bool(torch.isfinite(frequencies).all()) or float(frequencies[0]) < 0:
        index = int((~(steps > 0)).nonzero()[0]) + 1 if not bool((steps > 0).all()) else 0
        raise CloudDataError(
            f"frequencies must be finite, ≥ 0 and strictly increasing; point {index} is {float(frequencies[index])}"
        )
    if dos.shape[-1] != frequencies.numel():
        raise CloudDataError(f"dos has {dos.shape[-1]} values per row; the frequency grid has {frequencies.numel()}")
    rows = dos.reshape(-1, dos.shape[-1])
    for problem, bad in (("NaN or infinite", ~torch.isfinite(rows)), ("negative", rows < 0)):
        if bool(bad.any()):
            row, column = (int(index) for index in bad.nonzero()[0])
            raise CloudDataError(f"dos row {row} has a {problem} value at frequency index {column}")
    empty = ~(rows > 0).any(-1)
    if bool(empty.any()):
        raise CloudDataError(f"dos row {int(empty.nonzero()[0])} is zero everywhere (no modes to normalise)")
