"""Composition descriptors pooled from SCOPE token ids (cloud_hf.composition) and the thermo heads that read them."""

from __future__ import annotations

import math

import pytest
import torch
from pymatgen.core import Composition, Element, Lattice, Structure

from cloud_hf.composition import (
    ELEMENT_PROPERTIES,
    NUM_COMPOSITION_FEATURES,
    element_token_table,
    pooled_composition_features,
)
from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudConfigError
from cloud_hf.modeling_cloud_thermo import CloudThermoModel, thermo_config

MASS = ELEMENT_PROPERTIES.index("ln_atomic_mass")
P = len(ELEMENT_PROPERTIES)
TWO_ELEMENTS = {"[CLS]": 0, "[PAD]": 1, "[SEP]": 2, "Na": 3, "Cl": 4, "4a": 5, "4b": 6, "8c": 7, "0.33": 8,
                "0.67": 9, "SG225": 10, "4mm": 11}


def pooled(tokens: list[list[str]], vocab: dict[str, int] = TWO_ELEMENTS) -> torch.Tensor:
    tables = element_token_table(vocab, len(vocab))
    length = max(len(row) for row in tokens)
    ids = torch.tensor([[vocab[t] for t in row] + [vocab["[PAD]"]] * (length - len(row)) for row in tokens])
    mask = torch.tensor([[1] * len(row) + [0] * (length - len(row)) for row in tokens])
    return pooled_composition_features(ids, mask, *tables)


def test_table_marks_elements_and_atom_counts():
    is_element, properties, counts = element_token_table(TWO_ELEMENTS, len(TWO_ELEMENTS))
    assert is_element.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    # Wyckoff multiplicities and fractions count atoms; "4mm" (a point group) and "SG225" do not
    assert counts.tolist() == pytest.approx([0, 0, 0, 0, 0, 4, 4, 8, 0.33, 0.67, 0, 0])
    # standardised over the two elements of this vocabulary: Na (lighter) −1, Cl +1
    assert properties[3, MASS].item() == pytest.approx(-1.0) and properties[4, MASS].item() == pytest.approx(1.0)
    assert properties[[0, 5, 10]].abs().sum() == 0


def test_pooling_weights_elements_by_the_count_token_after_them():
    features = pooled([["[CLS]", "SG225", "Na", "4a", "Cl", "4b", "[SEP]"],  # NaCl
                       ["[CLS]", "SG225", "Na", "4a", "Cl", "8c", "[SEP]"],  # NaCl2: 4 + 8 atoms
                       ["[CLS]", "Na", "0.33", "Cl", "0.67", "[SEP]"],  # reference fractions
                       ["[CLS]", "[SEP]"]])  # a failed crystal's placeholder
    mean, minimum, maximum = features[:, MASS], features[:, P + MASS], features[:, 2 * P + MASS]
    torch.testing.assert_close(mean, torch.tensor([0.0, 1.0 / 3.0, 0.34, 0.0]))
    torch.testing.assert_close(minimum, torch.tensor([-1.0, -1.0, -1.0, 0.0]))
    torch.testing.assert_close(maximum, torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert features.shape == (4, NUM_COMPOSITION_FEATURES)


def test_an_element_before_padding_or_the_end_counts_no_atoms():
    # "Cl" is the last real token: nothing says how many Cl atoms, so only Na is pooled
    features = pooled([["[CLS]", "Na", "4a", "Cl"], ["[CLS]", "Na", "4a", "Cl", "4b"]])
    assert features[0, MASS].item() == pytest.approx(-1.0)
    assert features[1, MASS].item() == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def canonical_processor():
    from transformers import AutoTokenizer

    from cloud_hf.pipeline_cloud import BUNDLED_MODEL_DIR
    from cloud_hf.training.thermo_data import crystal_processor

    return crystal_processor(AutoTokenizer.from_pretrained(BUNDLED_MODEL_DIR))


def canonical_features(processor, structure: Structure) -> torch.Tensor:
    ids = torch.tensor([processor.token_ids(processor.encode_crystal(structure).scope)])
    return pooled_composition_features(ids, None, *element_token_table(processor.tokenizer.get_vocab(),
                                                                       len(processor.tokenizer)))[0]


def test_canonical_mean_mass_is_pymatgens_composition_average(canonical_processor):
    """The pooled mean of ln(mass) equals pymatgen's atom-fraction average (through the table's standardisation),
    and the same crystal as primitive cell or 2×2×2 supercell gives the same descriptors."""
    vocab = canonical_processor.tokenizer.get_vocab()
    _, table, _ = element_token_table(vocab, len(canonical_processor.tokenizer))
    na, ti = vocab["Na"], vocab["Ti"]
    scale = (table[ti, MASS] - table[na, MASS]) / (math.log(Element("Ti").atomic_mass)
                                                    - math.log(Element("Na").atomic_mass))
    offset = table[na, MASS] - scale * math.log(Element("Na").atomic_mass)
    perovskite = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"],
                                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    composition = Composition("SrTiO3").fractional_composition
    expected = sum(composition[e] * math.log(e.atomic_mass) for e in composition)
    features = canonical_features(canonical_processor, perovskite)
    assert features[MASS].item() == pytest.approx(float(scale * expected + offset), rel=1e-5)
    torch.testing.assert_close(canonical_features(canonical_processor, perovskite * (2, 2, 2)), features)


TINY = {"vocab_size": len(TWO_ELEMENTS), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 16, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "head_dropout": 0.0}


class _Vocab:
    def get_vocab(self) -> dict[str, int]:
        return dict(TWO_ELEMENTS)


@pytest.mark.parametrize("mass_scaling", [False, True])
def test_thermo_head_reads_the_composition_and_keeps_its_tables_in_the_checkpoint(tmp_path, mass_scaling):
    torch.manual_seed(0)
    model = CloudThermoModel(thermo_config(CloudConfig(**TINY), thermo_members=2, thermo_composition_features=True,
                                           thermo_mass_scaling=mass_scaling))
    model.set_composition_tables(_Vocab())
    ids = torch.tensor([[0, 10, 3, 5, 4, 6, 2], [0, 10, 3, 5, 4, 7, 2]])  # NaCl, NaCl2: same tokens but one
    features = model.composition_features(ids, None)
    assert not torch.equal(features[0], features[1])
    model.eval()
    before = model(input_ids=ids, temperature=300.0, n_atoms=torch.tensor([2, 3])).heat_capacity
    model.save_pretrained(tmp_path)
    loaded = CloudThermoModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded.composition_properties, model.composition_properties)
    if mass_scaling:  # the ln-mass statistics that turn the pooled feature back into a mass travel too
        assert loaded.composition_ln_mass_statistics.abs().sum() > 0
        torch.testing.assert_close(loaded.composition_ln_mass_statistics, model.composition_ln_mass_statistics)
    torch.testing.assert_close(loaded(input_ids=ids, temperature=300.0, n_atoms=torch.tensor([2, 3])).heat_capacity,
                               before)


def test_composition_tables_need_a_model_built_for_them_and_element_tokens():
    plain = CloudThermoModel(thermo_config(CloudConfig(**TINY)))
    with pytest.raises(CloudConfigError, match="without thermo_composition_features"):
        plain.set_composition_tables(_Vocab())
    model = CloudThermoModel(thermo_config(CloudConfig(**TINY), thermo_composition_features=True))

    class NoElements:
        def get_vocab(self) -> dict[str, int]:
            return {"[CLS]": 0, "4a": 1}

    with pytest.raises(CloudConfigError, match="no element-symbol tokens"):
        model.set_composition_tables(NoElements())


# --- the mass-reduced frequency axis of the dos head (thermo_mass_scaling) ------------------------------------------

NACL, NACL2 = [0, 10, 3, 5, 4, 6, 2], [0, 10, 3, 5, 4, 7, 2]  # Na 4a Cl 4b; Na 4a Cl 8c


def mass_scaled_model(**settings) -> CloudThermoModel:
    torch.manual_seed(0)
    model = CloudThermoModel(thermo_config(CloudConfig(**TINY), thermo_members=2, thermo_composition_features=True,
                                           thermo_mass_scaling=True, **settings))
    model.set_composition_tables(_Vocab())
    return model.eval()


def silence_heads(model: CloudThermoModel) -> None:
    """Zero every member's output layer: the spectrum is then the prior alone, the same reduced g̃ for any crystal."""
    with torch.no_grad():
        for member in model.members:
            last = [module for module in member.head.modules() if isinstance(module, torch.nn.Linear)][-1]
            last.weight.zero_()
            last.bias.zero_()


def test_mass_stretch_is_the_root_of_the_geometric_mean_mass_over_the_reference():
    model = mass_scaled_model(thermo_reference_mass=25.0)
    ids = torch.tensor([NACL, NACL2])
    stretch = model.mass_stretch(model.composition_features(ids, None))
    na, cl = Element("Na").atomic_mass, Element("Cl").atomic_mass
    expected = [math.sqrt(math.sqrt(na * cl) / 25.0), math.sqrt(na ** (1 / 3) * cl ** (2 / 3) / 25.0)]
    assert stretch.tolist() == pytest.approx(expected, rel=1e-5)


def test_mass_scaled_dos_is_the_reduced_spectrum_read_at_the_stretched_frequencies():
    """With the heads silenced, each crystal's per-atom DOS is g̃(s·ω) normalised to 3 modes (numpy.interp), so the
    heavier crystal's spectrum sits lower; and it is a normalised DOS whose thermodynamics stay consistent."""
    import numpy as np

    model = mass_scaled_model().double()
    reduced = np.asarray(model.config.thermo_reduced_frequencies)
    prior = np.log(np.expm1(3.0 * np.exp(-(((reduced - 300.0) / 120.0) ** 2)) / 400.0 + 1e-4))
    model.config.thermo_dos_prior = prior.tolist()
    silence_heads(model)
    ids = torch.tensor([NACL, NACL2])
    temperature = torch.tensor([[30.0, 300.0]] * 2, dtype=torch.float64, requires_grad=True)
    output = model(input_ids=ids, temperature=temperature, n_atoms=torch.tensor([2, 3]))
    grid = np.asarray(model.config.thermo_frequencies)
    stretch = model.mass_stretch(model.composition_features(ids, None)).numpy()
    for row, (atoms, s) in enumerate(zip([2, 3], stretch)):
        density = np.interp(s * grid, reduced, np.logaddexp(0.0, prior), right=0.0) + 1e-6
        modes = density[0] * grid[0] / 3.0 + np.trapezoid(density, grid)
        np.testing.assert_allclose(output.dos[row].detach().numpy() / atoms, 3.0 * density / modes, rtol=1e-9)
    dos = output.dos.detach()
    mean_frequency = (dos * model.frequencies.double()).sum(-1) / dos.sum(-1)
    assert float(mean_frequency[1]) < float(mean_frequency[0])  # NaCl2 is the heavier on average (Cl > Na)
    (d_energy,) = torch.autograd.grad(output.internal_energy.sum(), temperature)
    torch.testing.assert_close(d_energy, output.heat_capacity, rtol=1e-8, atol=1e-9)


def test_mass_scaled_prior_starts_the_head_at_the_training_spectrum():
    """dos_prior on the reduced axis: trained on one crystal, the silenced head gives back that crystal's spectrum
    (its C_v within 0.5 %: two linear interpolations between 10 and 20 cm⁻¹ grids)."""
    import numpy as np

    from cloud_hf.thermodynamics import dos_thermodynamics
    from cloud_hf.training.thermo import dos_prior

    model = mass_scaled_model()
    grid = np.asarray(model.config.thermo_frequencies)
    label = np.exp(-(((grid - 250.0) / 60.0) ** 2)) + 0.3 * np.exp(-(((grid - 90.0) / 30.0) ** 2))
    label *= 3.0 / (label[0] * grid[0] / 3.0 + np.trapezoid(label, grid))
    model.config.thermo_dos_prior = dos_prior(model, [{"input_ids": NACL, "dos_labels": label.astype(np.float32)}])
    assert len(model.config.thermo_dos_prior) == len(model.config.thermo_reduced_frequencies)
    silence_heads(model)
    temperatures = torch.tensor([50.0, 100.0, 300.0])
    output = model(input_ids=torch.tensor([NACL]), temperature=temperatures, n_atoms=torch.tensor([1]))
    expected = dos_thermodynamics(torch.tensor(grid), torch.tensor(label)[None], temperatures.double()[None], 1.0,
                                  low_frequency="debye").heat_capacity
    torch.testing.assert_close(output.heat_capacity.double(), expected, rtol=5e-3, atol=0)


def test_reduced_grid_must_be_whole_steps():
    with pytest.raises(CloudConfigError, match=r"thermo_reduced_frequency_max \(1205.0\) must be a whole number"):
        mass_scaled_model(thermo_reduced_frequency_max=1205.0)
    with pytest.raises(CloudConfigError, match="thermo_dos_prior has 3 values for a DOS grid of 121 points"):
        mass_scaled_model(thermo_dos_prior=[0.0, 0.0, 0.0])


@pytest.mark.parametrize("settings", [{"thermo_composition_features": False},
                                      {"thermo_head": "debye-einstein", "thermo_composition_features": True}])
def test_mass_scaling_needs_the_dos_head_and_the_composition(settings):
    with pytest.raises(CloudConfigError, match=r"thermo_mass_scaling .* needs thermo_head 'dos'"):
        thermo_config(CloudConfig(**TINY), thermo_mass_scaling=True, **settings)


def test_interpolation_on_the_reduced_grid_is_numpys_with_zero_beyond_the_end():
    import numpy as np

    from cloud_hf.spectra import interpolate_uniform

    generator = np.random.default_rng(0)
    values = generator.random((3, 2, 13))
    query = generator.uniform(0.0, 140.0, (3, 2, 40))  # the grid ends at 120
    query[..., :4] = [0.0, 30.0, 110.0, 120.0]  # grid points, the first and the last included
    result = interpolate_uniform(torch.tensor(values), 10.0, torch.tensor(query)).numpy()
    reduced = np.arange(13) * 10.0
    expected = np.array([[np.interp(q, reduced, v, right=0.0) for q, v in zip(qs, vs)]
                         for qs, vs in zip(query, values)])
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result[..., 1], values[..., 3])  # 30 cm⁻¹: the fourth point
    np.testing.assert_allclose(result[..., 3], values[..., 12])  # the last point, 120 cm⁻¹, still inside
    inside = torch.tensor(query[..., 4:] % 10.0 > 1e-3) & torch.tensor(query[..., 4:] < 119.0)  # not on a kink
    values_ = torch.tensor(values, requires_grad=True)
    query_ = torch.tensor(np.where(inside.numpy(), query[..., 4:], 55.0), requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, q: interpolate_uniform(v, 10.0, q), (values_, query_))
