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


def test_thermo_head_reads_the_composition_and_keeps_its_tables_in_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = CloudThermoModel(thermo_config(CloudConfig(**TINY), thermo_members=2, thermo_composition_features=True))
    model.set_composition_tables(_Vocab())
    ids = torch.tensor([[0, 10, 3, 5, 4, 6, 2], [0, 10, 3, 5, 4, 7, 2]])  # NaCl, NaCl2: same tokens but one
    features = model.composition_features(ids, None)
    assert not torch.equal(features[0], features[1])
    model.eval()
    before = model(input_ids=ids, temperature=300.0, n_atoms=torch.tensor([2, 3])).heat_capacity
    model.save_pretrained(tmp_path)
    loaded = CloudThermoModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded.composition_properties, model.composition_properties)
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
