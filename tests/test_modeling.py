"""CloudConfig and the CLOUD model classes: shapes, masking, SDPA/eager, heads, losses, save/load, auto classes."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

import cloud_hf  # noqa: F401  (registers the auto classes)
from cloud_hf import (
    CloudConfig,
    CloudForClassification,
    CloudForMaskedLM,
    CloudForRegression,
    CloudModel,
    CloudPredictionHead,
    CloudRegressionOutput,
)

VOCAB_SIZE = 40


def tiny_config(**overrides) -> CloudConfig:
    settings = dict(vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0, head_dropout=0.0)
    settings.update(overrides)
    return CloudConfig(**settings)


def batch(batch_size: int = 3, length: int = 9, seed: int = 0) -> dict[str, torch.Tensor]:
    """[CLS] random tokens [SEP] with right padding: row i has ``length - 2 * i`` real tokens."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB_SIZE, (batch_size, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    input_ids[:, 0] = 0
    for row in range(batch_size):
        real = length - 2 * row
        input_ids[row, real - 1] = 2
        input_ids[row, real:] = 1
        attention_mask[row, real:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


# --- configuration -----------------------------------------------------------------------------------------


def test_config_round_trip_through_auto_config(tmp_path):
    scope = {"mode": "canonical", "version": "canonical-1", "backend": "moyopy", "symprec": 0.1}
    config = tiny_config(scope=scope, target_names=["band_gap", "e_form"], target_mean=[1.0, -0.5],
                         target_std=[1.2, 0.8], target_units=["eV", "eV/atom"], regression_loss="mse")
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is CloudConfig and reloaded.model_type == "cloud"
    assert reloaded.scope == scope and reloaded.scope_mode == "canonical"
    assert reloaded.target_std == [1.2, 0.8] and reloaded.num_targets == 2 and reloaded.regression_loss == "mse"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "multiple of num_attention_heads"),
        ({"target_names": ["a", "b"], "target_mean": [0.0]}, "one entry per target"),
        ({"target_std": [0.0]}, "finite and > 0"),
        ({"head_num_layers": -1}, "head_num_layers"),
        ({"head_dropout": 1.5}, "head_dropout"),
    ],
)
def test_config_rejects_inconsistent_settings(overrides, message):
    with pytest.raises(Exception, match=message):
        tiny_config(**overrides)


# --- encoder -------------------------------------------------------------------------------------------------


def test_encoder_output_and_tuple_form():
    model = CloudModel(tiny_config()).eval()
    inputs = batch()
    output = model(**inputs, output_hidden_states=True)
    assert isinstance(output, BaseModelOutput)
    assert output.last_hidden_state.shape == (3, 9, 32)
    assert len(output.hidden_states) == 3 and torch.equal(output.hidden_states[-1], output.last_hidden_state)
    as_tuple = model(**inputs, return_dict=False)
    assert torch.equal(as_tuple[0], output.last_hidden_state)


def test_padding_does_not_change_real_token_states():
    model = CloudModel(tiny_config()).eval()
    inputs = batch()
    padded = model(**inputs).last_hidden_state
    for row in range(3):
        real = int(inputs["attention_mask"][row].sum())
        alone = model(input_ids=inputs["input_ids"][row:row + 1, :real]).last_hidden_state
        torch.testing.assert_close(padded[row, :real], alone[0], atol=1e-5, rtol=1e-5)


def test_padding_positions_are_not_computed():
    model = CloudModel(tiny_config()).eval()
    inputs = batch()
    output = model(**inputs, output_hidden_states=True)
    padding = inputs["attention_mask"] == 0
    assert padding.any()
    for states in (output.last_hidden_state, *output.hidden_states):
        assert (states[padding] == 0).all()
        assert (states[~padding].abs().sum(-1) > 0).all()


def test_sdpa_and_eager_agree_and_eager_returns_attention_probabilities():
    torch.manual_seed(0)
    sdpa = CloudModel(tiny_config()).eval()
    assert sdpa.config._attn_implementation == "sdpa"
    eager = CloudModel(tiny_config(attn_implementation="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    inputs = batch()
    torch.testing.assert_close(sdpa(**inputs).last_hidden_state, eager(**inputs).last_hidden_state,
                               atol=1e-5, rtol=1e-5)
    attentions = eager(**inputs, output_attentions=True).attentions
    assert len(attentions) == 2 and attentions[0].shape == (3, 4, 9, 9)
    torch.testing.assert_close(attentions[0].sum(-1), torch.ones(3, 4, 9))
    assert (attentions[0][2, :, :, 5:] == 0).all(), "padded keys get no attention"


def test_inputs_embeds_equal_input_ids():
    model = CloudModel(tiny_config()).eval()
    inputs = batch()
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    torch.testing.assert_close(model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).last_hidden_state,
                               model(**inputs).last_hidden_state)


def test_left_padding_is_a_clear_error():
    model = CloudModel(tiny_config())
    inputs = batch()
    with pytest.raises(ValueError, match="pad on the right"):
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"].flip(1))


def test_too_long_input_is_a_clear_error():
    model = CloudModel(tiny_config())
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=torch.zeros(1, 17, dtype=torch.long))


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    reference = CloudForMaskedLM(tiny_config())
    checkpointed = CloudForMaskedLM(tiny_config())
    checkpointed.load_state_dict(reference.state_dict())
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert checkpointed.is_gradient_checkpointing
    inputs = batch()
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    for model in (reference, checkpointed):
        model.train()
        model(**inputs, labels=labels).loss.backward()
    for (name, expected), actual in zip(reference.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(actual.grad, expected.grad, atol=1e-6, rtol=1e-5, msg=name)


# --- masked LM -------------------------------------------------------------------------------------------------


def test_masked_lm_ties_the_decoder_and_ignores_minus_100(tmp_path):
    model = CloudForMaskedLM(tiny_config()).eval()
    assert model.lm_head.decoder.weight is model.cloud.embeddings.word_embeddings.weight
    inputs = batch()
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[0, 3], labels[1, 2] = 7, 11
    output = model(**inputs, labels=labels)
    assert isinstance(output, MaskedLMOutput) and output.logits.shape == (3, 9, VOCAB_SIZE)
    expected = F.cross_entropy(torch.stack([output.logits[0, 3], output.logits[1, 2]]), torch.tensor([7, 11]))
    torch.testing.assert_close(output.loss, expected)

    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert type(reloaded) is CloudForMaskedLM
    assert reloaded.lm_head.decoder.weight is reloaded.cloud.embeddings.word_embeddings.weight
    torch.testing.assert_close(reloaded(**inputs).logits, output.logits, atol=0, rtol=0)


def test_auto_model_gives_the_bare_encoder():
    model = AutoModel.from_config(tiny_config())
    assert type(model) is CloudModel


def test_masked_lm_trains_with_trainer_on_canonical_strings(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(str(__import__("pathlib").Path(__file__).parents[1] / "tokenizer"))
    strings = ["cF m-3m SG225 Na 4a Cl 4b", "cP m-3m SG221 Ti 1a Sr 1b O 3c", "hP 6/mmm SG191 Mg 1a B 2d"] * 4
    dataset = [tokenizer(s) for s in strings]
    config = tiny_config(vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length)
    model = CloudForMaskedLM(config)
    arguments = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3,
                                  report_to=[], save_strategy="no", logging_steps=1, use_cpu=True)
    trainer = Trainer(model=model, args=arguments, train_dataset=dataset,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3))
    result = trainer.train()
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))


# --- regression -------------------------------------------------------------------------------------------------


def regression_config(**overrides) -> CloudConfig:
    return tiny_config(target_names=["band_gap", "e_form"], target_mean=[2.0, -1.0], target_std=[0.5, 4.0],
                       target_units=["eV", "eV/atom"], **overrides)


def test_regression_predictions_are_in_physical_units(tmp_path):
    model = CloudForRegression(regression_config()).eval()
    inputs = batch()
    output = model(**inputs)
    assert isinstance(output, CloudRegressionOutput) and output.logits.shape == (3, 2)
    torch.testing.assert_close(output.predictions, output.logits * torch.tensor([0.5, 4.0]) + torch.tensor([2.0, -1.0]))
    model.save_pretrained(tmp_path)
    reloaded = CloudForRegression.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(**inputs).predictions, output.predictions, atol=0, rtol=0)


@pytest.mark.parametrize("loss_name", ["l1", "mse"])
def test_regression_loss_skips_nan_labels(loss_name):
    model = CloudForRegression(regression_config(regression_loss=loss_name)).eval()
    inputs = batch()
    labels = torch.tensor([[2.5, float("nan")], [1.0, 3.0], [float("nan"), -9.0]], dtype=torch.float64)
    output = model(**inputs, labels=labels)
    standardized = (labels.float() - torch.tensor([2.0, -1.0])) / torch.tensor([0.5, 4.0])
    present = ~torch.isnan(standardized)
    loss_function = F.l1_loss if loss_name == "l1" else F.mse_loss
    torch.testing.assert_close(output.loss, loss_function(output.logits[present], standardized[present]))


def test_regression_with_all_labels_missing_has_zero_loss_and_finite_gradients():
    model = CloudForRegression(regression_config())
    output = model(**batch(), labels=torch.full((3, 2), float("nan")))
    assert output.loss.item() == 0.0
    output.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_single_target_regression_accepts_flat_labels_and_rejects_wrong_shapes():
    model = CloudForRegression(tiny_config(target_names=["n"], target_mean=[2.0], target_std=[0.5])).eval()
    inputs = batch()
    flat = model(**inputs, labels=torch.tensor([2.0, 2.5, 1.5])).loss
    column = model(**inputs, labels=torch.tensor([[2.0], [2.5], [1.5]])).loss
    torch.testing.assert_close(flat, column)
    with pytest.raises(ValueError, match="labels have shape"):
        model(**inputs, labels=torch.zeros(3, 2))


def test_regression_fits_a_small_training_set():
    torch.manual_seed(0)
    model = CloudForRegression(
        tiny_config(target_names=["y"], target_mean=[100.0], target_std=[20.0], regression_loss="mse")
    )
    inputs = batch(batch_size=4, length=9)
    labels = torch.tensor([80.0, 95.0, 110.0, 130.0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(**inputs, labels=labels).loss.item()
    for _ in range(20):
        optimizer.zero_grad()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3 * first


# --- prediction head and classification -------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prediction_head_shape(depth):
    head = CloudPredictionHead(tiny_config(head_num_layers=depth, head_dropout=0.1), num_outputs=5)
    assert len(head.hidden_layers) == depth and head.dropout.p == 0.1
    assert head(torch.randn(7, 32)).shape == (7, 5)


def test_multiclass_classification_loss_and_auto_class(tmp_path):
    config = tiny_config(num_labels=3, id2label={0: "metal", 1: "semiconductor", 2: "insulator"})
    model = AutoModelForSequenceClassification.from_config(config).eval()
    assert type(model) is CloudForClassification
    inputs = batch()
    labels = torch.tensor([0, 2, 1])
    output = model(**inputs, labels=labels)
    assert isinstance(output, SequenceClassifierOutput) and output.logits.shape == (3, 3)
    torch.testing.assert_close(output.loss, F.cross_entropy(output.logits, labels))
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.id2label[2] == "insulator"
    torch.testing.assert_close(reloaded(**inputs).logits, output.logits, atol=0, rtol=0)


def test_binary_classification_with_one_logit():
    model = CloudForClassification(tiny_config(num_labels=1)).eval()
    output = model(**batch(), labels=torch.tensor([1, 0, 1]))
    assert output.logits.shape == (3, 1)
    expected = F.binary_cross_entropy_with_logits(output.logits.view(-1), torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(output.loss, expected)


def test_multi_label_classification():
    model = CloudForClassification(tiny_config(num_labels=2, problem_type="multi_label_classification")).eval()
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    output = model(**batch(), labels=labels)
    torch.testing.assert_close(output.loss, F.binary_cross_entropy_with_logits(output.logits, labels))


def test_classification_refuses_regression_problem_type():
    with pytest.raises(ValueError, match="CloudForRegression"):
        CloudForClassification(tiny_config(num_labels=1, problem_type="regression"))
