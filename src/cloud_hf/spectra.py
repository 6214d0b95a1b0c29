"""The phonon spectra of [`CloudThermoModel`]'s heads: what a head's outputs stand for, and their thermodynamics.

Plain functions of tensors (no parameters), each shaped `(batch, members, ...)`; the model holds the weights and
calls these:

* :func:`dos_head_spectra`: a non-negative DOS on the grid, softplus(prior + y), optionally read on a mass-reduced
  axis (:func:`mass_stretch`, :func:`interpolate_uniform`), normalised to 3 modes per atom
  (:func:`cloud_hf.thermodynamics.normalise_dos`) and scaled to the cell.
* :func:`debye_einstein_head_spectra`: 3 acoustic modes per cell on a Debye spectrum (cut-off ω_D) plus 3N − 3
  optical modes on Einstein frequencies with softmax weights.
* :func:`spectrum_thermodynamics`: C_v, U, S, F per mole of cells of either kind (:mod:`cloud_hf.thermodynamics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cloud_hf.thermodynamics import (
    debye_dos,
    debye_spectrum_thermodynamics,
    dos_thermodynamics,
    einstein_thermodynamics,
    normalise_dos,
)
from cloud_hf.units import MODES_PER_ATOM, PhononThermodynamics, per_cell

__all__ = [
    "SOFTPLUS_OF_ZERO_IS_ONE",
    "MemberSpectra",
    "debye_einstein_head_spectra",
    "dos_head_spectra",
    "interpolate_uniform",
    "mass_stretch",
    "positive_scaled",
    "spectrum_thermodynamics",
]

SOFTPLUS_OF_ZERO_IS_ONE = math.log(math.e - 1.0)
"""softplus(y + this) = 1 at y = 0: a fresh head's positive outputs start at their scale."""
_FREQUENCY_SCALE = 300.0  # cm⁻¹: typical phonon frequency, the scale of the Debye–Einstein frequencies
_DOS_FLOOR = 1e-6  # modes per cm⁻¹ added to a predicted DOS: strictly positive, so its total never vanishes


def positive_scaled(values: torch.Tensor, scale: float, floor: float = 1.0) -> torch.Tensor:
    """A positive quantity from a head's output ``y``: ``scale · softplus(y + ln(e − 1)) + floor`` (``scale + floor``
    at y = 0: a fresh head starts at the typical value; never below ``floor``). The heads' θ_D (K) and ω_D (cm⁻¹)."""
    return scale * nn.functional.softplus(values + SOFTPLUS_OF_ZERO_IS_ONE) + floor


@dataclass
class MemberSpectra:
    """Every member's spectrum for a batch: a per-cell DOS on the grid and, for debye-einstein, its Debye cut-off and
    Einstein modes (the DOS is then the acoustic Debye part, for display)."""

    dos: torch.Tensor
    """`(batch, members, M)`, modes per cm⁻¹ per cell."""
    einstein_frequencies: torch.Tensor | None = None
    """`(batch, members, K)`, cm⁻¹."""
    einstein_modes: torch.Tensor | None = None
    """`(batch, members, K)`, modes per cell."""
    debye_frequency: torch.Tensor | None = None
    """`(batch, members)`, cm⁻¹: the cut-off of the 3 acoustic modes."""


def mass_stretch(ln_mass: torch.Tensor, reference_mass: float) -> torch.Tensor:
    """s₀ = √(m̄/m_ref) `(batch,)` from ln(m̄/amu) `(batch,)` (m̄: the atoms' geometric-mean mass; m_ref in amu): since
    ω ∝ √(k/m), a spectrum read at u = s₀·ω is the spectrum of the same force constants at mass m_ref."""
    return torch.exp(0.5 * (ln_mass - math.log(float(reference_mass))))


def interpolate_uniform(values: torch.Tensor, step: float, query: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``values`` `(..., K)` given at 0, step, …, (K − 1)·step, read at ``query`` `(..., M)` (≥ 0;
    0 beyond the last point): ``numpy.interp`` with ``right=0``, batched and differentiable in both."""
    position = query / step
    last = values.shape[-1] - 1
    left = position.floor().clamp(0, last - 1)
    fraction = position - left
    index = left.long()
    below, above = values.gather(-1, index), values.gather(-1, index + 1)
    return torch.where(position <= last, below + fraction * (above - below), torch.zeros_like(position))


def dos_head_spectra(raw: torch.Tensor, grid: torch.Tensor, n_atoms: torch.Tensor,
                     prior: Sequence[float] | None = None, stretch: torch.Tensor | None = None,
                     reduced_step: float | None = None) -> MemberSpectra:
    """The DOS head's per-cell spectra from its outputs ``raw`` `(batch, members, P)` on ``grid`` `(M,)` (cm⁻¹, first
    point > 0: the Debye onset is below it), for ``n_atoms`` `(batch,)` atoms per cell.

    The DOS is softplus(``prior`` + y) (``prior``: logits, one per point; default 0). With ``stretch`` `(batch,)`
    (s₀ of :func:`mass_stretch`), y is on the mass-reduced grid 0, ``reduced_step``, … and the last output is a
    correction δ ∈ [−2, 2]: the spectrum is g̃(s·ω) with s = s₀·e^δ.
    """
    atoms = n_atoms.to(raw)[:, None, None]
    values = raw[..., :-1] if stretch is not None else raw
    prior = raw.new_tensor(prior) if prior is not None else raw.new_zeros(values.shape[-1])
    density = nn.functional.softplus(values + prior)
    if stretch is not None:  # the reduced DOS g̃(u) read at u = s·ω on the grid: g(ω) ∝ g̃(s·ω)
        stretch = stretch[:, None] * torch.exp(raw[..., -1].clamp(-2.0, 2.0))
        density = interpolate_uniform(density, float(reduced_step), stretch[..., None] * grid)
    density = density + _DOS_FLOOR
    return MemberSpectra(dos=per_cell(normalise_dos(density, grid), atoms))


def debye_einstein_head_spectra(raw: torch.Tensor, grid: torch.Tensor, n_atoms: torch.Tensor,
                                num_einstein: int) -> MemberSpectra:
    """The debye-einstein head's per-cell spectra from its outputs ``raw`` `(batch, members, 1 + 2K)`: ω_D, then K
    Einstein frequencies (a fresh head's spread from ~150 to ~650 cm⁻¹ for K = 4), then K logits of their share of the
    3N − 3 optical modes; ``grid`` `(M,)` (cm⁻¹) is where the acoustic Debye DOS is given."""
    atoms = n_atoms.to(raw)[:, None, None]
    debye_frequency = positive_scaled(raw[..., 0], _FREQUENCY_SCALE)
    offsets = torch.linspace(-1.0, 1.5, num_einstein, device=raw.device, dtype=raw.dtype)  # spread at init
    einstein = _FREQUENCY_SCALE * nn.functional.softplus(raw[..., 1:1 + num_einstein] + SOFTPLUS_OF_ZERO_IS_ONE
                                                         + offsets)
    weights = torch.softmax(raw[..., 1 + num_einstein:], dim=-1)
    optical_modes = weights * (MODES_PER_ATOM * atoms - MODES_PER_ATOM)  # 3N − 3: all but the 3 acoustic modes
    acoustic = debye_dos(grid, debye_frequency)  # the 3 acoustic modes: a Debye solid of one atom
    return MemberSpectra(dos=acoustic.expand(*raw.shape[:2], -1), einstein_frequencies=einstein + 1.0,
                         einstein_modes=optical_modes, debye_frequency=debye_frequency)


def spectrum_thermodynamics(spectra: MemberSpectra, grid: Sequence[float], temperature: torch.Tensor,
                            n_atoms: torch.Tensor) -> PhononThermodynamics:
    """Each member's C_v, U, S, F per mole of cells `(batch, members, n_T)` at ``temperature`` `(batch, n_T)` (K), for
    ``n_atoms`` `(batch,)` atoms per cell; ``grid`` (cm⁻¹) is the DOS's, as a list (a traced graph can read it)."""
    temp = temperature[:, None, :]
    if spectra.debye_frequency is None:
        atoms = n_atoms.to(spectra.dos)[:, None].expand(spectra.dos.shape[:2])
        return dos_thermodynamics(grid, spectra.dos, temp, atoms, low_frequency="debye", validate=False)
    acoustic = debye_spectrum_thermodynamics(spectra.debye_frequency, temp, 1.0)  # 3 modes per cell
    return acoustic + einstein_thermodynamics(spectra.einstein_frequencies, spectra.einstein_modes, temp)
