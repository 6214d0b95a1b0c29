"""The phonon crystals of every source: the phonondb and JARVIS readers, the wide DOS grid, bad rows, the unstable
rule and the committed test split of every source."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pymatgen.core import Lattice, Structure

from cloud_hf.errors import CloudDataError
from cloud_hf.phonons import (
    DEFAULT_PHONON_FILE,
    DEFAULT_SOURCES_TEST_IDS_FILE,
    DEFAULT_TEST_IDS_FILE,
    JARVIS_METALS_FILE,
    LABEL_TEMPERATURES,
    PHONONDB_FILE,
    WIDE_FREQUENCIES,
    crystals_splits,
    histogram_to_grid,
    is_all_metal,
    load_phonon_crystals,
    normalise_per_atom,
    read_jarvis_metals,
    read_phonondb,
    read_split_ids,
)
from cloud_hf.thermodynamics import dos_thermodynamics

needs_data = pytest.mark.skipif(not (PHONONDB_FILE.is_file() and JARVIS_METALS_FILE.is_file()
                                     and DEFAULT_PHONON_FILE.is_file()),
                                reason=f"the phonon data ({PHONONDB_FILE.parent}) is not present")
NACL_CIF = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
    fmt="cif")


@pytest.fixture(scope="module")
def crystals():
    return load_phonon_crystals(max_imaginary_fraction=None)


def test_wide_grid_reaches_4000_cm1_with_the_petretto_points_below_1000():
    assert WIDE_FREQUENCIES[0] == 20.0 and WIDE_FREQUENCIES[-1] == 4000.0
    assert WIDE_FREQUENCIES[:50] == [float(w) for w in range(20, 1001, 20)]
    assert np.all(np.diff(WIDE_FREQUENCIES) > 0)


def test_histogram_to_grid_keeps_every_mode_and_a_flat_density():
    grid = np.asarray(WIDE_FREQUENCIES)
    flat = np.full(400, 0.0075)  # 3 modes spread evenly over 0-4000 cm⁻¹ in 10 cm⁻¹ bins
    np.testing.assert_allclose(histogram_to_grid(flat, 10.0, grid)[:-1], 0.0075, rtol=1e-12)
    # a narrow O–H-like peak at 3610-3620 cm⁻¹ keeps its modes on the 50 cm⁻¹ part of the grid
    peak = np.zeros(400)
    peak[361] = 0.1  # 1 mode
    points = histogram_to_grid(peak, 10.0, grid)
    cells = np.diff(np.r_[grid[0] - 10.0, (grid[1:] + grid[:-1]) / 2, grid[-1] + 25.0])
    assert float((points * cells).sum()) == pytest.approx(1.0, rel=1e-12)
    assert grid[np.argmax(points)] == 3600.0


def test_normalise_per_atom_counts_three_modes_as_the_head_does():
    grid = np.asarray(WIDE_FREQUENCIES)
    dos = normalise_per_atom(np.random.default_rng(0).random((3, len(grid))), grid)
    modes = dos[:, 0] * grid[0] / 3.0 + np.trapezoid(dos, grid, axis=1)
    np.testing.assert_allclose(modes, 3.0, rtol=1e-12)


def test_all_metal_rule():
    assert is_all_metal(["Al", "Cu"]) and is_all_metal(["Be"])
    assert not is_all_metal(["Al", "B"]) and not is_all_metal(["Si"]) and not is_all_metal(["Fe", "Te"])


def _phonondb_row(mp_id: str, dos, heat=None, entropy=None, fraction: float = 0.0) -> dict:
    heat = heat if heat is not None else [20.0] * len(LABEL_TEMPERATURES)
    entropy = entropy if entropy is not None else [30.0] * len(LABEL_TEMPERATURES)
    return {"mp_id": mp_id, "formula": "NaCl", "n_atoms": 2, "all_metal": False, "cif": NACL_CIF, "nac": False,
            "min_frequency_cm1": 0.0, "max_frequency_cm1": 300.0, "imaginary_mode_fraction": fraction,
            "cv_per_atom": json.dumps(heat), "entropy_per_atom": json.dumps(entropy),
            "free_energy_per_atom_kj": "[]", "dos": json.dumps(dos)}


def test_phonondb_reader_reports_malformed_rows_and_keeps_the_rest(tmp_path):
    good = [0.01] * 30
    rows = [
        _phonondb_row("mp-1", good),
        _phonondb_row("mp-2", [0.01, float("nan"), 0.01]),
        _phonondb_row("mp-3", [0.01, -0.5, 0.01]),
        _phonondb_row("mp-4", []),
        _phonondb_row("mp-5", good, heat=[20.0] * 3),
        _phonondb_row("mp-6", good, entropy=[float("nan")] * len(LABEL_TEMPERATURES)),
        _phonondb_row("mp-7", good, fraction=0.2),
    ]
    path = tmp_path / "phonondb.csv.gz"
    pd.DataFrame(rows).to_csv(path, index=False)
    crystals, bad = read_phonondb(path)
    assert crystals.ids == ["mp-1", "mp-7"] and crystals.sources == ["phonondb", "phonondb"]
    assert [(row.id, row.row, row.reason) for row in bad] == [
        ("mp-2", 1, "DOS has NaN or infinite values"),
        ("mp-3", 2, "DOS has negative values"),
        ("mp-4", 3, "empty DOS"),
        ("mp-5", 4, f"cv_per_atom has 3 values, expected {len(LABEL_TEMPERATURES)}"),
        ("mp-6", 5, "entropy_per_atom has NaN or infinite values"),
    ]
    np.testing.assert_allclose(crystals.heat_capacity[0], 20.0)
    # the unstable rule leaves mp-7 out, with its reason, per source
    table, left_out = load_phonon_crystals(None, path, None, max_imaginary_fraction=0.005)
    assert table.ids == ["mp-1"]
    assert left_out[-1].id == "mp-7" and left_out[-1].reason == "unstable: 20.00% imaginary modes (> 0.50%)"


def test_phonondb_reader_names_missing_columns_and_files(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame([{"mp_id": "mp-1"}]).to_csv(path, index=False)
    with pytest.raises(CloudDataError, match="missing columns"):
        read_phonondb(path)
    with pytest.raises(CloudDataError, match="phonondb file not found"):
        read_phonondb(tmp_path / "none.csv.gz")


def test_jarvis_reader_puts_the_label_at_300_k_only(tmp_path):
    path = tmp_path / "jarvis.csv"
    pd.DataFrame([{"jid": "JVASP-1", "formula": "Al", "n_atoms": 1, "cif": NACL_CIF, "cv_300_per_atom": 24.0},
                  {"jid": "JVASP-2", "formula": "Cu", "n_atoms": 1, "cif": NACL_CIF, "cv_300_per_atom": None}]
                 ).to_csv(path, index=False)
    crystals, bad = read_jarvis_metals(path)
    assert crystals.ids == ["JVASP-1"] and bool(crystals.all_metal[0])
    assert [(row.id, row.reason) for row in bad] == [("JVASP-2", "cv_300_per_atom is missing or not finite")]
    column = list(LABEL_TEMPERATURES).index(300.0)
    assert crystals.heat_capacity[0, column] == 24.0
    assert np.isnan(np.delete(crystals.heat_capacity[0], column)).all() and np.isnan(crystals.dos).all()


@needs_data
def test_every_source_is_read_into_one_table(crystals):
    table, bad = crystals
    assert bad == []
    assert table.sources.count("phonondb") == 7538 and table.sources.count("petretto") == 1047
    assert table.sources.count("jarvis") == 172
    assert len(set(zip(table.sources, table.ids))) == len(table)  # ids are unique within a source


@needs_data
def test_wide_grid_dos_reproduces_phonopy_heat_capacity(crystals):
    """A head that predicted the phonondb DOS labels on the wide grid would reproduce phonopy's C_v labels: mean
    |difference| per atom ≤ 0.02 J/(mol·K) at 300 K (measured 0.012) on the stable crystals."""
    table, _ = crystals
    stable = table.where(table.source_mask("phonondb") & (table.imaginary_fraction <= 0.005))
    stable = stable.select(range(0, len(stable), 5))
    result = dos_thermodynamics(torch.as_tensor(stable.frequencies), torch.as_tensor(stable.dos),
                                torch.as_tensor(stable.temperatures), 1.0, low_frequency="debye")
    error = np.abs(result.heat_capacity.numpy() - stable.heat_capacity)
    assert error[:, stable.label_column(300.0)].mean() < 0.02
    assert error[:, stable.label_column(1000.0)].mean() < 0.02


@needs_data
def test_committed_test_split_of_every_source(crystals):
    table, _ = crystals
    test_ids = set(read_split_ids(DEFAULT_SOURCES_TEST_IDS_FILE))
    assert set(read_split_ids(DEFAULT_TEST_IDS_FILE)) <= test_ids  # the 160 Petretto test ids
    phonondb = {i for i, s in zip(table.ids, table.sources) if s == "phonondb"}
    jarvis = {i for i, s in zip(table.ids, table.sources) if s == "jarvis"}
    assert len(test_ids & phonondb) >= 1000 and len(test_ids & jarvis) >= 50
    train, validation, test = crystals_splits(table, holdout_elements=["Be"])
    assert set(test.ids) <= test_ids and not (set(train.ids) & test_ids) and not (set(validation.ids) & test_ids)
    assert not set(train.ids) & set(validation.ids)  # a crystal's records of every source on one side
    assert not any("Be" in formula for formula in train.formulas)
    assert len(train) + len(validation) + len(test) == len(table)


@given(bins=st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=120),
       steps=st.lists(st.floats(1.0, 80.0, allow_nan=False), min_size=2, max_size=40))
@settings(max_examples=60, deadline=None)
def test_histogram_to_grid_keeps_the_modes_on_any_grid(bins, steps):
    """Property: on any increasing grid that covers the histogram, the point values times their cells hold every
    mode of the bins (10 cm⁻¹ wide), and no value is negative."""
    density = np.asarray(bins)
    grid = 20.0 + np.cumsum(steps)
    grid = grid[grid >= 0]
    middle = (grid[1:] + grid[:-1]) / 2.0
    edges = np.clip(np.r_[grid[0] - (middle[0] - grid[0]), middle, grid[-1] + (grid[-1] - middle[-1])], 0.0, None)
    points = histogram_to_grid(density, 10.0, grid)
    assert (points >= 0).all()
    covered = np.interp(edges[-1], np.arange(len(density) + 1) * 10.0,
                        np.r_[0.0, np.cumsum(density * 10.0)]) - np.interp(
        edges[0], np.arange(len(density) + 1) * 10.0, np.r_[0.0, np.cumsum(density * 10.0)])
    assert float((points * np.diff(edges)).sum()) == pytest.approx(covered, rel=1e-9, abs=1e-9)


def test_crystal_metrics_skip_missing_labels_and_split_by_source_and_metals():
    from cloud_hf.phonons import PhononCrystals
    from cloud_hf.training.thermo_evaluation import crystal_split_metrics

    temperatures = np.asarray(LABEL_TEMPERATURES)
    truth = np.full((3, len(temperatures)), 20.0)
    truth[2] = np.nan  # a JARVIS metal: C_v at 300 K only
    truth[2, list(temperatures).index(300.0)] = 23.0
    crystals = PhononCrystals(ids=["a", "b", "c"], sources=["phonondb", "petretto", "jarvis"],
                              formulas=["NaCl", "MgO", "Al"], n_atoms=np.ones(3), cifs=[""] * 3,
                              all_metal=np.asarray([False, False, True]), imaginary_fraction=np.zeros(3),
                              frequencies=np.asarray([20.0, 40.0]), dos=np.zeros((3, 2)), temperatures=temperatures,
                              heat_capacity=truth, entropy=truth.copy())
    predicted = np.asarray([[21.0, 21.0], [19.5, 19.5], [22.0, 22.0]])  # at 50 and 300 K
    std = np.asarray([[0.4, 0.4], [0.6, 0.6], [0.6, 0.6]])
    prediction = {"heat_capacity": predicted, "heat_capacity_std": std, "entropy": predicted, "entropy_std": std}
    metrics = crystal_split_metrics(prediction, crystals, [50.0, 300.0])
    assert metrics["cv_mae_50K"] == pytest.approx(0.75)  # (1 + 0.5) / 2: the metal has no 50 K label
    assert metrics["cv_mae_300K"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert metrics["cv_within_2sigma_300K"] == pytest.approx(2 / 3)  # the first: |error| 1.0 > 2 × 0.4
    assert metrics["phonondb_cv_mae_300K"] == 1.0 and metrics["petretto_cv_mae_300K"] == 0.5
    assert metrics["metals_n"] == 1 and metrics["metals_cv_mae_300K"] == 1.0 and "metals_cv_mae_50K" not in metrics
    assert "jarvis_n" not in metrics  # metals are reported apart, not as a source of non-metals
