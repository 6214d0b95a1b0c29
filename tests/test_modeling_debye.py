"""Tests of ``CloudDebyeModel`` on a tiny configuration (CPU, seconds)."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest
import torch
from datasets import Dataset
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, Trainer, TrainingArguments
from transformers.utils import find_labels

from cloud_hf import (
    CloudConfig,
    CloudDebyeModel,
    CloudDebyeOutput,
    CloudForMaskedLM,
    convert_reference_checkpoint,
    debye,
)
from cloud_hf.debye import GAS_CONSTANT as R
from cloud_hf.modeling_cloud_debye import MIN_DEBYE_TEMPERATURE

DEFAULT_DEBYE_THETA_SCALE = 300.0  # K, CloudConfig's documented default

BATCH, SEQUENCE = 4, 7


def tiny_config(**overrides) -> CloudConfig:
    settings = dict(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        head_dropout=0.0,
    )
    settings.update(overrides)
    return CloudConfig(**settings)


@pytest.fixture
def model() -> CloudDebyeModel:
    torch.manual_seed(0)
    return CloudDebyeModel(tiny_config()).eval()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 40, (BATCH, SEQUENCE), generator=generator)
    input_ids[:, 0] = 0  # [CLS]
    attention_mask = torch.ones(BATCH, SEQUENCE, dtype=torch.long)
    attention_mask[-1, -2:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "n_atoms": torch.tensor([2, 5, 8, 1])}


def _set_head_output(model: CloudDebyeModel, value: float) -> None:
    """Make the head output ``y = value`` for every crystal (zero last-layer weights, bias ``value``)."""
    with torch.no_grad():
        model.head.out_proj.weight.zero_()
        model.head.out_proj.bias.fill_(value)


def test_per_crystal_temperature_shapes_and_values(model, batch) -> None:
    temperature = torch.tensor([10.0, 100.0, 300.0, 1000.0])
    output = model(**batch, temperature=temperature)
    assert isinstance(output, CloudDebyeOutput)
    assert output.loss is None
    for name in ("debye_temperature", "heat_capacity", "internal_energy", "entropy", "free_energy"):
        assert getattr(output, name).shape == (BATCH,), name
    expected = debye.thermodynamics(output.debye_temperature, temperature, batch["n_atoms"])
    for name, value in expected._asdict().items():
        torch.testing.assert_close(getattr(output, name), value)


def test_temperature_grid_shapes_match_pure_functions(model, batch) -> None:
    grid = torch.linspace(1.0, 1000.0, 6).expand(BATCH, -1)
    output = model(**batch, temperature=grid)
    assert output.debye_temperature.shape == (BATCH,)
    assert output.heat_capacity.shape == (BATCH, 6)
    for row in range(BATCH):
        expected = debye.heat_capacity(output.debye_temperature[row], grid[row], batch["n_atoms"][row])
        torch.testing.assert_close(output.heat_capacity[row], expected)


def test_without_temperature_only_theta(model, batch) -> None:
    output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert output.debye_temperature.shape == (BATCH,)
    assert output.heat_capacity is None and output.free_energy is None
    as_tuple = model(input_ids=batch["input_ids"], return_dict=False)
    assert len(as_tuple) == 1
    torch.testing.assert_close(as_tuple[0], model(input_ids=batch["input_ids"]).debye_temperature)


def test_scalar_temperature_broadcasts_and_default_n_atoms_is_per_atom(model, batch) -> None:
    output = model(input_ids=batch["input_ids"], temperature=300.0)
    assert output.heat_capacity.shape == (BATCH,)
    torch.testing.assert_close(output.heat_capacity, debye.heat_capacity(output.debye_temperature, 300.0, 1))


def test_fresh_head_predicts_theta_scale(batch) -> None:
    model = CloudDebyeModel(tiny_config(debye_theta_scale=450.0)).eval()
    _set_head_output(model, 0.0)
    theta = model(input_ids=batch["input_ids"]).debye_temperature
    torch.testing.assert_close(theta, torch.full((BATCH,), 450.0 + MIN_DEBYE_TEMPERATURE))


def test_default_theta_scale_is_recorded_in_config() -> None:
    model = CloudDebyeModel(tiny_config())
    assert model.config.debye_theta_scale == DEFAULT_DEBYE_THETA_SCALE
    with pytest.raises(StrictDataclassClassValidationError, match="debye_theta_scale"):
        CloudDebyeModel(tiny_config(debye_theta_scale=-5.0))


@pytest.mark.parametrize("head_output", [-1e4, -30.0, 0.0, 30.0, 1e4])
def test_theta_positive_and_everything_finite_for_extreme_head_outputs(model, batch, head_output) -> None:
    """The positive parameterisation keeps θ_D ≥ θ_min however far the head output goes."""
    _set_head_output(model, head_output)
    output = model(**batch, temperature=torch.tensor([[0.1, 300.0, 5000.0]]).expand(BATCH, -1))
    assert (output.debye_temperature >= MIN_DEBYE_TEMPERATURE).all()
    for value in output.to_tuple():
        assert torch.isfinite(value).all()


def test_loss_matches_hand_computation_and_masks_nan(model, batch) -> None:
    """With a constant head θ_D = θ_scale + θ_min, the loss is a known function of the labels."""
    _set_head_output(model, 0.0)
    theta = DEFAULT_DEBYE_THETA_SCALE + MIN_DEBYE_TEMPERATURE
    n_atoms = batch["n_atoms"].double()
    temperature = torch.tensor([50.0, 300.0, 300.0, 800.0])
    theta_labels = torch.tensor([200.0, math.nan, 500.0, 301.0])
    cv_labels = torch.tensor([10.0, 40.0, math.nan, 20.0])
    output = model(
        **batch, temperature=temperature, theta_labels=theta_labels, heat_capacity_labels=cv_labels
    )
    cv_model = debye.heat_capacity(theta, temperature.double(), n_atoms)
    present = [0, 1, 3]
    cv_term = sum(abs(cv_model[i] - cv_labels[i]) / (3 * R * n_atoms[i]) for i in present) / 3
    theta_term = (
        (abs(theta - 200.0) + abs(theta - 500.0) + abs(theta - 301.0)) / 3 / DEFAULT_DEBYE_THETA_SCALE
    )
    assert output.loss.item() == pytest.approx((cv_term + theta_term).item(), rel=1e-5)


def test_internal_energy_loss_scale(model, batch) -> None:
    """U errors are measured in units of 3NR (T + 3θ_scale/8)."""
    _set_head_output(model, 0.0)
    temperature = torch.full((BATCH,), 200.0)
    predicted = model(**batch, temperature=temperature).internal_energy.detach()
    energy_scale = 3 * R * batch["n_atoms"] * (200.0 + 3 * DEFAULT_DEBYE_THETA_SCALE / 8)
    output = model(**batch, temperature=temperature, internal_energy_labels=predicted + 0.25 * energy_scale)
    assert output.loss.item() == pytest.approx(0.25, rel=1e-5)


def test_all_nan_labels_give_zero_loss_with_graph(model, batch) -> None:
    output = model(**batch, temperature=300.0, heat_capacity_labels=torch.full((BATCH,), math.nan))
    assert output.loss.item() == 0.0
    output.loss.backward()  # carries the graph, so a Trainer step on such a batch does not fail


def test_loss_decreases_when_training_on_heat_capacity(batch) -> None:
    """A few AdamW steps on C_v(300 K) labels of known θ_D reduce the loss and move θ_D towards the truth."""
    torch.manual_seed(0)
    model = CloudDebyeModel(tiny_config()).train()
    true_theta = torch.tensor([150.0, 400.0, 700.0, 1200.0])
    temperature = torch.full((BATCH,), 300.0)
    labels = debye.heat_capacity(true_theta, temperature, batch["n_atoms"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model(**batch, temperature=temperature, heat_capacity_labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    theta = model.eval()(**batch).debye_temperature.detach()
    assert (theta - true_theta).abs().mean() < (DEFAULT_DEBYE_THETA_SCALE - true_theta).abs().mean() / 2


def test_gradients_finite_at_lowest_temperature(model, batch) -> None:
    temperature = torch.full((BATCH,), 0.1)
    output = model(
        **batch,
        temperature=temperature,
        theta_labels=torch.full((BATCH,), 300.0),
        heat_capacity_labels=torch.full((BATCH,), 1e-6),
        internal_energy_labels=torch.full((BATCH,), 1000.0),
    )
    output.loss.backward()
    gradients = [parameter.grad for parameter in model.parameters() if parameter.grad is not None]
    assert gradients and all(torch.isfinite(gradient).all() for gradient in gradients)
    assert any(gradient.abs().sum() > 0 for gradient in gradients)


def test_heat_capacity_is_temperature_derivative_through_the_model(model, batch) -> None:
    temperature = torch.tensor([[5.0, 80.0, 300.0]], dtype=torch.float64).expand(BATCH, -1).clone()
    temperature.requires_grad_()
    output = model(**batch, temperature=temperature)
    (d_energy,) = torch.autograd.grad(output.internal_energy.sum(), temperature)
    torch.testing.assert_close(d_energy, output.heat_capacity.detach(), rtol=1e-9, atol=1e-12)


def test_save_and_load_round_trip(model, batch, tmp_path) -> None:
    model.config.debye_theta_scale = 512.0
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == ["CloudDebyeModel"]
    assert saved["debye_theta_scale"] == 512.0
    reloaded = CloudDebyeModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.debye_theta_scale == 512.0
    temperature = torch.full((BATCH,), 250.0)
    torch.testing.assert_close(
        reloaded(**batch, temperature=temperature).heat_capacity,
        model(**batch, temperature=temperature).heat_capacity,
    )


def test_encoder_weights_load_from_masked_lm_checkpoint(tmp_path) -> None:
    torch.manual_seed(3)
    masked_lm = CloudForMaskedLM(tiny_config())
    masked_lm.save_pretrained(tmp_path)
    model = CloudDebyeModel.from_pretrained(tmp_path)
    assert model.config.debye_theta_scale == DEFAULT_DEBYE_THETA_SCALE
    encoder_state = masked_lm.cloud.state_dict()
    assert encoder_state
    for name, tensor in model.cloud.state_dict().items():
        torch.testing.assert_close(tensor, encoder_state[name], rtol=0, atol=0, msg=name)
    assert torch.isfinite(model.head.out_proj.weight).all()


def test_encoder_loads_from_a_converted_reference_checkpoint_and_runs_on_reference_data(
    reference_data, tmp_path
) -> None:
    """Reference BertForMaskedLM → convert_reference_checkpoint → CloudDebyeModel, then C_v(300 K) of real rows."""
    source = tmp_path / "reference"
    torch.manual_seed(0)
    bert_config = BertConfig(
        vocab_size=564,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=256,
        max_position_embeddings=64,
        type_vocab_size=1,
    )
    BertForMaskedLM(bert_config).save_pretrained(source)
    for path in (reference_data / "tokenizer").iterdir():
        shutil.copy(path, source / path.name)
    converted = convert_reference_checkpoint(source, tmp_path / "converted")

    model = CloudDebyeModel.from_pretrained(converted).eval()
    masked_lm = CloudForMaskedLM.from_pretrained(converted)
    for name, tensor in masked_lm.cloud.state_dict().items():
        torch.testing.assert_close(model.cloud.state_dict()[name], tensor, rtol=0, atol=0, msg=name)

    with (reference_data / "cloud_cv_test.csv").open(newline="") as handle:
        rows = [row for _, row in zip(range(8), csv.DictReader(handle))]
    tokenizer = AutoTokenizer.from_pretrained(converted)
    encoded = tokenizer([row["cloud"] for row in rows], padding=True, return_tensors="pt")
    n_atoms = torch.tensor([int(float(row["n_atoms"])) for row in rows])
    labels = torch.tensor([float(row["cv"]) for row in rows])
    output = model(
        input_ids=encoded["input_ids"],
        attention_mask=encoded["attention_mask"],
        temperature=torch.full((len(rows),), 300.0),
        n_atoms=n_atoms,
        heat_capacity_labels=labels,
    )
    assert (output.heat_capacity > 0).all() and (output.heat_capacity < 3 * R * n_atoms).all()
    assert torch.isfinite(output.loss)


def test_trainer_finds_the_three_label_arguments() -> None:
    assert find_labels(CloudDebyeModel) == ["theta_labels", "heat_capacity_labels", "internal_energy_labels"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"temperature": torch.tensor([300.0, -1.0, 300.0, 300.0])}, "temperature must be finite and > 0"),
        (
            {"temperature": torch.tensor([300.0, math.nan, 300.0, 300.0])},
            "temperature must be finite and > 0",
        ),
        ({"temperature": torch.ones(3)}, r"temperature has shape \(3,\)"),
        ({"heat_capacity_labels": torch.ones(BATCH)}, "need the `temperature`"),
        (
            {"temperature": torch.ones(BATCH), "heat_capacity_labels": torch.ones(BATCH, 2)},
            "heat_capacity_labels",
        ),
        ({"temperature": torch.ones(BATCH), "n_atoms": torch.tensor([1, 0, 1, 1])}, "n_atoms must be > 0"),
    ],
)
def test_bad_inputs_raise_clear_errors(model, batch, arguments, message) -> None:
    with pytest.raises(ValueError, match=message):
        model(input_ids=batch["input_ids"], **arguments)


def test_trainer_trains_and_evaluates_on_heat_capacity_labels(tmp_path) -> None:
    """With ``label_names`` set to the label columns present, Trainer reports a finite eval loss."""
    torch.manual_seed(0)
    input_ids = torch.randint(5, 40, (16, 6))
    input_ids[:, 0] = 0
    n_atoms = torch.randint(1, 10, (16,))
    labels = debye.heat_capacity(torch.linspace(100.0, 900.0, 16), 300.0, n_atoms)
    dataset = Dataset.from_dict(
        {
            "input_ids": input_ids.tolist(),
            "temperature": [300.0] * 16,
            "n_atoms": n_atoms.tolist(),
            "heat_capacity_labels": labels.tolist(),
        }
    )
    arguments = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_train_epochs=1,
        learning_rate=1e-3,
        label_names=["heat_capacity_labels"],
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=CloudDebyeModel(tiny_config()), args=arguments, train_dataset=dataset, eval_dataset=dataset
    )
    trainer.train()
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and metrics["eval_loss"] > 0
    predictions = trainer.predict(dataset)
    debye_temperature = predictions.predictions[0]
    assert debye_temperature.shape == (16,) and (debye_temperature > 0).all()
