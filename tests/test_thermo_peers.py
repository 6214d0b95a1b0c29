"""The heat-capacity benchmark's peers (``benchmarks/thermo_peers.py``): features, NaN-label handling, the cache."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from cloud_hf.phonons import PhononCrystals
from thermo_peers import (
    GB_FEATURES,
    STRONG_FEATURES,
    ColumnRegressors,
    column_mae,
    crystal_features,
    peer_features,
    strong_peer,
)

ROCK_SALT = """data_NaCl
_cell_length_a 3.98
_cell_length_b 3.98
_cell_length_c 3.98
_cell_angle_alpha 60
_cell_angle_beta 60
_cell_angle_gamma 60
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na Na1 0 0 0
Cl Cl1 0.5 0.5 0.5
"""


def crystals_of(cifs: list[str]) -> PhononCrystals:
    n = len(cifs)
    return PhononCrystals(ids=[f"x-{i}" for i in range(n)], sources=["phonondb"] * n, formulas=["NaCl"] * n,
                          n_atoms=np.full(n, 2.0), cifs=cifs, all_metal=np.zeros(n, bool),
                          imaginary_fraction=np.zeros(n), frequencies=np.array([10.0, 20.0]), dos=np.zeros((n, 2)),
                          temperatures=np.array([300.0]), heat_capacity=np.full((n, 1), 20.0),
                          entropy=np.full((n, 1), 30.0))


def test_rock_salt_features() -> None:
    gradient_boosting, strong, failures = crystal_features(ROCK_SALT, "NaCl")
    assert failures == []
    named = dict(zip(STRONG_FEATURES, strong))
    assert named["space_group"] == 225 and gradient_boosting[GB_FEATURES.index("space_group")] == 225
    assert named["mean_Z"] == pytest.approx(14.0) and named["std_Z"] == pytest.approx(3.0)
    assert named["atoms_per_cell"] == 2 and named["light_share"] == 0.0
    # the fcc primitive vectors are a/√2 long: the Na–Cl distance a/2 is 3.98·√2/2 Å
    assert np.exp(named["ln_min_neighbour_distance"]) == pytest.approx(3.98 * 2 ** 0.5 / 2, rel=1e-4)


def test_unreadable_cif_gives_nan_features_and_a_counted_failure() -> None:
    gradient_boosting, strong, failures = crystal_features("not a cif", "broken")
    assert np.isnan(gradient_boosting).all() and np.isnan(strong).all()
    assert len(failures) == 1 and failures[0].startswith("broken: cif:")


def test_features_are_cached_and_a_subset_is_read_back(tmp_path: Path) -> None:
    crystals = crystals_of([ROCK_SALT, ROCK_SALT.replace("3.98", "4.10")])
    first = peer_features(crystals, cache_dir=tmp_path)
    assert not first.cached and len(list(tmp_path.glob("peer_features_*.npz"))) == 1
    again = peer_features(crystals.select([1]), cache_dir=tmp_path)
    assert again.cached and np.array_equal(again.strong, first.strong[[1]])
    assert len(list(tmp_path.glob("peer_features_*.npz"))) == 1  # read from the superset, nothing new written


def test_each_column_trains_on_its_labelled_rows_only() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 3))
    labels = np.column_stack([features[:, 0], np.where(np.arange(200) % 2 == 0, np.nan, 1.0), np.full(200, np.nan)])
    predicted = ColumnRegressors(strong_peer).fit(features, labels).predict(features)
    assert np.isfinite(predicted[:, :2]).all() and np.isnan(predicted[:, 2]).all()
    assert predicted[:, 1] == pytest.approx(1.0)
    assert np.isnan(column_mae(predicted, labels)[2])  # no labels in that column
