"""Harmonic phonon thermodynamics in torch: C_v, U, S and F from a phonon DOS, Einstein modes or a Debye spectrum,
and the one rule for counting the modes of a tabulated DOS.

Every quantity is per mole of cells (``N`` atoms per cell, ``3N`` modes; :mod:`cloud_hf.units`) with ``R`` =
:data:`GAS_CONSTANT`; a mode of frequency ω has the temperature θ = hcω/k (:data:`KELVIN_PER_WAVENUMBER` · ω in
cm⁻¹) and, at temperature T with x = θ/T, contributes (per mole of that mode)

    C_v = R x² eˣ / (eˣ − 1)²            U = R [θ/2 + T x/(eˣ − 1)]   (zero-point energy θ/2 included)
    S   = R [x/(eˣ − 1) − ln(1 − e⁻ˣ)]   F = R [θ/2 + T ln(1 − e⁻ˣ)]  (= U − TS)

These are phonopy's harmonic thermal-property formulas and pymatgen's ``PhononDos`` integrands.

* :func:`einstein_thermodynamics` sums them over modes (frequency, number of modes): Einstein spectra in
  closed form.
* :func:`dos_thermodynamics` integrates a tabulated DOS g(ω), taken as **piecewise linear** between its grid
  points and normalised to 3N modes. Each segment is integrated with Gauss–Legendre nodes (the kernel is
  smooth and analytic near the real axis; the linear interpolant is exact), i.e. the DOS becomes a set of
  Einstein modes, so U, S, F and C_v stay consistent by construction (autograd gives ∂U/∂T = C_v and
  −∂F/∂T = S to rounding). With ``low_frequency="debye"`` the DOS below the first bin is a Debye ω² onset
  (exact, through :mod:`cloud_hf.debye`), which gives the T³ law at low T that a linear onset lacks.
  A linear first segment from ω = 0 is split geometrically (ω₁/2, ω₁/4, …) so that low T stays resolved.
  Accuracy with the default 8 nodes per segment on a 20 cm⁻¹ grid, float64, T in [0.1, 5000] K, against a
  96-node evaluation: C_v within 2e-10 relative, S within 1e-7; against scipy adaptive quadrature of the same
  piecewise-linear DOS within 1e-7 (``tests/test_thermodynamics.py``).
* :func:`debye_spectrum_thermodynamics` is the Debye model (:func:`cloud_hf.debye.thermodynamics`) with its cut-off
  given as a frequency; :func:`debye_dos` is its spectrum on a grid.
* Mode counting (the phonon labels, the DOS head and its losses all count this way): :func:`onset_modes` (the
  Debye ω² onset below the first grid point, g(ω₁)·ω₁/3), :func:`dos_modes` (onset plus trapezoids),
  :func:`normalise_dos` (to 3 modes per atom) and :func:`cumulative_modes`.

Frequencies are in cm⁻¹ by default; ``unit="THz"`` or ``unit="meV"`` accepts those by name. Everything is
differentiable and finite (values and gradients) in float32 and float64 for T in [0.1, 5000] K: every
exponential is e^{−x} with x ≥ 0 and each ``torch.where`` branch sees inputs clamped into its own domain.

Shapes: spectra are ``(..., K)`` (last dimension: grid points or modes), temperatures ``(n_T,)`` or
``(..., n_T)``, ``n_atoms`` a number or ``(...,)``; results are ``(..., n_T)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from cloud_hf.debye import equivalent_debye_temperature
from cloud_hf.debye import thermodynamics as debye_thermodynamics
from cloud_hf.errors import CloudDataError
from cloud_hf.quadrature import gauss_legendre
from cloud_hf.units import (
    FREQUENCY_UNITS,
    GAS_CONSTANT,
    KELVIN_PER_WAVENUMBER,
    MODES_PER_ATOM,
    PhononThermodynamics,
    to_wavenumber,
)
from cloud_hf.validation import check_dos, check_n_atoms, check_temperatures, in_traced_graph

__all__ = [
    "FREQUENCY_UNITS",
    "GAS_CONSTANT",
    "KELVIN_PER_WAVENUMBER",
    "PhononThermodynamics",
    "cumulative_modes",
    "debye_dos",
    "debye_spectrum_thermodynamics",
    "dos_modes",
    "dos_thermodynamics",
    "einstein_thermodynamics",
    "equivalent_debye_temperature",
    "normalise_dos",
    "onset_modes",
    "to_wavenumber",
]

_SERIES_BELOW = 1e-3  # x below which the mode functions use their Taylor series (avoids 0/0)
_NUM_NODES = 8  # Gauss–Legendre nodes per DOS segment
_REFINE_LEVELS = 12  # geometric sub-segments of a linear first segment that starts at ω = 0

Number = float | int
TensorLike = torch.Tensor | Number | Sequence[float]
Spectrum = torch.Tensor | np.ndarray


# --- counting the modes of a tabulated DOS ------------------------------------------------------------------------

def onset_modes(dos: Spectrum, grid: Spectrum) -> Spectrum:
    """Modes of the Debye ω² onset below the first grid point ω₁ > 0, g(ω₁)·ω₁/3 = ∫₀^ω₁ g(ω₁)(ω/ω₁)² dω, as a
    column `(..., 1)` for ``dos`` `(..., M)` on ``grid`` `(M,)` (cm⁻¹; numpy arrays or tensors)."""
    return dos[..., :1] * grid[0] / 3.0


def _trapezoid_modes(dos: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Modes of each trapezoid between neighbouring grid points, `(..., M − 1)`."""
    return (dos[..., 1:] + dos[..., :-1]) / 2.0 * grid.diff()


# The onset is taken before the trapezoids in both counts below: autograd sums a tensor's gradients in the order
# its uses were made, so this order keeps a trained model's weights bit for bit what they were.

def dos_modes(dos: Spectrum, grid: Spectrum) -> Spectrum:
    """The modes of ``dos`` `(..., M)` on ``grid`` `(M,)` (cm⁻¹, first point > 0), `(...,)`, as every DOS of the
    package counts them (labels, the DOS head, its losses): the Debye onset below the first point
    (:func:`onset_modes`) plus the trapezoids between the points (``numpy.trapezoid`` for numpy arrays)."""
    onset = onset_modes(dos, grid)
    if isinstance(dos, np.ndarray):
        return onset[..., 0] + np.trapezoid(dos, grid, axis=-1)
    return _trapezoid_modes(dos, grid).sum(-1) + onset[..., 0]


def normalise_dos(dos: Spectrum, grid: Spectrum) -> Spectrum:
    """``dos`` `(..., M)` scaled to :data:`~cloud_hf.units.MODES_PER_ATOM` modes (one atom's) as :func:`dos_modes`
    counts them: a per-atom DOS, modes per cm⁻¹."""
    return dos * (MODES_PER_ATOM / dos_modes(dos, grid))[..., None]


def cumulative_modes(dos: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Modes below each grid frequency `(..., M)`: the Debye onset below the first point plus the trapezoids up to it
    (NaN where ``dos`` is NaN). The L1 distance of two such curves is the Wasserstein-1 (earth mover's) distance of
    the two spectra: a peak predicted 20 cm⁻¹ off costs in proportion to the shift, not as two missed bins."""
    onset = onset_modes(dos, grid)
    return torch.cat([onset, onset + _trapezoid_modes(dos, grid).cumsum(-1)], dim=-1)


def debye_dos(grid: torch.Tensor, debye_frequency: torch.Tensor, modes: float = MODES_PER_ATOM) -> torch.Tensor:
    """The Debye spectrum of ``modes`` modes (3N for N atoms) with cut-off ``debye_frequency`` `(...,)` on ``grid``
    `(M,)` (cm⁻¹): g(ω) = 3·modes·ω²/ω_D³ for ω ≤ ω_D, 0 above; modes per cm⁻¹, `(..., M)`."""
    cutoff = debye_frequency.unsqueeze(-1)
    return 3.0 * modes * grid**2 / cutoff**3 * (grid <= cutoff)


# --- thermodynamics -----------------------------------------------------------------------------------------------

def _mode_functions(theta: torch.Tensor, temperature: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-mode C_v/R, U/R, S/R, F/R of modes at θ (K, ``(..., K)``) and T (K, ``(..., n_T)``): ``(..., n_T, K)``."""
    theta = theta.unsqueeze(-2)
    temp = temperature.unsqueeze(-1)
    x = theta / temp
    small = x < _SERIES_BELOW
    x_big = torch.where(small, torch.ones_like(x), x)
    x_small = torch.where(small, x, torch.zeros_like(x))
    boltzmann = torch.exp(-x_big)
    one_minus = -torch.expm1(-x_big)  # 1 − e⁻ˣ
    # x/(eˣ − 1) and x² eˣ/(eˣ − 1)², in e⁻ˣ form (no overflow), with their series below _SERIES_BELOW
    occupation_x = torch.where(small, 1.0 - x_small / 2.0 + x_small**2 / 12.0, x_big * boltzmann / one_minus)
    heat = torch.where(small, 1.0 - x_small**2 / 12.0, (x_big / one_minus) ** 2 * boltzmann)
    # ln(1 − e⁻ˣ): log(x) − x/2 + x²/24 below the switch (finite for x > 0), log1p(−e⁻ˣ) above
    log_one_minus = torch.where(
        small, torch.log(x_small.clamp(min=torch.finfo(x.dtype).tiny)) - x_small / 2.0 + x_small**2 / 24.0,
        torch.log(one_minus),
    )
    energy = theta / 2.0 + temp * occupation_x
    entropy = occupation_x - log_one_minus
    free = theta / 2.0 + temp * log_one_minus
    return heat, energy, entropy, free


def _grid_temperatures(temperature: torch.Tensor, batch_shape: torch.Size) -> torch.Tensor:
    """Temperatures shaped ``(..., n_T)`` to broadcast against a batch of spectra of shape ``batch_shape``."""
    if temperature.dim() == 0:
        temperature = temperature.reshape(1)
    if temperature.dim() == 1:
        return temperature.expand(*batch_shape, temperature.shape[0]) if batch_shape else temperature
    return temperature


def _as_float_tensors(grid: torch.Tensor | Sequence[float],
                      values: torch.Tensor | Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """``grid`` and ``values`` as tensors on ``grid``'s device (``values``' where ``grid`` is a plain sequence), in
    their common floating dtype (the default floating dtype when both are integers)."""
    grid = torch.as_tensor(grid, device=values.device if isinstance(values, torch.Tensor) else None)
    values = torch.as_tensor(values, device=grid.device)
    dtype = torch.promote_types(grid.dtype, values.dtype)
    dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
    return grid.to(dtype), values.to(dtype)


def einstein_thermodynamics(
    frequencies: TensorLike, modes: TensorLike, temperature: TensorLike, unit: str = "cm-1"
) -> PhononThermodynamics:
    """Thermodynamics of Einstein modes, per mole of cells.

    Args:
        frequencies: mode frequencies (> 0), ``(..., K)``, in ``unit``.
        modes: number of modes at each frequency (≥ 0, summing to 3N for a whole crystal), ``(..., K)``.
        temperature: T in K (> 0), ``(n_T,)`` or ``(..., n_T)``.
        unit: ``"cm-1"`` (default), ``"THz"`` or ``"meV"``.

    Returns:
        :class:`PhononThermodynamics` shaped ``(..., n_T)``.
    """
    frequencies, modes = _as_float_tensors(frequencies, modes)
    temperature = check_temperatures(temperature, frequencies)
    theta = KELVIN_PER_WAVENUMBER * to_wavenumber(frequencies, unit)
    batch_shape = torch.broadcast_shapes(theta.shape[:-1], modes.shape[:-1])
    temp = _grid_temperatures(temperature, batch_shape)
    weights = GAS_CONSTANT * modes.unsqueeze(-2)
    return PhononThermodynamics(*((weights * value).sum(-1) for value in _mode_functions(theta, temp)))


def _refine_first_segment(omega: torch.Tensor, dos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same piecewise-linear DOS with points ω₁/2, ω₁/4, … ω₁/2¹² inserted in its first segment [0, ω₁].

    At T ≪ θ(ω₁) the kernel lives in a sliver of that segment that Gauss–Legendre on the whole segment misses
    (8 nodes: 7 % error in C_v at 0.5 K on a 20 cm⁻¹ grid); geometric sub-segments keep every T ≥ 0.1 K resolved.
    """
    fractions = torch.tensor([2.0**-k for k in range(_REFINE_LEVELS, 0, -1)], dtype=omega.dtype, device=omega.device)
    inserted = dos[..., :1] + (dos[..., 1:2] - dos[..., :1]) * fractions
    return (
        torch.cat([omega[:1], omega[1] * fractions, omega[1:]]),
        torch.cat([dos[..., :1], inserted, dos[..., 1:]], dim=-1),
    )


def dos_thermodynamics(
    frequencies: TensorLike,
    dos: TensorLike,
    temperature: TensorLike,
    n_atoms: TensorLike,
    unit: str = "cm-1",
    low_frequency: Literal["linear", "debye"] = "linear",
    num_nodes: int = _NUM_NODES,
    validate: bool = True,
) -> PhononThermodynamics:
    """Harmonic thermodynamics of a tabulated phonon DOS, normalised to 3N modes, per mole of cells.

    Args:
        frequencies: the grid, ``(M,)``, strictly increasing from ≥ 0, in ``unit``.
        dos: g(ω) on the grid, ``(..., M)``, ≥ 0, in any scale (it is normalised to 3·``n_atoms`` modes).
        temperature: T in K (> 0), ``(n_T,)`` or ``(..., n_T)``.
        n_atoms: atoms per cell N (> 0), a number or ``(...,)``.
        unit: frequency unit, ``"cm-1"``, ``"THz"`` or ``"meV"``.
        low_frequency: ``"linear"``: the DOS is the linear interpolant everywhere (and zero below the first grid
            point); ``"debye"``: below the first bin it is the Debye onset g(ω₁)·(ω/ω₁)², where ω₁ is the first
            grid point if it is > 0, else the second (the value at ω = 0 is then ignored).
        num_nodes: Gauss–Legendre nodes per segment.
        validate: check the inputs (see :func:`check_dos`); models whose DOS is valid by construction may skip it.

    Returns:
        :class:`PhononThermodynamics` shaped ``(..., n_T)``.
    """
    # whether the grid starts above 0, read from a plain sequence where given (a traced graph cannot read a tensor)
    starts_above_zero = float(frequencies[0]) > 0 if not isinstance(frequencies, torch.Tensor) else None
    frequencies, dos = _as_float_tensors(frequencies, dos)
    omega = to_wavenumber(frequencies, unit)
    if validate:
        check_dos(omega, dos)
    temperature = check_temperatures(temperature, dos)
    atoms = check_n_atoms(n_atoms, dos)
    if low_frequency not in ("linear", "debye"):
        raise CloudDataError(f"low_frequency must be 'linear' or 'debye', got {low_frequency!r}")

    onset_end = 0 if (starts_above_zero if starts_above_zero is not None else float(omega[0]) > 0) else 1  # ω₁
    if low_frequency == "debye":
        omega, dos = omega[onset_end:], dos[..., onset_end:]
    elif onset_end == 1:
        omega, dos = _refine_first_segment(omega, dos)
    nodes, weights = gauss_legendre(num_nodes, omega.dtype, omega.device, rule="numpy")
    start, width = omega[:-1], omega.diff()
    node_frequencies = (start.unsqueeze(-1) + width.unsqueeze(-1) * nodes).reshape(-1)  # (segments·nodes,)
    lower, upper = dos[..., :-1].unsqueeze(-1), dos[..., 1:].unsqueeze(-1)
    node_modes = ((lower * (1.0 - nodes) + upper * nodes) * (width.unsqueeze(-1) * weights)).flatten(-2)
    onset = onset_modes(dos, omega)[..., 0] if low_frequency == "debye" else torch.zeros_like(dos[..., 0])
    total = node_modes.sum(-1) + onset
    scale = MODES_PER_ATOM * atoms / total  # modes per unit of the given DOS scale
    result = einstein_thermodynamics(node_frequencies, node_modes * scale.unsqueeze(-1), temperature)
    if low_frequency == "debye" and (in_traced_graph() or float(omega[0]) > 0):  # ω₁ > 0 on a valid grid
        batch_shape = dos.shape[:-1]
        temp = _grid_temperatures(temperature, batch_shape)
        theta_onset = KELVIN_PER_WAVENUMBER * omega[0]
        onset_atoms = (onset * scale / MODES_PER_ATOM).unsqueeze(-1)  # a Debye solid of that many modes
        result = result + debye_thermodynamics(theta_onset, temp, onset_atoms)
    return result


def debye_spectrum_thermodynamics(
    debye_frequency: TensorLike, temperature: TensorLike, n_atoms: TensorLike = 1, unit: str = "cm-1"
) -> PhononThermodynamics:
    """The Debye model (3N modes, g ∝ ω² up to the cut-off ``debye_frequency``), per mole of cells.

    ``debye_frequency`` is ``(...,)`` in ``unit``; θ_D = hc·ω_D/k. Same results as :func:`cloud_hf.debye.thermodynamics`,
    shaped ``(..., n_T)``.
    """
    omega = to_wavenumber(torch.as_tensor(debye_frequency), unit)
    omega = omega.to(omega.dtype if omega.is_floating_point() else torch.get_default_dtype())
    temperature = check_temperatures(temperature, omega)
    atoms = check_n_atoms(n_atoms, omega)
    temp = _grid_temperatures(temperature, omega.shape)
    theta = (KELVIN_PER_WAVENUMBER * omega).unsqueeze(-1)
    return debye_thermodynamics(theta, temp, atoms.unsqueeze(-1) if atoms.dim() else atoms)

