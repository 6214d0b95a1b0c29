"""The shipped multi-task backbone: a small safetensors encoder that loads offline into every CLOUD head and knows
crystals (its masked-token accuracy on the structures pymatgen ships is far above an untrained encoder's)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pymatgen.util
import pytest
import torch
from pymatgen.core import Structure

from cloud_hf import BUNDLED_BACKBONE_DIR
from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.modeling_cloud import CloudForMaskedLM, CloudForRegression
from cloud_hf.modeling_cloud_thermo import CloudThermoModel
from cloud_hf.scope import ScopeEncoder
from cloud_hf.tokenization_cloud import CloudTokenizerFast

PYMATGEN_STRUCTURES = Path(pymatgen.util.__file__).parent / "structures"


def test_backbone_folder_is_small_safetensors_with_a_model_card() -> None:
    files = {path.name for path in BUNDLED_BACKBONE_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    assert (BUNDLED_BACKBONE_DIR / "model.safetensors").stat().st_size <= 10e6
    card = (BUNDLED_BACKBONE_DIR / "README.md").read_text()
    for words in ("pretrain_multitask_small.yaml", "formation_energy", "shear_modulus_aflow", "exclude",
                  "matbench_jdft2d"):
        assert words in card, words
    config = json.loads((BUNDLED_BACKBONE_DIR / "config.json").read_text())
    assert config["architectures"] == ["CloudForMaskedLM"] and config.get("target_names") is None


def masked_token_accuracy(model: CloudForMaskedLM, tokenizer: CloudTokenizerFast, strings: list[str]) -> float:
    """Share of the tokens (special tokens apart) the model restores when each is masked alone."""
    correct = total = 0
    model.eval()
    for text in strings:
        ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
        positions = [i for i, token in enumerate(ids.tolist()) if token not in tokenizer.all_special_ids]
        batch = ids.repeat(len(positions), 1)
        batch[torch.arange(len(positions)), positions] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=batch, attention_mask=torch.ones_like(batch)).logits
        predicted = logits[torch.arange(len(positions)), positions].argmax(-1)
        correct += int((predicted == ids[positions]).sum())
        total += len(positions)
    return correct / total


def test_backbone_restores_masked_tokens_of_crystals_it_never_saw_far_better_than_chance() -> None:
    model = CloudForMaskedLM.from_pretrained(BUNDLED_BACKBONE_DIR)
    tokenizer = CloudTokenizerFast.from_pretrained(BUNDLED_BACKBONE_DIR)
    encoder = ScopeEncoder.from_dict(model.config.scope)
    structures = [Structure.from_file(path) for path in sorted(PYMATGEN_STRUCTURES.glob("*.json"))
                  if "Interface" not in path.name]  # a slab model, not a crystal
    strings = [encoder.encode(structure) for structure in structures if structure.is_ordered]
    assert len(strings) >= 15
    trained = masked_token_accuracy(model, tokenizer, strings)
    tokens = [token for text in strings for token in tokenizer(text)["input_ids"]
              if token not in tokenizer.all_special_ids]
    most_common_share = Counter(tokens).most_common(1)[0][1] / len(tokens)  # always guessing the likeliest token
    assert trained >= BACKBONE_MIN_ACCURACY, trained
    assert trained >= 3 * most_common_share, (trained, most_common_share)
    torch.manual_seed(0)
    untrained = CloudForMaskedLM(CloudConfig.from_pretrained(BUNDLED_BACKBONE_DIR))
    assert masked_token_accuracy(untrained, tokenizer, strings) < most_common_share


def test_backbone_starts_every_head_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backbone = CloudForMaskedLM.from_pretrained(BUNDLED_BACKBONE_DIR)
    regression = CloudForRegression.from_pretrained(BUNDLED_BACKBONE_DIR, target_names=["shear_modulus"],
                                                    target_mean=[30.0], target_std=[20.0])
    thermo = CloudThermoModel.from_encoder(BUNDLED_BACKBONE_DIR, thermo_members=2, thermo_composition_features=True)
    encoder = {key: value for key, value in backbone.state_dict().items() if key.startswith("cloud.")}
    for key, value in encoder.items():
        torch.testing.assert_close(regression.state_dict()[key], value, rtol=0, atol=0, msg=key)
        member_key = key.removeprefix("cloud.")
        torch.testing.assert_close(thermo.members[1].cloud.state_dict()[member_key], value, rtol=0, atol=0)
    assert regression.config.element_property_embeddings == backbone.config.element_property_embeddings


BACKBONE_MIN_ACCURACY = 0.65  # measured 0.710 on the 19 ordered structures (the 3-epoch backbone: 0.665)
