"""Accuracy and speed of ``cloud_hf.debye`` against the reference CLOUD-DEBYE quadrature.

The reference code evaluates C_v and U with a 20-point Gauss–Legendre rule on ``[0, x_D]`` applied to the
textbook integrands ``x⁴eˣ/(eˣ−1)²`` and ``x³/(eˣ−1)`` (SPEC.md, "Reference CLOUD-DEBYE"); it is written out
below from that description. Both are compared with scipy adaptive quadrature in float64 over the range SPEC.md
asks for (θ_D 10–3000 K, T 0.1–5000 K) and timed on a crystals × temperatures batch, forward and backward.

    python benchmarks/bench_debye.py                       # full report, about a minute on two CPU cores
    python benchmarks/bench_debye.py --crystals 256 --temperatures 64 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy.integrate import quad

from cloud_hf.debye import GAS_CONSTANT, thermodynamics

THETAS = [10.0, 50.0, 150.0, 300.0, 600.0, 950.0, 1500.0, 3000.0]  # K
TEMPERATURES = np.geomspace(0.1, 5000.0, 25).tolist()  # K


def reference_heat_capacity_and_energy(
    theta_d: torch.Tensor, temperature: torch.Tensor, n_atoms: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference scheme: C_v (J/(mol·K)) and U (J/mol) by 20-point Gauss–Legendre on [0, x_D]."""
    nodes, weights = (torch.as_tensor(a, dtype=theta_d.dtype) for a in np.polynomial.legendre.leggauss(20))
    x_d = (theta_d / temperature).unsqueeze(-1)
    t = x_d / 2 * (nodes + 1)
    heat_integral = (x_d / 2 * weights * t**4 * torch.exp(t) / (torch.exp(t) - 1) ** 2).sum(-1)
    energy_integral = (x_d / 2 * weights * t**3 / (torch.exp(t) - 1)).sum(-1)
    reduced = (temperature / theta_d) ** 3
    heat_capacity = 9 * n_atoms * GAS_CONSTANT * reduced * heat_integral
    energy = 9 * n_atoms * GAS_CONSTANT * temperature * reduced * energy_integral
    return heat_capacity, energy + 9 / 8 * n_atoms * GAS_CONSTANT * theta_d


def cloud_hf_heat_capacity_and_energy(
    theta_d: torch.Tensor, temperature: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """C_v and U from ``cloud_hf.debye`` (S and F come with them at no extra D₃ evaluation)."""
    thermo = thermodynamics(theta_d, temperature)
    return thermo.heat_capacity, thermo.internal_energy


def scipy_heat_capacity_and_energy(theta_d: float, temperature: float) -> tuple[float, float]:
    """Adaptive-quadrature reference (float64, overflow-free integrands; negligible beyond t = 200)."""
    x_d = theta_d / temperature
    upper = min(x_d, 200.0)
    heat, _ = quad(
        lambda t: t**4 * np.exp(-t) / np.expm1(-t) ** 2, 0, upper, epsabs=0, epsrel=1e-12, limit=500
    )
    energy, _ = quad(lambda t: t**3 * np.exp(-t) / -np.expm1(-t), 0, upper, epsabs=0, epsrel=1e-12, limit=500)
    prefactor = 9 * GAS_CONSTANT / x_d**3
    return prefactor * heat, 9 / 8 * GAS_CONSTANT * theta_d + prefactor * temperature * energy


def accuracy_table() -> None:
    """Worst relative error against scipy, and the NaN count, of each implementation and dtype."""
    theta = torch.tensor(THETAS, dtype=torch.float64)[:, None]
    temperature = torch.tensor(TEMPERATURES, dtype=torch.float64)
    exact = np.array([[scipy_heat_capacity_and_energy(a, t) for t in TEMPERATURES] for a in THETAS])
    print(f"## Accuracy vs scipy.integrate.quad ({len(THETAS)} θ_D × {len(TEMPERATURES)} T, 0.1–5000 K)\n")
    print(
        "| implementation | dtype | max rel. error C_v (finite values) | max rel. error U (finite values) | non-finite values |"
    )
    print("|---|---|---|---|---|")
    implementations: dict[str, Callable] = {
        "reference (20-pt GL on [0, x_D])": reference_heat_capacity_and_energy,
        "cloud_hf.debye": cloud_hf_heat_capacity_and_energy,
    }
    for name, function in implementations.items():
        for dtype in (torch.float64, torch.float32):
            heat, energy = (v.double().numpy() for v in function(theta.to(dtype), temperature.to(dtype)))
            bad = int((~np.isfinite(heat)).sum() + (~np.isfinite(energy)).sum())
            heat_error = np.nanmax(np.abs(heat / exact[..., 0] - 1))
            energy_error = np.nanmax(np.abs(energy / exact[..., 1] - 1))
            print(
                f"| {name} | {str(dtype).removeprefix('torch.')} | {heat_error:.1e} | {energy_error:.1e} | {bad} of {heat.size + energy.size} |"
            )
    print()


def reference_failure_points() -> None:
    """Where the reference scheme breaks: float32 NaN onset and float64 low-T error for θ_D = 950 K."""
    theta_d = 950.0
    grid = torch.linspace(0.1, 40.0, 3991)
    heat32, _ = reference_heat_capacity_and_energy(torch.tensor(theta_d), grid)
    nan_below = grid[~torch.isfinite(heat32)].max().item()
    print(f"## Reference failure points (θ_D = {theta_d:.0f} K)\n")
    print(f"- float32: C_v is NaN for every T ≤ {nan_below:.2f} K (x_D = θ_D/T > {theta_d / nan_below:.0f}).")
    ours32, _ = cloud_hf_heat_capacity_and_energy(torch.tensor(theta_d), grid)
    print(
        f"- cloud_hf.debye float32 on the same grid: {int((~torch.isfinite(ours32)).sum())} non-finite values."
    )
    for temperature in (5.0, 11.0, 20.0, 40.0, 80.0):
        exact, _ = scipy_heat_capacity_and_energy(theta_d, temperature)
        reference, _ = reference_heat_capacity_and_energy(
            torch.tensor(theta_d, dtype=torch.float64), torch.tensor(temperature, dtype=torch.float64)
        )
        ours, _ = cloud_hf_heat_capacity_and_energy(
            torch.tensor(theta_d, dtype=torch.float64), torch.tensor(temperature, dtype=torch.float64)
        )
        print(
            f"- T = {temperature:>4.0f} K, float64: C_v relative error reference {abs(reference.item() / exact - 1):.1e}, "
            f"cloud_hf {abs(ours.item() / exact - 1):.1e}"
        )
    print()


def _median_seconds(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up (node tables, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed_table(num_crystals: int, num_temperatures: int, repeats: int) -> None:
    """Median wall time of C_v + U on a crystals × temperatures float32 batch, forward and forward+backward."""
    generator = torch.Generator().manual_seed(0)
    theta = (10.0 + 2990.0 * torch.rand(num_crystals, 1, generator=generator)).requires_grad_()
    temperature = torch.linspace(100.0, 1000.0, num_temperatures)  # a range where the reference is finite
    print(
        f"## Speed: {num_crystals} crystals × {num_temperatures} temperatures, float32, "
        f"{torch.get_num_threads()} threads, median of {repeats}\n"
    )
    print("| implementation | forward (ms) | forward + backward (ms) |")
    print("|---|---|---|")
    for name, function in (
        ("reference (C_v, U)", reference_heat_capacity_and_energy),
        ("cloud_hf.debye (C_v, U, S, F)", cloud_hf_heat_capacity_and_energy),
    ):

        def forward(function=function) -> None:
            with torch.no_grad():
                function(theta, temperature)

        def forward_backward(function=function) -> None:
            heat, energy = function(theta, temperature)
            torch.autograd.grad((heat.sum() + energy.sum()), theta)

        print(
            f"| {name} | {_median_seconds(forward, repeats) * 1e3:.2f} | "
            f"{_median_seconds(forward_backward, repeats) * 1e3:.2f} |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crystals", type=int, default=1024, help="crystals in the timed batch")
    parser.add_argument(
        "--temperatures", type=int, default=256, help="temperatures per crystal in the timed batch"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions (the median is reported)")
    arguments = parser.parse_args()
    print(f"# Debye thermodynamics benchmark (torch {torch.__version__}, R = {GAS_CONSTANT} J/(mol·K))\n")
    accuracy_table()
    reference_failure_points()
    speed_table(arguments.crystals, arguments.temperatures, arguments.repeats)


if __name__ == "__main__":
    main()
