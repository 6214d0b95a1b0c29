"""Tests of ``cloud_hf.plotting``."""

from __future__ import annotations

import pytest
from matplotlib.image import imread

from cloud_hf.plotting import plot_thermo_curves


def test_writes_a_png_of_both_panels(tmp_path) -> None:
    path = plot_thermo_curves(
        {"Si": 645.0, "NaCl": 321.0}, {"Si": 2, "NaCl": 2}, path=tmp_path / "plots" / "curves.png"
    )
    assert path == tmp_path / "plots" / "curves.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(path).shape
    assert width > 2 * height  # two panels side by side


def test_custom_temperatures_and_one_atom_count(tmp_path) -> None:
    path = plot_thermo_curves({"Pb": 105.0}, 1, temperatures=[5.0, 50.0, 500.0], path=tmp_path / "pb.png")
    assert path.is_file()


@pytest.mark.parametrize(
    ("theta", "n_atoms", "temperatures", "message"),
    [
        ({}, 1, None, "at least one crystal"),
        ({"bad": -3.0}, 1, None, "crystal 'bad': θ_D must be > 0"),
        ({"Si": 645.0}, {"Si": 0}, None, "crystal 'Si': n_atoms must be > 0"),
        ({"Si": 645.0}, 2, [0.0, 10.0], "temperatures must be > 0"),
    ],
)
def test_bad_input_is_named(tmp_path, theta, n_atoms, temperatures, message) -> None:
    with pytest.raises(ValueError, match=message):
        plot_thermo_curves(theta, n_atoms, temperatures, path=tmp_path / "x.png")


def test_per_atom_curves_are_labelled_per_mole_of_atoms() -> None:
    from cloud_hf.plotting import quantity_basis

    assert quantity_basis([1, 1]) == "per mole of atoms"
    assert quantity_basis([1, 2]) == "per mole of cells"


def test_model_curves_with_band_beside_the_dos(tmp_path) -> None:
    import torch
    from transformers import AutoTokenizer

    from cloud_hf import BUNDLED_MODEL_DIR, CloudConfig
    from cloud_hf.modeling_cloud_thermo import CloudThermoModel, thermo_config
    from cloud_hf.plotting import plot_model_thermo

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODEL_DIR)
    config = thermo_config(CloudConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=64), thermo_members=2)
    crystals = [("Si", "cF Fd-3m SG227 Si 8a", 2), ("CsCl", "cP Pm-3m SG221 Cl 1a Cs 1b", 2)]
    path = plot_model_thermo(CloudThermoModel(config), tokenizer, crystals, tmp_path / "model.png")
    height, width, _ = imread(path).shape
    assert width > 2 * height
    with pytest.raises(ValueError, match="at least one crystal"):
        plot_model_thermo(CloudThermoModel(config), tokenizer, [], tmp_path / "none.png")
