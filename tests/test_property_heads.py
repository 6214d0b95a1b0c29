"""A new property head through the public registration point only: served by the pipeline and `cloud-hf predict`."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from transformers import pipeline
from transformers.utils import ModelOutput

from cloud_hf import register_property_head
from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudConfigError
from cloud_hf.modeling_cloud import CloudModel, CloudPreTrainedModel
from cloud_hf.pipeline_cloud import TASK_NAME
from cloud_hf.property_heads import PROPERTY_HEADS
from cloud_hf.scope import ScopeEncoder, canonical_vocabulary
from cloud_hf.tokenization_cloud import CloudTokenizerFast
from test_structures import ROCKSALT


@dataclass
class ToyOutput(ModelOutput):
    hardness: torch.Tensor | None = None


class ToyHardnessModel(CloudPreTrainedModel):
    """A made-up head: one number per crystal from the [CLS] state."""

    def __init__(self, config: CloudConfig):
        super().__init__(config)
        self.cloud = CloudModel(config)
        self.out = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs) -> ToyOutput:
        hidden = self.cloud(input_ids, attention_mask=attention_mask).last_hidden_state
        return ToyOutput(hardness=self.out(hidden[:, 0])[:, 0])


def toy_records(model, outputs, n_atoms, temperatures):
    return [[{"property": "hardness", "value": value, "unit": "GPa"}] for value in outputs.hardness.tolist()]


@pytest.fixture
def toy_checkpoint(tmp_path):
    register_property_head("ToyHardnessModel", ToyHardnessModel, toy_records)
    tokenizer = CloudTokenizerFast.from_scope_vocabulary(canonical_vocabulary(), ScopeEncoder(mode="canonical").to_dict(),
                                                         model_max_length=32)
    config = CloudConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=32, scope=tokenizer.scope_config)
    torch.manual_seed(0)
    model = ToyHardnessModel(config).eval()
    model.save_pretrained(tmp_path / "toy")
    tokenizer.save_pretrained(tmp_path / "toy")
    yield tmp_path / "toy", model, tokenizer
    PROPERTY_HEADS.pop("ToyHardnessModel")


def test_a_registered_head_is_served_by_the_pipeline_and_the_command(toy_checkpoint, tmp_path):
    from cloud_hf.cli import main

    folder, model, tokenizer = toy_checkpoint
    result = pipeline(TASK_NAME, model=str(folder), device="cpu")(ROCKSALT)
    assert result["scope"] == "cF m-3m SG225 Na 4a Cl 4b" and result["error"] is None
    with torch.no_grad():
        expected = model(**tokenizer([result["scope"]], return_tensors="pt")).hardness.item()
    assert result["properties"] == [{"property": "hardness", "value": pytest.approx(expected), "unit": "GPa"}]

    ROCKSALT.to(filename=str(tmp_path / "NaCl.cif"))
    output = tmp_path / "rows.jsonl"
    assert main(["predict", str(tmp_path / "NaCl.cif"), "--model", str(folder), "--output", str(output)]) == 0
    (row,) = [json.loads(line) for line in output.read_text().splitlines()]
    assert row["properties"] == [{"property": "hardness", "value": pytest.approx(expected), "unit": "GPa"}]


def test_a_head_is_registered_under_its_class_name():
    with pytest.raises(CloudConfigError, match="name must be 'ToyHardnessModel', got 'hardness'"):
        register_property_head("hardness", ToyHardnessModel, toy_records)
    with pytest.raises(CloudConfigError, match="name must be 'Toy', got 'ToyHead'"):
        register_property_head("ToyHead", "some.module:Toy", toy_records)
    assert "hardness" not in PROPERTY_HEADS and "ToyHead" not in PROPERTY_HEADS


def test_an_unregistered_model_is_refused_by_name():
    from cloud_hf.property_heads import property_records

    with pytest.raises(NotImplementedError, match="ToyHardnessModel is not a property head"):
        property_records(ToyHardnessModel(CloudConfig(vocab_size=8, hidden_size=8, num_attention_heads=2,
                                                      num_hidden_layers=1, intermediate_size=8)), None, [1], [300.0])
