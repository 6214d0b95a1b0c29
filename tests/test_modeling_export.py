"""The encoder inside transformers' machinery: attention implementations, output capture, export and compile with a
padded mask, and hidden states that stay in the graph."""

from __future__ import annotations

import pytest
import torch

from cloud_hf import CloudDebyeModel, CloudForClassification, CloudForMaskedLM, CloudForRegression, CloudModel
from cloud_hf.modeling_cloud_thermo import CloudThermoModel, thermo_config
from test_modeling import VOCAB_SIZE, tiny_config


def padded_batch() -> dict[str, torch.Tensor]:
    """Three right-padded rows with 9, 6 and 4 real tokens."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, VOCAB_SIZE, (3, 9), generator=generator)
    input_ids[:, 0] = 0
    attention_mask = torch.ones_like(input_ids)
    for row, real in enumerate((9, 6, 4)):
        input_ids[row, real - 1] = 2
        input_ids[row, real:] = 1
        attention_mask[row, real:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.fixture
def model() -> CloudModel:
    torch.manual_seed(0)
    return CloudModel(tiny_config()).eval()


def test_attention_implementations_agree_in_float32(model):
    inputs = padded_batch()
    outputs = {}
    for implementation in ("sdpa", "eager", "flex_attention"):
        model.set_attn_implementation(implementation)
        assert model.config._attn_implementation == implementation
        with torch.no_grad():
            outputs[implementation] = model(**inputs).last_hidden_state
    torch.testing.assert_close(outputs["eager"], outputs["sdpa"], atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs["flex_attention"], outputs["sdpa"], atol=1e-5, rtol=0)


def test_attn_implementation_argument_reaches_the_config(tmp_path):
    CloudModel(tiny_config()).save_pretrained(tmp_path)
    assert CloudModel.from_pretrained(tmp_path, attn_implementation="eager").config._attn_implementation == "eager"
    assert CloudModel.from_pretrained(tmp_path).config._attn_implementation == "sdpa"


def test_dense_and_packed_paths_give_the_same_states(model):
    inputs = padded_batch()
    with torch.no_grad():
        packed = model(**inputs).last_hidden_state  # eager execution of a padded batch: packed path
        dense = model(**inputs, output_hidden_states=True)  # hidden states requested: dense path
    torch.testing.assert_close(dense.last_hidden_state, packed, atol=1e-6, rtol=0)
    assert dense.hidden_states[-1] is dense.last_hidden_state
    mask = inputs["attention_mask"].bool()
    for states in (packed, *dense.hidden_states):
        assert torch.all(states[~mask] == 0)  # padding positions are zeros on both paths


def test_hidden_states_are_the_tensors_the_next_layer_uses(model):
    """Gradient × activation attribution: ``retain_grad`` on returned hidden states gets the gradient."""
    output = model(**padded_batch(), output_hidden_states=True)
    assert len(output.hidden_states) == model.config.num_hidden_layers + 1
    for states in output.hidden_states:
        states.retain_grad()
    readout = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    (output.last_hidden_state[:, 0] @ readout).sum().backward()  # a plain sum is flat through the final LayerNorm
    for index, states in enumerate(output.hidden_states):
        assert states.grad is not None, f"hidden_states[{index}] is not in the graph"
        assert states.grad[:, 0].abs().sum() > 0


def test_attentions_are_returned_and_masked(model):
    output = model(**padded_batch(), output_attentions=True)  # sdpa cannot return them: eager for this call
    assert len(output.attentions) == model.config.num_hidden_layers
    probabilities = output.attentions[0]
    assert probabilities.shape == (3, 4, 9, 9)
    assert torch.all(probabilities[2, :, :, 4:] == 0)  # no attention to row 2's padding
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(3, 4, 9))


def test_torch_export_with_a_padded_mask(model):
    inputs = padded_batch()
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
        program = torch.export.export(model, args=(), kwargs=inputs)
        exported = program.module()(**inputs).last_hidden_state
    torch.testing.assert_close(exported, expected, atol=1e-5, rtol=0)


def test_onnx_export_with_a_padded_mask(model, tmp_path):
    import onnx  # in the test extra (and the export extra): a missing install fails here instead of skipping
    inputs = padded_batch()
    path = tmp_path / "cloud.onnx"
    torch.onnx.export(model, args=(), kwargs=inputs, f=str(path), dynamo=True, external_data=False)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert [value.name for value in graph.graph.input] == ["input_ids", "attention_mask"]


def test_compile_fullgraph_with_a_padded_mask(model):
    inputs = padded_batch()
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(**inputs).last_hidden_state, expected, atol=1e-5, rtol=0)


TEMPERATURES = torch.tensor([[50.0, 300.0], [100.0, 300.0], [300.0, 1000.0]])
"""Temperatures (K) per crystal of :func:`padded_batch`, for the temperature-dependent heads."""

HEADS = {
    # head class name: (model, extra forward inputs, the output compared)
    "CloudForMaskedLM": (lambda: CloudForMaskedLM(tiny_config()), {}, "logits"),
    "CloudForRegression": (lambda: CloudForRegression(tiny_config(target_names=["a", "b"])), {}, "predictions"),
    "CloudForClassification": (lambda: CloudForClassification(tiny_config(num_labels=3)), {}, "logits"),
    "CloudDebyeModel": (lambda: CloudDebyeModel(tiny_config()),
                        {"temperature": TEMPERATURES, "n_atoms": torch.tensor([2, 8, 5])}, "heat_capacity"),
    "CloudThermoModel-dos": (lambda: CloudThermoModel(thermo_config(tiny_config(), thermo_head="dos", thermo_members=2)),
                             {"temperature": TEMPERATURES, "n_atoms": torch.tensor([2, 8, 5])}, "heat_capacity"),
    "CloudThermoModel-debye-einstein": (
        lambda: CloudThermoModel(thermo_config(tiny_config(), thermo_head="debye-einstein", thermo_members=2)),
        {"temperature": TEMPERATURES, "n_atoms": torch.tensor([2, 8, 5])}, "heat_capacity"),
}
"""Every head class the package exports (and both thermodynamics heads), with what its forward needs."""


def head_and_inputs(name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor], str]:
    build, extra, output = HEADS[name]
    torch.manual_seed(0)
    return build().eval(), {**padded_batch(), **extra}, output


@pytest.mark.parametrize("name", list(HEADS))
def test_torch_export_of_every_head(name):
    head, inputs, output = head_and_inputs(name)
    with torch.no_grad():
        expected = getattr(head(**inputs), output)
        program = torch.export.export(head, args=(), kwargs=inputs)
        torch.testing.assert_close(getattr(program.module()(**inputs), output), expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", list(HEADS))
def test_torch_export_of_every_head_with_dynamic_shapes_before_any_eager_call(name):
    """Batch, length and temperature count dynamic; traced first (nothing cached while tracing: the quadrature tables
    made inside a trace must not be reused eagerly), then run on a smaller batch."""
    from cloud_hf import debye, quadrature

    quadrature._table.cache_clear()
    debye._debye_function_tables.cache_clear()
    head, inputs, output = head_and_inputs(name)
    shapes = {key: {axis: torch.export.Dim.AUTO for axis in range(value.dim())} for key, value in inputs.items()}
    with torch.no_grad():
        program = torch.export.export(head, args=(), kwargs=inputs, dynamic_shapes=shapes)
        smaller = {key: value[:2, :7] if key == "input_ids" or key == "attention_mask" else value[:2]
                   for key, value in inputs.items()}
        torch.testing.assert_close(getattr(program.module()(**smaller), output), getattr(head(**smaller), output),
                                   atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", list(HEADS))
def test_onnx_export_of_every_head(name, tmp_path):
    import onnx

    head, inputs, _ = head_and_inputs(name)
    path = tmp_path / "head.onnx"
    with torch.no_grad():
        torch.onnx.export(head, args=(), kwargs=inputs, f=str(path), dynamo=True, external_data=False)
    onnx.checker.check_model(onnx.load(str(path)))


@pytest.mark.parametrize("name", ["CloudDebyeModel", "CloudThermoModel-dos"])
def test_eager_calls_still_refuse_bad_temperatures(name):
    """The value check skipped inside traced graphs still holds for every eager call."""
    head, inputs, _ = head_and_inputs(name)
    inputs["temperature"] = torch.tensor([[300.0, -1.0], [300.0, 300.0], [300.0, float("nan")]])
    with pytest.raises(ValueError, match=r"temperature must be finite and > 0 K, got \[-1\.0, nan\]"):
        head(**inputs)


def test_heads_return_tuples_on_request():
    torch.manual_seed(0)
    debye = CloudDebyeModel(tiny_config()).eval()
    inputs = padded_batch()
    with torch.no_grad():
        as_dict = debye(**inputs, temperature=torch.tensor([300.0, 300.0, 300.0]))
        as_tuple = debye(**inputs, temperature=torch.tensor([300.0, 300.0, 300.0]), return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.debye_temperature)
    torch.testing.assert_close(as_tuple[1], as_dict.heat_capacity)
