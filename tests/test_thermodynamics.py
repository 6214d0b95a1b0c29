"""Harmonic thermodynamics from a phonon DOS against scipy quadrature and pymatgen's PhononDos."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.constants
import torch
from scipy import integrate

from cloud_hf import debye
from cloud_hf.errors import CloudDataError
from cloud_hf.thermodynamics import (
    FREQUENCY_UNITS,
    GAS_CONSTANT,
    KELVIN_PER_WAVENUMBER,
    debye_spectrum_thermodynamics,
    dos_thermodynamics,
    einstein_thermodynamics,
    equivalent_debye_temperature,
)

GRID = torch.arange(0.0, 1001.0, 20.0, dtype=torch.float64)  # the phonon file's grid, cm⁻¹


def two_peak_dos() -> torch.Tensor:
    """A made-up DOS on GRID: an ω² acoustic onset, an acoustic hump at 150 cm⁻¹ and an optical peak at 600."""
    omega = GRID
    acoustic = (omega / 150.0) ** 2 * torch.exp(-((omega - 150.0) ** 2) / (2 * 60.0**2))
    optical = 0.7 * torch.exp(-((omega - 600.0) ** 2) / (2 * 40.0**2))
    return acoustic + optical


def quad_reference(dos: np.ndarray, temperature: float, n_atoms: int) -> dict[str, float]:
    """C_v, U, S, F (per mole of cells) by scipy adaptive quadrature of the piecewise-linear DOS, per segment."""
    grid = GRID.numpy()
    modes = np.trapezoid(dos, grid)
    scale = 3 * n_atoms / modes

    def kernels(omega: float) -> np.ndarray:
        theta = KELVIN_PER_WAVENUMBER * omega
        x = theta / temperature
        boltzmann = math.exp(-x)
        occupation = boltzmann / -math.expm1(-x)  # 1/(eˣ − 1) without overflow
        return GAS_CONSTANT * np.array([
            x**2 * boltzmann / math.expm1(-x) ** 2,
            theta / 2 + theta * occupation,
            x * occupation - math.log(-math.expm1(-x)),
            theta / 2 + temperature * math.log(-math.expm1(-x)),
        ])

    total = np.zeros(4)
    for left, right, g_left, g_right in zip(grid[:-1], grid[1:], dos[:-1], dos[1:]):
        slope = (g_right - g_left) / (right - left)
        for index in range(4):
            total[index] += integrate.quad(
                lambda omega, i=index, a=left, g=g_left, m=slope: (g + m * (omega - a)) * kernels(omega)[i],
                left, right, epsabs=1e-13, epsrel=1e-12, limit=100,
            )[0]
    return dict(zip(("heat_capacity", "internal_energy", "entropy", "free_energy"), total * scale))


@pytest.mark.parametrize("temperature", [2.0, 50.0, 2000.0])
def test_dos_thermodynamics_matches_scipy_quadrature(temperature):
    dos = two_peak_dos()
    result = dos_thermodynamics(GRID, dos, [temperature], n_atoms=4)
    expected = quad_reference(dos.numpy(), temperature, 4)
    for name, value in expected.items():
        got = float(getattr(result, name)[0])
        assert got == pytest.approx(value, rel=1e-7, abs=1e-12), name


def test_dos_thermodynamics_matches_pymatgen_phonon_dos():
    """pymatgen integrates with the trapezoid rule in THz, per mole of cells (no structure passed), with CODATA R:
    on a fine resampling of the same piecewise-linear DOS it is an independent oracle."""
    from pymatgen.phonon.dos import PhononDos

    dos = two_peak_dos()
    fine = np.linspace(0.0, 1000.0, 100_001)
    fine_dos = np.interp(fine, GRID.numpy(), dos.numpy())
    fine_dos[0] = 0.0  # the optical tail leaves 1e-49 at ω = 0, where pymatgen warns
    fine_dos *= 3 * 6 / np.trapezoid(fine_dos, fine)  # 3N modes per cm⁻¹ ...
    thz = FREQUENCY_UNITS["THz"]
    oracle = PhononDos(fine / thz, fine_dos * thz)  # ... as modes per THz
    r_ratio = GAS_CONSTANT / scipy.constants.R
    temperatures = [20.0, 100.0, 300.0, 800.0]
    result = dos_thermodynamics(GRID, dos, temperatures, n_atoms=6)
    for index, temperature in enumerate(temperatures):
        assert float(result.heat_capacity[index]) == pytest.approx(oracle.cv(temperature) * r_ratio, rel=1e-6)
        assert float(result.entropy[index]) == pytest.approx(oracle.entropy(temperature) * r_ratio, rel=1e-5)
        assert float(result.internal_energy[index]) == pytest.approx(
            oracle.internal_energy(temperature) * r_ratio, rel=1e-6)
        assert float(result.free_energy[index]) == pytest.approx(
            oracle.helmholtz_free_energy(temperature) * r_ratio, rel=1e-5)


def test_units_by_name_give_the_same_result():
    dos = two_peak_dos()
    in_cm = dos_thermodynamics(GRID, dos, [77.0, 300.0], 3)
    in_thz = dos_thermodynamics(GRID / FREQUENCY_UNITS["THz"], dos, [77.0, 300.0], 3, unit="THz")
    in_mev = dos_thermodynamics(GRID / FREQUENCY_UNITS["meV"], dos, [77.0, 300.0], 3, unit="meV")
    for other in (in_thz, in_mev):
        torch.testing.assert_close(other.heat_capacity, in_cm.heat_capacity, rtol=1e-12, atol=0)
        torch.testing.assert_close(other.free_energy, in_cm.free_energy, rtol=1e-12, atol=0)


@pytest.mark.parametrize("low_frequency", ["linear", "debye"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_autograd_identities_and_finiteness(low_frequency, dtype):
    """C_v = ∂U/∂T, S = −∂F/∂T, U = F + TS; finite values and gradients for T in [0.1, 5000] K."""
    dos = two_peak_dos().to(dtype).requires_grad_(True)
    temperature = torch.tensor([0.1, 1.0, 30.0, 300.0, 5000.0], dtype=dtype, requires_grad=True)
    result = dos_thermodynamics(GRID.to(dtype), dos, temperature, 5, low_frequency=low_frequency)
    (d_energy,) = torch.autograd.grad(result.internal_energy.sum(), temperature, retain_graph=True)
    (d_free,) = torch.autograd.grad(result.free_energy.sum(), temperature, retain_graph=True)
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}
    torch.testing.assert_close(d_energy, result.heat_capacity, **tolerance)
    torch.testing.assert_close(-d_free, result.entropy, **tolerance)
    torch.testing.assert_close(result.free_energy + temperature * result.entropy, result.internal_energy,
                               rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-3)
    total = sum(value.sum() for value in result)
    (d_dos,) = torch.autograd.grad(total, dos)
    assert all(bool(torch.isfinite(value).all()) for value in result)
    assert bool(torch.isfinite(d_dos).all())


def test_limits_dulong_petit_and_zero_point_energy():
    dos = two_peak_dos()
    n_atoms = 7
    hot = dos_thermodynamics(GRID, dos, [1e6], n_atoms)
    assert float(hot.heat_capacity[0]) == pytest.approx(3 * n_atoms * GAS_CONSTANT, rel=1e-6)
    cold = dos_thermodynamics(GRID, dos, [0.1], n_atoms, low_frequency="debye")
    # zero-point energy: half of every mode's hc·ω·N_A = (R/2) ∫ θ(ω) g(ω) dω, with the onset's mean θ at 3/4 θ₁
    grid, g = GRID.numpy(), dos.numpy()
    scale = 3 * n_atoms / (np.trapezoid(g[1:], grid[1:]) + g[1] * grid[1] / 3)
    theta = KELVIN_PER_WAVENUMBER
    above = sum(  # ∫ ω g(ω) dω of each linear segment, exactly
        (right - left) * (left * (2 * gl + gr) + right * (gl + 2 * gr)) / 6
        for left, right, gl, gr in zip(grid[1:-1], grid[2:], g[1:-1], g[2:])
    )
    onset = g[1] * grid[1] ** 2 / 4
    zero_point = GAS_CONSTANT / 2 * theta * scale * (above + onset)
    assert float(cold.internal_energy[0]) == pytest.approx(zero_point, rel=1e-9)
    assert float(cold.entropy[0]) < 1e-4 and float(cold.heat_capacity[0]) < 1e-4


def test_debye_onset_gives_the_t_cubed_law():
    """Below the first bin the Debye onset is a Debye solid of g(ω₁)ω₁/3 modes: C_v ∝ T³ at T ≪ θ(ω₁)."""
    dos = two_peak_dos()
    result = dos_thermodynamics(GRID, dos, [0.5, 1.0], 2, low_frequency="debye")
    assert float(result.heat_capacity[1] / result.heat_capacity[0]) == pytest.approx(8.0, rel=1e-6)


def test_einstein_and_debye_closed_forms():
    frequency = torch.tensor([200.0], dtype=torch.float64)
    einstein = einstein_thermodynamics(frequency, torch.tensor([3.0], dtype=torch.float64), [100.0, 400.0])
    x = KELVIN_PER_WAVENUMBER * 200.0 / torch.tensor([100.0, 400.0], dtype=torch.float64)
    expected = 3 * GAS_CONSTANT * x**2 * torch.exp(x) / torch.expm1(x) ** 2
    torch.testing.assert_close(einstein.heat_capacity, expected, rtol=1e-12, atol=0)
    spectrum = debye_spectrum_thermodynamics(torch.tensor([300.0, 450.0], dtype=torch.float64), [50.0, 300.0], 2)
    theta = KELVIN_PER_WAVENUMBER * torch.tensor([[300.0], [450.0]], dtype=torch.float64)
    torch.testing.assert_close(spectrum.entropy, debye.entropy(theta, torch.tensor([50.0, 300.0]).double(), 2))


def test_equivalent_debye_temperature_inverts_debye_heat_capacity():
    theta = torch.tensor([150.0, 450.0, 1200.0], dtype=torch.float64)
    heat = debye.heat_capacity(theta, 300.0, 3)
    torch.testing.assert_close(equivalent_debye_temperature(heat, 300.0, 3), theta, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda grid, dos: (grid, torch.cat([dos, dos[:1]])), "dos has 52 values per row; the frequency grid has 51"),
        (lambda grid, dos: (grid, torch.stack([dos, dos.index_fill(0, torch.tensor([3]), math.nan)])),
         "dos row 1 has a NaN or infinite value at frequency index 3"),
        (lambda grid, dos: (grid, dos.index_fill(0, torch.tensor([5]), -0.1)),
         "dos row 0 has a negative value at frequency index 5"),
        (lambda grid, dos: (grid.index_fill(0, torch.tensor([10]), 150.0), dos),
         "strictly increasing; point 10 is 150.0"),
    ],
)
def test_bad_dos_names_the_row(change, message):
    grid, dos = change(GRID.clone(), two_peak_dos())
    with pytest.raises(CloudDataError, match=message.replace("(", r"\(")):
        dos_thermodynamics(grid, dos, [300.0], 2)


@pytest.mark.parametrize(("temperature", "n_atoms", "message"), [
    ([300.0, 0.0], 2, r"temperature must be finite and > 0 K, got \[0.0\]"),
    ([math.nan], 2, r"temperature must be finite and > 0 K, got \[nan\]"),
    ([300.0], [2, 0], r"n_atoms must be > 0; rows \[1\] have \[0.0\]"),
])
def test_bad_temperature_or_atom_count(temperature, n_atoms, message):
    dos = torch.stack([two_peak_dos(), two_peak_dos()])
    with pytest.raises(CloudDataError, match=message):
        dos_thermodynamics(GRID, dos, temperature, n_atoms)


def test_unknown_unit():
    with pytest.raises(CloudDataError, match="unknown frequency unit 'Hz'"):
        dos_thermodynamics(GRID, two_peak_dos(), [300.0], 2, unit="Hz")
