"""The phonon table reader, its DOS-derived labels, the cloud_cv join and the committed test split."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from cloud_hf.errors import CloudDataError
from cloud_hf.phonons import (
    DEFAULT_PHONON_FILE,
    DEFAULT_TEST_IDS_FILE,
    TEST_SPLIT_SEED,
    TEST_SPLIT_SIZE,
    join_cloud_cv,
    load_phonon_table,
    phonon_splits,
    read_split_ids,
    write_test_split,
)

needs_data = pytest.mark.skipif(not DEFAULT_PHONON_FILE.is_file(), reason=f"{DEFAULT_PHONON_FILE} is not present")
CLOUD_CV = DEFAULT_PHONON_FILE.parents[1] / "reference" / "cloud_cv_train_and_val.csv"


@pytest.fixture(scope="module")
def table():
    return load_phonon_table()


@needs_data
def test_every_row_is_read_and_normalised_to_3n_modes(table):
    assert len(table) == 1047 and len(set(table.mp_ids)) == 1047
    modes = np.trapezoid(table.dos, table.frequencies, axis=1)
    np.testing.assert_allclose(modes, 3 * table.n_atoms, rtol=1e-12)
    # 3 modes per atom counted as the head and the C_v/S labels count them: Debye onset below 20 cm⁻¹ + trapezoids
    per_atom = table.per_atom_dos()[:, 1:]
    grid = table.frequencies[1:]
    modes = per_atom[:, 0] * grid[0] / 3.0 + np.trapezoid(per_atom, grid, axis=1)
    np.testing.assert_allclose(modes, 3.0, rtol=1e-12)
    assert table.frequencies[0] == 0 and table.frequencies[-1] == 1000 and len(table.frequencies) == 51


@needs_data
def test_dos_labels_integrate_to_the_heat_capacity_and_entropy_labels(table):
    """A head that predicted the DOS labels exactly (on its grid from 20 cm⁻¹, Debye onset below, per atom × N)
    would reproduce the C_v and S labels: the two label kinds never pull the head apart."""
    import torch

    from cloud_hf.thermodynamics import dos_thermodynamics

    rows = slice(0, 200)
    temperatures = [10.0, 50.0, 300.0, 800.0]
    heat, entropy = table.thermo_labels(temperatures)
    per_cell = torch.as_tensor(table.per_atom_dos()[rows, 1:] * table.n_atoms[rows, None])
    result = dos_thermodynamics(torch.as_tensor(table.frequencies[1:]), per_cell,
                                torch.tensor(temperatures, dtype=torch.float64),
                                torch.as_tensor(table.n_atoms[rows]), low_frequency="debye")
    np.testing.assert_allclose(result.heat_capacity.numpy(), heat[rows], rtol=1e-10)
    np.testing.assert_allclose(result.entropy.numpy(), entropy[rows], rtol=1e-10)


@needs_data
def test_dos_derived_heat_capacity_agrees_with_the_cloud_cv_label(table):
    """The data README: within 2 % of cv_label_300 for ~82 % of rows; where they differ the DOS value is higher."""
    heat, entropy = table.thermo_labels([300.0])
    relative = heat[:, 0] / table.cv_label_300 - 1
    assert 0.78 < np.mean(np.abs(relative) < 0.02) < 0.86
    assert np.mean(relative[np.abs(relative) >= 0.02] > 0) > 0.95
    assert (entropy > 0).all() and (heat[:, 0] < 3 * 8.314 * table.n_atoms).all()


@needs_data
def test_cloud_cv_rows_join_their_structures(table):
    cloud_cv = pd.read_csv(CLOUD_CV)
    matches = join_cloud_cv(table, cloud_cv)
    assert len(matches) == len(cloud_cv)
    found = [mp_id for mp_id in matches if mp_id is not None]
    assert len(found) == len(set(found)) == 1046  # one crystal shares string, N and label with another
    index = {mp_id: i for i, mp_id in enumerate(table.mp_ids)}
    for row, mp_id in zip(cloud_cv.itertuples(), matches):
        if mp_id is not None:
            assert table.scope_references[index[mp_id]] == row.cloud
            assert table.cv_label_300[index[mp_id]] == pytest.approx(row.cv, abs=1e-6)


@needs_data
def test_committed_test_split_is_the_seeded_draw_and_disjoint(table, tmp_path):
    committed = read_split_ids(DEFAULT_TEST_IDS_FILE)
    assert len(committed) == TEST_SPLIT_SIZE >= 150
    assert write_test_split(table, tmp_path / "ids.txt", seed=TEST_SPLIT_SEED) == committed
    train, validation, test = phonon_splits(table)
    assert sorted(test.mp_ids) == committed
    assert not set(train.mp_ids) & set(committed) and not set(validation.mp_ids) & set(committed)
    assert not set(train.mp_ids) & set(validation.mp_ids)
    assert len(train) + len(validation) + len(test) == len(table)


def write_table(path, dos_rows, n_atoms=(2, 2)):
    grid = list(range(0, 101, 20))
    frame = pd.DataFrame({
        "mp_id": [f"mp-{i}" for i in range(len(dos_rows))], "formula": ["NaCl"] * len(dos_rows),
        "n_atoms": list(n_atoms), "cif": ["x"] * len(dos_rows), "frequencies_cm1": [json.dumps(grid)] * len(dos_rows),
        "dos": [json.dumps(row) for row in dos_rows], "scope_reference": ["s"] * len(dos_rows),
        "cv_label_300": [40.0] * len(dos_rows),
    })
    with gzip.open(path, "wt") as handle:
        frame.to_csv(handle, index=False)
    return path


@pytest.mark.parametrize(("rows", "n_atoms", "message"), [
    ([[0, 1, 1, 1, 1, 0], [0, 1, float("nan"), 1, 1, 0]], (2, 2),
     r"row 1 \(mp-1\): dos row 0 has a NaN or infinite value at frequency index 2"),
    ([[0, 1, 1, 1, 1, 0], [0, 1, -1, 1, 1, 0]], (2, 2), r"row 1 \(mp-1\): dos row 0 has a negative value"),
    ([[0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0]], (2, 2), r"row 0 \(mp-0\): dos has 5 values per row"),
    ([[0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 0]], (2, 0), "row 1 has n_atoms ≤ 0"),
])
def test_bad_rows_are_named(tmp_path, rows, n_atoms, message):
    path = write_table(tmp_path / "bad.csv.gz", rows, n_atoms)
    with pytest.raises(CloudDataError, match=message):
        load_phonon_table(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(CloudDataError, match="phonon file not found"):
        load_phonon_table(tmp_path / "none.csv.gz")
