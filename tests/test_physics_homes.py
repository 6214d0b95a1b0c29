"""Each physical rule has one home: the heads, the labels and the checks call the physics modules instead of
re-deriving them (R, the onset rule, the mode count, quadrature, the validation of temperatures and atom counts)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudDataError
from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.modeling_cloud_thermo import CloudThermoModel, thermo_config
from cloud_hf.phonons import normalise_per_atom
from cloud_hf.spectra import spectrum_thermodynamics
from cloud_hf.thermodynamics import (
    debye_dos,
    debye_spectrum_thermodynamics,
    dos_modes,
    dos_thermodynamics,
    einstein_thermodynamics,
    normalise_dos,
)
from cloud_hf.units import GAS_CONSTANT, dulong_petit, per_atom, per_cell
from test_modeling_thermo import TINY, batch

SOURCE = Path(__file__).resolve().parents[1] / "src" / "cloud_hf"
TEMPERATURES = [5.0, 60.0, 300.0, 1500.0]


def thermo_model(head: str, members: int = 2) -> CloudThermoModel:
    torch.manual_seed(0)
    return CloudThermoModel(thermo_config(CloudConfig(**TINY), thermo_head=head, thermo_members=members)).eval()


# --- where each rule is written ----------------------------------------------------------------------------------

RULES = {
    "the gas constant R": (r"^GAS_CONSTANT\s*=", {"units.py"}),
    "hc/k": (r"^KELVIN_PER_WAVENUMBER\s*=", {"units.py"}),
    "modes per atom": (r"^MODES_PER_ATOM\s*=", {"units.py"}),
    "R times a mode or atom count": (r"GAS_CONSTANT \*|\* GAS_CONSTANT", {"units.py", "debye.py", "thermodynamics.py"}),
    "the onset rule g(ω₁)·ω₁/3": (r"\* (grid|omega)\[0\] / 3", {"thermodynamics.py"}),
    "Gauss–Legendre nodes": (r"leggauss|linalg\.eigh", {"quadrature.py"}),
    "the temperature range": (r"(MIN|MAX)_TEMPERATURE\s*=", {"validation.py"}),
    "the traced-graph rule": (r"is_compiling\(\)", {"validation.py"}),
    "per-atom values of a cell's": (r"(value|std|count) / (count|atoms)\b|\* atoms\)\.astype", set()),  # units.per_atom / per_cell do it
}


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_is_written_in_one_physics_module(rule):
    """The files of ``src/cloud_hf`` that write the rule's code are the physics modules named here: a change of it
    (R, the onset, the per-cell convention, the quadrature, the checks) touches those alone."""
    pattern, homes = RULES[rule]
    writers = {path.name for path in SOURCE.rglob("*.py")
               if re.search(pattern, path.read_text(encoding="utf-8"), flags=re.MULTILINE)}
    assert writers == homes


# --- the heads' thermodynamics are the physics modules' ----------------------------------------------------------

def test_dos_head_thermodynamics_are_dos_thermodynamics_of_its_spectrum():
    model = thermo_model("dos", members=1)
    n_atoms = torch.tensor([2, 5])
    output = model(**batch(), temperature=TEMPERATURES, n_atoms=n_atoms)
    direct = dos_thermodynamics(model.config.thermo_frequencies, output.dos, TEMPERATURES, n_atoms,
                                low_frequency="debye")
    for name in ("heat_capacity", "internal_energy", "entropy", "free_energy"):
        torch.testing.assert_close(getattr(output, name), getattr(direct, name), rtol=1e-6, atol=1e-5)


def test_debye_einstein_head_thermodynamics_are_the_debye_and_einstein_functions():
    model = thermo_model("debye-einstein")
    n_atoms = torch.tensor([2, 5])
    raw = torch.stack([member(**batch())[0] for member in model.members], 1)
    spectra = model._spectra(raw[..., :-1], n_atoms.float())
    temperature = torch.tensor([TEMPERATURES] * 2)
    acoustic = debye_spectrum_thermodynamics(spectra.debye_frequency, temperature[:, None, :], 1)
    optical = einstein_thermodynamics(spectra.einstein_frequencies, spectra.einstein_modes, temperature[:, None, :])
    expected = acoustic + optical
    through_head = spectrum_thermodynamics(spectra, model.config.thermo_frequencies, temperature, n_atoms)
    output = model(**batch(), temperature=TEMPERATURES, n_atoms=n_atoms)
    for name in ("heat_capacity", "internal_energy", "entropy", "free_energy"):
        torch.testing.assert_close(getattr(through_head, name), getattr(expected, name), rtol=0, atol=0)
    torch.testing.assert_close(output.member_heat_capacity, expected.heat_capacity, rtol=0, atol=0)
    # its displayed DOS is the Debye spectrum of the 3 acoustic modes
    grid = model.frequencies
    torch.testing.assert_close(output.dos, debye_dos(grid, spectra.debye_frequency).mean(1))


def test_a_debye_spectrum_integrated_as_a_dos_is_the_debye_closed_form():
    """The Debye DOS on a fine grid, through the tabulated-DOS path (Debye onset below the first point), agrees with
    the closed form: the two paths share R, hc/k and the mode count."""
    grid = torch.arange(0.25, 300.1, 0.25, dtype=torch.float64)  # the linear interpolant's error goes as step²
    cutoff = torch.tensor([300.0], dtype=torch.float64)
    temperatures = [10.0, 50.0, 300.0, 1000.0]
    tabulated = dos_thermodynamics(grid, debye_dos(grid, cutoff, modes=6.0), temperatures, 2, low_frequency="debye")
    closed = debye_spectrum_thermodynamics(cutoff, temperatures, 2)
    for name in ("heat_capacity", "internal_energy", "entropy", "free_energy"):
        torch.testing.assert_close(getattr(tabulated, name), getattr(closed, name), rtol=1e-4, atol=0)
    torch.testing.assert_close(closed.heat_capacity[0, -1], torch.tensor(dulong_petit(2.0), dtype=torch.float64),
                               rtol=2e-2, atol=0)


def test_labels_and_the_head_count_modes_alike():
    """``phonons.normalise_per_atom`` (numpy, the labels) and the head's ``normalise_dos`` (torch) are one rule:
    3 modes per atom, onset below the first point plus trapezoids."""
    grid = np.arange(20.0, 1001.0, 20.0)
    dos = np.random.default_rng(1).random((3, len(grid)))
    labels = normalise_per_atom(dos, grid)
    head = normalise_dos(torch.as_tensor(dos), torch.as_tensor(grid)).numpy()
    np.testing.assert_allclose(labels, head, rtol=1e-14)
    np.testing.assert_allclose(dos_modes(labels, grid), 3.0, rtol=1e-14)


def test_per_cell_and_per_atom_are_inverse_conventions():
    cells = np.array([[30.0, 60.0], [12.0, 24.0]])
    atoms = np.array([2.0, 4.0])
    np.testing.assert_array_equal(per_atom(cells, atoms), [[15.0, 30.0], [3.0, 6.0]])
    assert per_atom(30.0, 2) == 15.0 and per_cell(np.array([15.0, 30.0]), 2.0).tolist() == [30.0, 60.0]


def test_dulong_petit_is_three_n_r():
    assert dulong_petit(2.0) == 3.0 * GAS_CONSTANT * 2.0


# --- both heads validate through one module, with one error type ------------------------------------------------

def debye_model() -> CloudDebyeModel:
    torch.manual_seed(0)
    return CloudDebyeModel(CloudConfig(**TINY)).eval()


@pytest.mark.parametrize("make", [debye_model, lambda: thermo_model("dos")], ids=["debye", "thermo"])
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"temperature": 0.0}, r"temperature must be finite and > 0 K, got \[0.0\]"),
    ({"temperature": 2e6}, "temperature must lie between 0.001 K and 1e[+]06 K"),
    ({"temperature": 300.0, "n_atoms": torch.tensor([2, 0])}, r"n_atoms must be > 0; rows \[1\] have \[0.0\]"),
    ({"temperature": 300.0, "n_atoms": torch.tensor([2, float("inf")])}, r"n_atoms must be > 0; rows \[1\]"),
    ({"temperature": 300.0, "n_atoms": torch.tensor([2, 2, 2])}, "n_atoms has 3 entries for a batch of 2 crystals"),
    ({"heat_capacity_labels": torch.ones(2, 1)}, "need the `temperature` they were taken at"),
])
def test_both_heads_refuse_bad_inputs_with_the_same_data_error(make, kwargs, message):
    with pytest.raises(CloudDataError, match=message):
        make()(**batch(), **kwargs)
