"""transformers' own ``ModelTesterMixin`` and ``ConfigTester`` on every CLOUD model class (the Debye head and the
thermodynamics ensemble included).

Every skip below carries its reason; nothing is deselected to make the count look good.
"""

from __future__ import annotations

import contextlib
import unittest
from collections.abc import Callable

import torch
from _suites import suite

import cloud_hf  # noqa: F401  (registers the auto classes)
from cloud_hf import (
    CloudConfig,
    CloudDebyeModel,
    CloudForClassification,
    CloudForMaskedLM,
    CloudForMultiTaskPretraining,
    CloudForRegression,
    CloudModel,
)
from cloud_hf.modeling_cloud_thermo import CloudThermoModel, thermo_config

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


HEAD_CLASSES = (CloudForMaskedLM, CloudForRegression, CloudForClassification, CloudDebyeModel,
                CloudForMultiTaskPretraining)

LEFT_PADDING_REFUSED = (
    "left padding is refused on purpose: CLOUD reads the crystal from [CLS] at position 0, and a mask that is 0 "
    "there raises a ValueError asking for right padding (tests/test_modeling.py::test_left_padding_is_a_clear_error)"
)


class CloudModelTest(modeling_common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (CloudModel, *HEAD_CLASSES)
    test_resize_position_embeddings = False

    def setUp(self):
        self.model_tester = CloudModelTester(self)
        self.config_tester = configuration_common.ConfigTester(self, config_class=CloudConfig, hidden_size=32)

    def test_config(self):
        self.config_tester.run_common_tests()

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """The mixin adds labels by transformers' own (static) auto-class name tables, which a registered extension
        model is not in; each CLOUD head's labels are added here instead."""
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if not return_labels:
            return inputs_dict
        batch_size = self.model_tester.batch_size
        generator = torch.Generator().manual_seed(0)  # the same labels on every call (tuple vs dict outputs compare)
        if model_class is CloudForMaskedLM:
            inputs_dict["labels"] = inputs_dict["input_ids"].masked_fill(inputs_dict["attention_mask"] == 0, -100)
        elif model_class is CloudForRegression:
            inputs_dict["labels"] = torch.randn(batch_size, generator=generator)
        elif model_class is CloudForClassification:
            inputs_dict["labels"] = torch.randint(0, 2, (batch_size,), generator=generator)
        elif model_class is CloudDebyeModel:
            inputs_dict["theta_labels"] = 300.0 + 100.0 * torch.rand(batch_size, generator=generator)
        elif model_class is CloudForMultiTaskPretraining:  # masked-LM labels and one property, one of them missing
            inputs_dict["labels"] = inputs_dict["input_ids"].masked_fill(inputs_dict["attention_mask"] == 0, -100)
            properties = torch.randn(batch_size, generator=generator)
            properties[0] = float("nan")
            inputs_dict["property_labels"] = properties
        return inputs_dict

    @contextlib.contextmanager
    def _heads_only(self):
        """The training tests skip base models by transformers' static MODEL_MAPPING_NAMES, which CloudModel (a
        registered extension) is not in; the bare encoder has no loss, so those tests run on the heads."""
        self.all_model_classes = HEAD_CLASSES
        try:
            yield
        finally:
            del self.all_model_classes

    def test_training(self):
        with self._heads_only():
            super().test_training()

    def test_training_gradient_checkpointing(self):
        with self._heads_only():
            super().test_training_gradient_checkpointing()

    def test_training_gradient_checkpointing_use_reentrant_false(self):
        with self._heads_only():
            super().test_training_gradient_checkpointing_use_reentrant_false()

    def test_training_gradient_checkpointing_use_reentrant_true(self):
        with self._heads_only():
            super().test_training_gradient_checkpointing_use_reentrant_true()


def skip_mixin_tests(test_class: type, wanted: Callable[[str], bool], reason: str) -> None:
    """Skip, with ``reason``, each of transformers' ``ModelTesterMixin`` tests on ``test_class`` whose name ``wanted``
    accepts (parametrised tests have one method per case, so they are picked by name)."""
    for name in dir(modeling_common.ModelTesterMixin):
        if name.startswith("test_") and wanted(name):
            setattr(test_class, name, unittest.skip(reason)(getattr(modeling_common.ModelTesterMixin, name)))


skip_mixin_tests(CloudModelTest, lambda name: name.startswith("test_eager_matches_sdpa_inference") and "pad_left" in name,
                 LEFT_PADDING_REFUSED)


class CloudThermoModelTester(CloudModelTester):
    """The thermodynamics head as a 2-member deep ensemble of DOS heads with composition descriptors."""

    def get_config(self) -> CloudConfig:
        return thermo_config(super().get_config(), thermo_members=2, thermo_composition_features=True)


class CloudThermoModelTest(modeling_common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (CloudThermoModel,)
    test_resize_position_embeddings = False

    def setUp(self):
        self.model_tester = CloudThermoModelTester(self)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels:
            generator = torch.Generator().manual_seed(0)
            batch_size = self.model_tester.batch_size
            inputs_dict["temperature"] = torch.tensor([[50.0, 300.0]] * batch_size)
            inputs_dict["n_atoms"] = torch.tensor([2.0, 3.0, 5.0])[:batch_size]
            inputs_dict["heat_capacity_labels"] = 20.0 + 40.0 * torch.rand(batch_size, 2, generator=generator)
        return inputs_dict


ENSEMBLE_HAS_NO_SINGLE_EMBEDDING_TABLE = (
    "CloudThermoModel is a deep ensemble: each member has its own encoder and word embeddings, so there is no one "
    "input-embedding table to get, set or resize (every encoder is covered by CloudModelTest above)"
)
skip_mixin_tests(CloudThermoModelTest, lambda name: name.startswith((
    "test_model_get_set_embeddings", "test_resize_tokens_embeddings", "test_inputs_embeds",
)), ENSEMBLE_HAS_NO_SINGLE_EMBEDDING_TABLE + "; inputs_embeds reach every member (tests/test_modeling_thermo.py)")
skip_mixin_tests(CloudThermoModelTest, lambda name: name.startswith("test_retain_grad_hidden_states"),
                 "a CloudThermoModel's hidden states and attentions are every member's stacked into one tensor, a copy "
                 "that is not on the path to its outputs, so no gradient reaches it (each member's own tensors are "
                 "CloudModelTest's)")
skip_mixin_tests(CloudThermoModelTest, lambda name: name.startswith("test_eager_matches_sdpa_inference") and "pad_left" in name,
                 LEFT_PADDING_REFUSED)
