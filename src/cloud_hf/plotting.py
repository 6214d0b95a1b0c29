"""Plots of thermodynamics and of trained models: Debye C_v(T) and U(T) curves of crystals with known or
predicted θ_D (:func:`plot_thermo_curves`), a thermodynamics model's predicted C_v(T) with its ±2σ band next to
its predicted phonon DOS (:func:`plot_model_thermo`, per atom by default), and predicted-versus-true parity plots
(:func:`plot_parity`).

Uses matplotlib's object API with the Agg canvas (no display, no global pyplot state), so it runs in scripts,
tests and servers alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from cloud_hf.debye import thermodynamics
from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.units import dulong_petit

PLOT_FORMATS = ("png", "pdf", "svg")
"""Image formats a plot is written in, named by the file's suffix."""

DEFAULT_PLOT_TEMPERATURES = torch.linspace(1.0, 1000.0, 400, dtype=torch.float64)
"""Temperatures (K) of :func:`plot_thermo_curves` when none are given: 1 K to 1000 K."""


def plot_thermo_curves(
    theta_D: Mapping[str, float],
    n_atoms: int | Mapping[str, int] = 1,
    temperatures: Sequence[float] | torch.Tensor | None = None,
    path: str | Path = "debye_curves.png",
) -> Path:
    """Draw Debye C_v(T) and U(T) of each crystal side by side and save them (PNG, PDF or SVG, by the suffix).

    Args:
        theta_D: crystal name → Debye temperature θ_D in K (> 0), e.g. ``{"Si": 645.0, "NaCl": 321.0}``.
        n_atoms: atoms per cell N, one number for all crystals or one per name; the curves are per mole of
            cells, and each crystal's Dulong–Petit value 3NR is drawn as a dashed line of its colour.
        temperatures: temperatures in K (> 0) of the curves; default 1 K to 1000 K.
        path: output image, .png, .pdf or .svg (parent folders are created).

    Returns:
        The path of the written image.

    Raises:
        ValueError: no crystal, or a θ_D, atom count or temperature that is not positive (the crystal is named).
    """
    if not theta_D:
        raise ValueError("plot_thermo_curves needs at least one crystal in theta_D")
    temperature = (
        DEFAULT_PLOT_TEMPERATURES
        if temperatures is None
        else torch.as_tensor(temperatures, dtype=torch.float64).reshape(-1)
    )
    if temperature.numel() == 0 or not bool((temperature > 0).all()):
        raise CloudConfigError(f"temperatures must be > 0 K, got {temperature.tolist()[:8]}")

    figure = Figure(figsize=(11, 4.5), layout="constrained")
    heat_axes, energy_axes = figure.subplots(1, 2)
    for index, (name, theta) in enumerate(theta_D.items()):
        atoms = n_atoms[name] if isinstance(n_atoms, Mapping) else n_atoms
        if not theta > 0:
            raise ValueError(f"crystal {name!r}: θ_D must be > 0 K, got {theta}")
        if not atoms > 0:
            raise ValueError(f"crystal {name!r}: n_atoms must be > 0, got {atoms}")
        thermo = thermodynamics(float(theta), temperature, int(atoms))
        colour = f"C{index % 10}"
        label = f"{name} ($θ_D$ = {theta:.0f} K, N = {atoms})"
        heat_axes.plot(temperature, thermo.heat_capacity, color=colour, label=label)
        heat_axes.axhline(dulong_petit(atoms), color=colour, linestyle="--", linewidth=0.8)
        energy_axes.plot(temperature, thermo.internal_energy / 1000.0, color=colour, label=label)

    per = quantity_basis(_atom_counts(theta_D, n_atoms))
    heat_axes.set(xlabel="T (K)", ylabel=f"$C_V$ (J/(mol·K), {per})", title="Heat capacity")
    heat_axes.set_ylim(bottom=0)
    heat_axes.plot([], [], color="grey", linestyle="--", linewidth=0.8, label="Dulong–Petit 3NR")
    heat_axes.legend(fontsize="small")
    energy_axes.set(xlabel="T (K)", ylabel=f"$U$ (kJ/mol, {per})", title="Internal energy (incl. zero-point)")
    energy_axes.legend(fontsize="small")

    path = Path(path)
    save_figure(figure, path, dpi=120)
    return path


def plot_parity(
    labels: Sequence[float] | torch.Tensor,
    predictions: Sequence[float] | torch.Tensor,
    path: str | Path,
    *,
    quantity: str,
    units: str = "",
    title: str = "",
    scores: Mapping[str, float] | None = None,
) -> Path:
    """Save a predicted-versus-true scatter plot (PNG, PDF or SVG) with the y = x line.

    Args:
        labels, predictions: true and predicted values of one quantity, same length, in ``units``.
        path: output image, .png, .pdf or .svg (parent folders are created).
        quantity: the quantity's name for the axes (e.g. ``"θ_D"``); ``units`` its units (e.g. ``"K"``).
        title: the plot title; ``scores``: e.g. ``{"MAE": 12.3, "R²": 0.78}``, shown in the legend.

    Returns:
        The path of the written image.
    """
    labels = torch.as_tensor(labels, dtype=torch.float64).reshape(-1)
    predictions = torch.as_tensor(predictions, dtype=torch.float64).reshape(-1)
    if labels.numel() == 0 or labels.shape != predictions.shape:
        raise ValueError(f"plot_parity needs as many predictions as labels (> 0), got {predictions.numel()} "
                         f"and {labels.numel()}")
    low = float(torch.minimum(labels.min(), predictions.min()))
    high = float(torch.maximum(labels.max(), predictions.max()))
    legend = ", ".join(f"{name} {value:.3g}" for name, value in (scores or {}).items())
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.subplots()
    axes.plot([low, high], [low, high], color="grey", linewidth=1, label="y = x")
    axes.scatter(labels, predictions, s=8, alpha=0.6, label=f"{legend}{', ' if legend else ''}n={labels.numel()}")
    unit = f" ({units})" if units else ""
    axes.set(xlabel=f"true {quantity}{unit}", ylabel=f"predicted {quantity}{unit}", title=title)
    axes.legend(loc="upper left", fontsize=8)
    path = Path(path)
    save_figure(figure, path, dpi=150)
    return path


def plot_format(path: str | Path) -> str:
    """The image format named by ``path``'s suffix (one of :data:`PLOT_FORMATS`); :class:`CloudConfigError`
    naming the path otherwise."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise CloudConfigError(f"{path}: a plot is written as {', '.join('.' + f for f in PLOT_FORMATS)}; "
                               f"the suffix {Path(path).suffix or '(none)'} names none of them")
    return suffix


def save_figure(figure: Figure, path: str | Path, dpi: int) -> None:
    """Write ``figure`` in the format its suffix names (PNG, PDF or SVG; ``dpi`` for PNG), creating parent
    folders."""
    path = Path(path)
    image_format = plot_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=image_format, dpi=dpi)


def quantity_basis(atom_counts: Sequence[float]) -> str:
    """The axis wording of extensive quantities: "per mole of atoms" when every curve is for one atom (N = 1)."""
    return "per mole of atoms" if all(count == 1 for count in atom_counts) else "per mole of cells"


def _atom_counts(theta_D: Mapping[str, float], n_atoms: int | Mapping[str, int]) -> list[int]:
    return [n_atoms[name] if isinstance(n_atoms, Mapping) else n_atoms for name in theta_D]


def plot_model_thermo(
    model: Any,
    tokenizer: Any,
    crystals: Sequence[tuple[str, str, int]],
    path: str | Path = "thermo_curves.png",
    temperatures: Sequence[float] | torch.Tensor | None = None,
    per_atom: bool = True,
    features: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Draw a thermodynamics model's C_v(T) (mean with its ±2σ band) beside its predicted phonon DOS.

    Args:
        model: a ``CloudThermoModel`` (its outputs carry ``heat_capacity_std``, ``frequencies`` and ``dos``).
        tokenizer: the model's tokenizer.
        crystals: ``(name, SCOPE string, atoms per cell)`` of each crystal.
        path: output image, .png, .pdf or .svg (parent folders are created).
        temperatures: temperatures in K (> 0) of the curves; default 1 K to 1000 K.
        per_atom: C_v and DOS per mole of atoms (default; curves of different cells are comparable) or per cell.
        features: the crystals' structure features by model input name, `(n, size)` each (what a processor
            returns beside the tokens, e.g. ``cell_features``), for a model that reads them.

    Returns:
        The path of the written image. The legends sit outside the axes, so they never cover the curves.
    """
    if not crystals:
        raise CloudDataError("plot_model_thermo needs at least one crystal")
    temperature = (DEFAULT_PLOT_TEMPERATURES.float() if temperatures is None
                   else torch.as_tensor(temperatures, dtype=torch.float32).reshape(-1))
    if temperature.numel() == 0 or not bool((temperature > 0).all()):
        raise CloudConfigError(f"temperatures must be > 0 K, got {temperature.tolist()[:8]}")
    names, scopes, atoms = zip(*crystals)
    encoded = tokenizer(list(scopes), padding=True, return_tensors="pt")
    n_atoms = torch.tensor([float(count) for count in atoms])
    model.eval()
    with torch.no_grad():
        output = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                       temperature=temperature.expand(len(names), -1), n_atoms=n_atoms,
                       **(features or {}))
    divisor = n_atoms[:, None] if per_atom else torch.ones_like(n_atoms)[:, None]
    heat, heat_std = output.heat_capacity / divisor, output.heat_capacity_std / divisor
    dos, dos_std = output.dos / divisor, output.dos_std / divisor
    per = quantity_basis([1] if per_atom else [2])

    figure = Figure(figsize=(12, 4.8), layout="constrained")
    heat_axes, dos_axes = figure.subplots(1, 2)
    for index, name in enumerate(names):
        colour = f"C{index % 10}"
        heat_axes.plot(temperature, heat[index], color=colour, label=f"{name} (N = {atoms[index]})")
        # a harmonic C_v lies in [0, 3NR]: the band is clipped there (mean ± 2σ of a wide ensemble can cross it)
        ceiling = dulong_petit(1.0 if per_atom else float(atoms[index]))
        heat_axes.fill_between(temperature, (heat[index] - 2 * heat_std[index]).clamp(min=0),
                               (heat[index] + 2 * heat_std[index]).clamp(max=ceiling),
                               color=colour, alpha=0.2, linewidth=0)
        dos_axes.plot(output.frequencies, dos[index], color=colour)
        dos_axes.fill_between(output.frequencies, (dos[index] - 2 * dos_std[index]).clamp(min=0),
                              dos[index] + 2 * dos_std[index], color=colour, alpha=0.2, linewidth=0)
    if per_atom:
        heat_axes.axhline(dulong_petit(1.0), color="grey", linestyle="--", linewidth=0.8, label="Dulong–Petit 3R")
    heat_axes.set(xlabel="T (K)", ylabel=f"$C_V$ (J/(mol·K), {per})", title="Heat capacity (band: ±2σ)")
    heat_axes.set_ylim(bottom=0)
    dos_axes.set(xlabel="ω (cm$^{-1}$)", ylabel=f"g(ω) (modes per cm$^{{-1}}$, {per})",
                 title="Predicted phonon DOS (band: ±2σ)")
    dos_axes.set_ylim(bottom=0)
    figure.legend(*heat_axes.get_legend_handles_labels(), loc="outside lower center",
                  ncols=min(4, len(names) + 1), fontsize="small")
    path = Path(path)
    save_figure(figure, path, dpi=120)
    return path


__all__ = ["DEFAULT_PLOT_TEMPERATURES", "plot_model_thermo", "plot_parity", "plot_thermo_curves", "quantity_basis"]
