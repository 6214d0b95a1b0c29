"""The thermodynamics heads: consistency by construction, limits, ensembles, checkpoints and the pipeline contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.debye import GAS_CONSTANT
from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.modeling_cloud import CloudModel
from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.modeling_cloud_thermo import CloudThermoModel, thermo_config
from cloud_hf.property_heads import prediction_inputs, property_records
from cloud_hf.thermodynamics import KELVIN_PER_WAVENUMBER

TINY = {"vocab_size": 40, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 16, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "head_dropout": 0.0}
HEADS = ["dos", "debye-einstein"]


def tiny_model(head: str, members: int = 3, **settings) -> CloudThermoModel:
    torch.manual_seed(0)
    model = CloudThermoModel(thermo_config(CloudConfig(**TINY), thermo_head=head, thermo_members=members, **settings))
    return model.eval()


def batch():
    input_ids = torch.tensor([[0, 5, 7, 9, 2], [0, 6, 8, 2, 1]])
    return {"input_ids": input_ids, "attention_mask": (input_ids != 1).long()}


@pytest.mark.parametrize("head", HEADS)
def test_autograd_identities_hold_for_every_head(head):
    """C_v = ∂U/∂T, S = −∂F/∂T and U = F + TS, for the ensemble mean (float64 thermodynamics)."""
    model = tiny_model(head).double()
    temperature = torch.tensor([[5.0, 60.0, 300.0, 1500.0]] * 2, dtype=torch.float64, requires_grad=True)
    output = model(**batch(), temperature=temperature, n_atoms=torch.tensor([2, 5]))
    (d_energy,) = torch.autograd.grad(output.internal_energy.sum(), temperature, retain_graph=True)
    (d_free,) = torch.autograd.grad(output.free_energy.sum(), temperature)
    torch.testing.assert_close(d_energy, output.heat_capacity, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(-d_free, output.entropy, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(output.free_energy + temperature * output.entropy, output.internal_energy,
                               rtol=1e-12, atol=1e-8)


@pytest.mark.parametrize("head", HEADS)
def test_dulong_petit_and_zero_point_limits(head):
    model = tiny_model(head, members=1).double()
    n_atoms = torch.tensor([2, 5])
    hot = model(**batch(), temperature=torch.tensor([1e6], dtype=torch.float64), n_atoms=n_atoms)
    torch.testing.assert_close(hot.heat_capacity[:, 0], 3 * GAS_CONSTANT * n_atoms.double(), rtol=1e-6, atol=0)
    cold = model(**batch(), temperature=torch.tensor([0.1], dtype=torch.float64), n_atoms=n_atoms)
    assert float(cold.heat_capacity.detach().max()) < 1e-3 and float(cold.entropy.detach().max()) < 1e-3
    # the zero-point energy: (R/2) Σ θ over modes, from the exposed spectrum
    if head == "dos":
        grid = model.frequencies.double().numpy()
        g = cold.dos.detach().numpy()
        segments = sum((r - lft) * (lft * (2 * a + b) + r * (a + 2 * b)) / 6 for lft, r, a, b in
                       zip(grid[:-1], grid[1:], g[:, :-1].T, g[:, 1:].T))
        first_moment = segments + g[:, 0] * grid[0] ** 2 / 4  # the Debye onset's ∫ω g dω
    else:  # 3 acoustic modes per cell at mean frequency (3/4)·ω_D, plus the Einstein modes
        raw = torch.stack([member(**batch())[0] for member in model.members], 1)
        spectra = model._spectra(raw[..., :-1], n_atoms)
        acoustic = 3 * 0.75 * spectra.debye_frequency[:, 0]
        optical = (spectra.einstein_frequencies * spectra.einstein_modes).sum(-1)[:, 0]
        first_moment = (acoustic + optical).detach().numpy()
    expected = GAS_CONSTANT / 2 * KELVIN_PER_WAVENUMBER * first_moment
    np.testing.assert_allclose(cold.internal_energy[:, 0].detach().numpy(), expected, rtol=1e-9)


def test_dos_head_spectrum_is_non_negative_and_normalised_to_3n_modes():
    model = tiny_model("dos")
    output = model(**batch(), n_atoms=torch.tensor([2, 7]))
    grid = model.frequencies
    modes = torch.trapezoid(output.dos, grid, dim=-1) + output.dos[:, 0] * grid[0] / 3
    torch.testing.assert_close(modes, torch.tensor([6.0, 21.0]), rtol=1e-5, atol=0)
    assert bool((output.dos > 0).all()) and output.dos.shape == (2, grid.numel())


def test_debye_einstein_puts_three_acoustic_modes_per_cell():
    model = tiny_model("debye-einstein", members=1)
    output = model(**batch(), n_atoms=torch.tensor([1, 4]))
    torch.testing.assert_close(output.einstein_modes.sum(-1)[:, 0], torch.tensor([0.0, 9.0]))


def test_ensemble_std_is_the_member_spread_times_the_scale():
    model = tiny_model("dos", members=4, thermo_std_scale=1.5)
    output = model(**batch(), temperature=[100.0, 300.0], n_atoms=torch.tensor([2, 3]))
    members = output.member_heat_capacity
    torch.testing.assert_close(output.heat_capacity, members.mean(1))
    torch.testing.assert_close(output.heat_capacity_std, 1.5 * members.std(1))
    assert float(output.heat_capacity_std.detach().min()) > 0
    single = tiny_model("dos", members=1)(**batch(), temperature=[300.0])
    assert float(single.heat_capacity_std.abs().max()) == 0


@pytest.mark.parametrize("head", HEADS)
def test_save_and_load_with_from_pretrained(head, tmp_path):
    model = tiny_model(head)
    model.save_pretrained(tmp_path)
    loaded = CloudThermoModel.from_pretrained(tmp_path).eval()
    kwargs = {"temperature": [50.0, 300.0], "n_atoms": torch.tensor([2, 3])}
    torch.testing.assert_close(loaded(**batch(), **kwargs).heat_capacity, model(**batch(), **kwargs).heat_capacity)
    assert loaded.config.thermo_head == head and loaded.config.thermo_members == 3


def test_from_encoder_copies_the_encoder_into_every_member(tmp_path):
    torch.manual_seed(1)
    encoder = CloudDebyeModel(CloudConfig(**TINY))
    encoder.save_pretrained(tmp_path)
    model = CloudThermoModel.from_encoder(tmp_path, thermo_head="dos", thermo_members=2)
    for member in model.members:
        for name, value in encoder.cloud.state_dict().items():
            torch.testing.assert_close(member.cloud.state_dict()[name], value)
    assert not torch.equal(model.members[0].head.out_proj.weight, model.members[1].head.out_proj.weight)


def _ragged_batch() -> dict[str, torch.Tensor]:
    """Six crystals of 3 to 7 tokens (right padding): the packed path, with more rows than its 4-row minimum."""
    lengths = [7, 3, 5, 6, 4, 7]
    input_ids = torch.full((len(lengths), max(lengths)), 1)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.tensor([0, *range(5 + row, 3 + row + length), 2])
    return {"input_ids": input_ids, "attention_mask": (input_ids != 1).long()}


def _outputs_and_gradients(model: CloudThermoModel) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model.zero_grad()
    labels = torch.tensor([[40.0], [30.0], [20.0], [45.0], [35.0], [25.0]])
    output = model(**_ragged_batch(), temperature=[300.0], n_atoms=torch.tensor([2, 1, 3, 2, 4, 2]),
                   heat_capacity_labels=labels)
    output.loss.backward()
    values = {name: value.detach() for name, value in output.items() if isinstance(value, torch.Tensor)}
    return values, {name: parameter.grad.clone() for name, parameter in model.named_parameters()
                    if parameter.grad is not None}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_first_token_only_encoder_path_gives_the_full_stack_outputs_and_gradients(mode, monkeypatch):
    """The members read [CLS] through ``CloudModel(first_token_only=True)``; the last layer then runs its
    feed-forward on the [CLS] rows alone (eval mode only). Outputs, loss and the gradients of every member's
    parameters are those of the full stack (every position through every layer, as before)."""
    torch.manual_seed(0)
    config = thermo_config(CloudConfig(**{**TINY, "num_hidden_layers": 2}), thermo_head="dos", thermo_members=3)
    model = getattr(CloudThermoModel(config), mode)()
    fast, fast_grads = _outputs_and_gradients(model)
    full_forward = CloudModel.forward

    def full_stack(self, *args, first_token_only=False, **kwargs):
        return full_forward(self, *args, **kwargs)  # [:, 0] of the full last_hidden_state, as before

    monkeypatch.setattr(CloudModel, "forward", full_stack)
    full, full_grads = _outputs_and_gradients(model)
    assert fast.keys() == full.keys() and fast_grads.keys() == full_grads.keys()
    for index in range(3):  # every member's encoder and head is trained
        assert any(name.startswith(f"members.{index}.cloud.layers.1.") for name in fast_grads)
        assert any(name.startswith(f"members.{index}.head.") for name in fast_grads)
    for name in full:
        torch.testing.assert_close(fast[name], full[name], rtol=1e-6, atol=1e-6, msg=name)
    for name in full_grads:
        torch.testing.assert_close(fast_grads[name], full_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    if mode == "train":  # the full stack runs in training (the dropout draws stay as they were)
        assert all(torch.equal(fast_grads[name], full_grads[name]) for name in full_grads)


def test_first_token_only_returns_position_zero_on_every_path():
    """(batch, 1, hidden) on the packed path, the dense path (no padding) and with hidden states requested."""
    torch.manual_seed(0)
    encoder = CloudModel(CloudConfig(**{**TINY, "num_hidden_layers": 2})).eval()
    ragged = _ragged_batch()
    square = {"input_ids": ragged["input_ids"][:, :3], "attention_mask": ragged["attention_mask"][:, :3]}
    for inputs, options in ((ragged, {}), (square, {}), (ragged, {"output_hidden_states": True})):
        full = encoder(**inputs, **options).last_hidden_state
        first = encoder(**inputs, **options, first_token_only=True).last_hidden_state
        assert first.shape == (full.shape[0], 1, full.shape[2])
        torch.testing.assert_close(first, full[:, :1], rtol=1e-6, atol=1e-6)


def test_masked_loss_skips_nan_labels_and_weights_members():
    model = tiny_model("dos", members=2).train()
    temperature = torch.tensor([100.0, 300.0])
    labels = torch.tensor([[10.0, math.nan], [math.nan, math.nan]])
    output = model(**batch(), temperature=temperature, n_atoms=torch.tensor([2, 2]), heat_capacity_labels=labels,
                   dos_labels=torch.full((2, 50), math.nan), agl_theta_labels=torch.tensor([math.nan, 300.0]))
    assert torch.isfinite(output.loss)
    output.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    # a member whose every crystal has weight 0 contributes nothing: the loss is the other member's alone
    model.eval()
    kwargs = {"temperature": temperature, "n_atoms": torch.tensor([2, 2]), "heat_capacity_labels": labels}
    both = model(**batch(), **kwargs).loss
    only_second = model(**batch(), **kwargs, member_weights=torch.tensor([[0.0, 1.0], [0.0, 1.0]])).loss
    member_heat = model(**batch(), temperature=temperature, n_atoms=torch.tensor([2, 2])).member_heat_capacity
    expected = (member_heat[0, 1, 0] - 10.0).abs() / (6 * GAS_CONSTANT)
    torch.testing.assert_close(only_second, expected)
    assert float(both.detach()) > float(only_second.detach())


def test_cumulative_modes_are_the_exact_integral_of_the_piecewise_linear_dos():
    from scipy.integrate import cumulative_trapezoid

    from cloud_hf.thermodynamics import cumulative_modes

    grid = torch.linspace(20.0, 1000.0, 50, dtype=torch.float64)
    density = torch.rand(3, 50, dtype=torch.float64)
    expected = density[:, :1].numpy() * 20.0 / 3.0 + cumulative_trapezoid(density.numpy(), grid.numpy(), initial=0)
    np.testing.assert_allclose(cumulative_modes(density, grid).numpy(), expected, rtol=1e-12)


def test_cumulative_dos_loss_grows_with_a_peak_shift_where_the_bin_loss_saturates():
    """The earth mover's distance between a spectrum and its peak moved by k bins grows as k; the per-bin L1 stops
    growing once the peaks no longer overlap (and so gives no direction towards a far-off peak)."""
    from cloud_hf.thermodynamics import cumulative_modes

    grid = torch.arange(20.0, 1001.0, 20.0, dtype=torch.float64)

    def peak(centre: float) -> torch.Tensor:
        density = torch.exp(-0.5 * ((grid - centre) / 15.0) ** 2)
        return 3.0 * density / torch.trapezoid(density, grid)

    reference = peak(300.0)
    bins = [float((peak(300.0 + shift) - reference).abs().mean()) for shift in (100.0, 200.0, 400.0)]
    earth_mover = [float((cumulative_modes(peak(300.0 + shift), grid) - cumulative_modes(reference, grid))
                         .abs().mean()) for shift in (100.0, 200.0, 400.0)]
    np.testing.assert_allclose(np.array(earth_mover) / earth_mover[0], [1.0, 2.0, 4.0], rtol=1e-3)
    np.testing.assert_allclose(np.array(bins) / bins[0], [1.0, 1.0, 1.0], rtol=1e-3)


def test_dos_loss_weight_scales_only_the_dos_term():
    labels = {"temperature": torch.tensor([300.0]), "n_atoms": torch.tensor([2, 2]),
              "heat_capacity_labels": torch.tensor([[40.0], [45.0]])}
    dos = torch.full((2, 50), 3.0 / 1000.0)
    losses = {}
    for weight in (1.0, 0.1):
        model = tiny_model("dos", members=1, thermo_dos_loss_weight=weight).eval()
        with torch.no_grad():
            losses[weight] = (float(model(**batch(), **labels, dos_labels=dos).loss),
                              float(model(**batch(), **labels).loss))
    heat_only = losses[1.0][1]
    assert losses[0.1][1] == pytest.approx(heat_only)
    assert losses[0.1][0] - heat_only == pytest.approx(0.1 * (losses[1.0][0] - heat_only), rel=1e-5)


def test_pipeline_contract_records_with_std_and_equivalent_theta():
    model = tiny_model("dos")
    n_atoms = torch.tensor([2, 4])
    inputs = prediction_inputs(model, n_atoms, [100.0, 300.0])
    assert inputs["temperature"].shape == (2, 2)
    with torch.no_grad():
        output = model(**batch(), **inputs)
    records = property_records(model, output, [2, 4], [100.0, 300.0])
    assert len(records) == 2
    by_name = {(r["property"], r["temperature"]): r for r in records[1]}
    heat = by_name[("heat_capacity", 300.0)]
    per_atom = by_name[("heat_capacity_per_atom", 300.0)]
    assert per_atom["value"] == pytest.approx(heat["value"] / 4) and per_atom["std"] == pytest.approx(heat["std"] / 4)
    assert {r["property"] for r in records[1]} == {"heat_capacity", "heat_capacity_per_atom", "entropy",
                                                    "internal_energy", "free_energy", "debye_temperature"}
    theta = by_name[("debye_temperature", 300.0)]
    from cloud_hf.debye import heat_capacity

    assert float(heat_capacity(theta["value"], 300.0, 4)) == pytest.approx(heat["value"], rel=1e-6)
    assert all("std" in record and record["unit"] for record in records[0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"temperature": [0.0]}, "temperature must be finite and > 0 K"),
    ({"temperature": [float("nan")]}, "temperature must be finite and > 0 K"),
    ({"temperature": [300.0], "n_atoms": torch.tensor([2, 0])}, r"n_atoms must be > 0; rows \[1\]"),
    ({"temperature": [300.0], "n_atoms": torch.tensor([2, 2, 2])}, "n_atoms has 3 entries for a batch of 2"),
])
def test_bad_inputs_name_the_argument(kwargs, message):
    with pytest.raises(CloudDataError, match=message):
        tiny_model("dos")(**batch(), **kwargs)


@pytest.mark.parametrize("option", [["--mass_scaling", "true", "--composition_features", "false"], []])
def test_composition_features_and_mass_scaling_are_refused_for_the_debye_head(option):
    _, model, _ = parse_options(["recipes/configs/thermo_smoke.yaml", "--head", "debye", *option])
    from cloud_hf.training.thermo import build_model

    with pytest.raises(CloudConfigError, match="composition_features, mass_scaling and cell_features are options of the thermo"):
        build_model(model, [])


def test_unknown_head_is_a_config_error():
    with pytest.raises(CloudConfigError, match="thermo_head must be one of"):
        thermo_config(CloudConfig(**TINY), thermo_head="lorentz")


def test_a_config_naming_the_debye_head_is_refused_not_built_as_debye_einstein():
    """A config written by hand (not through thermo_config) with thermo_head "debye" once built a debye-einstein
    head in silence."""
    config = thermo_config(CloudConfig(**TINY), thermo_head="dos")
    config.thermo_head = "debye"
    with pytest.raises(CloudConfigError, match=r"thermo_head must be one of \('dos', 'debye-einstein'\), got 'debye'"):
        CloudThermoModel(config)


def parse_options(argv):
    from cloud_hf.training import CloudTrainingArguments, parse_recipe_arguments
    from cloud_hf.training.thermo import ThermoDataArguments, ThermoModelArguments

    return parse_recipe_arguments((ThermoDataArguments, ThermoModelArguments, CloudTrainingArguments), argv)


def test_recipe_options_read_yaml_then_the_command_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: out\nhead: debye-einstein\nlabels: [cv_curve, entropy]\nmembers: 2\n"
                      "num_train_epochs: 3\nmax_train_rows: null\n")
    data, model, training = parse_options([str(config), "--members", "4", "--labels", "cv_300"])
    assert (model.head, model.members, data.labels, data.max_train_rows) == ("debye-einstein", 4, ["cv_300"], None)
    assert training.num_train_epochs == 3 and training.output_dir == "out"
    with pytest.raises(CloudConfigError, match="labels must be a non-empty subset"):
        parse_options([str(config), "--labels", "phonons"])
    with pytest.raises(CloudConfigError, match=r"invalid choice: 'einstein'"):
        parse_options([str(config), "--head", "einstein"])
    config.write_text("head: einstein\n")
    with pytest.raises(CloudConfigError, match="head must be one of"):
        parse_options([str(config)])
    config.write_text("members: 2\nhead_dropuot: 0.2\n")
    with pytest.raises(CloudConfigError, match=r"unknown key head_dropuot \(did you mean 'head_dropout'\?\)"):
        parse_options([str(config)])


def test_collator_pads_stacks_and_passes_only_what_the_model_takes():
    from cloud_hf.training.thermo_data import ThermoCollator

    examples = [{"input_ids": [0, 5, 2], "n_atoms": 2.0, "heat_capacity_labels": np.array([1.0, np.nan], "f4"),
                 "entropy_labels": np.array([np.nan, 3.0], "f4"), "dos_labels": np.zeros(50, "f4"),
                 "agl_theta_labels": np.float32(np.nan)},
                {"input_ids": [0, 6, 7, 2], "n_atoms": 4.0, "heat_capacity_labels": np.array([2.0, 5.0], "f4"),
                 "entropy_labels": np.array([1.0, 3.0], "f4"), "dos_labels": np.zeros(50, "f4"),
                 "agl_theta_labels": np.float32(300.0)}]
    for row, example in enumerate(examples):
        example["cell_features"] = np.full(4, row, "f4")
    thermo = ThermoCollator(1, [100.0, 300.0], tiny_model("dos", members=3), members=3, bootstrap=True)(examples)
    assert thermo["cell_features"].tolist() == [[0.0] * 4, [1.0] * 4]
    assert thermo["input_ids"].tolist() == [[0, 5, 2, 1], [0, 6, 7, 2]]
    assert thermo["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert thermo["temperature"].shape == (2, 2) and thermo["member_weights"].shape == (2, 3)
    debye = ThermoCollator(1, [100.0, 300.0], CloudDebyeModel(CloudConfig(**TINY)))(examples)
    assert set(debye) == {"input_ids", "attention_mask", "n_atoms", "temperature", "heat_capacity_labels"}
    loss = tiny_model("dos", members=3).train()(**thermo).loss
    assert torch.isfinite(loss)


@pytest.mark.slow
def test_smoke_recipe_trains_saves_and_reports(tmp_path):
    from cloud_hf.phonons import DEFAULT_PHONON_FILE
    from cloud_hf.training.thermo import train_thermo

    if not DEFAULT_PHONON_FILE.is_file():
        pytest.skip(f"{DEFAULT_PHONON_FILE} is not present")
    data, model, training = parse_options(["recipes/configs/thermo_smoke.yaml", "--output_dir", str(tmp_path)])
    run = train_thermo(data, model, training)
    loaded = CloudThermoModel.from_pretrained(tmp_path / "model")
    assert loaded.config.thermo_members == 2 and loaded.config.thermo_std_scale > 0
    # the composition tables travel in the checkpoint: Na and Cl rows are filled, [PAD]'s is not
    assert loaded.config.thermo_composition_features and loaded.config.thermo_cumulative_dos_loss_weight == 1.0
    vocab = run.tokenizer.get_vocab()
    assert loaded.composition_is_element[vocab["Na"]] == 1 and loaded.composition_is_element[vocab["[PAD]"]] == 0
    assert set(run.test_metrics) >= {"cv_mae_50K", "cv_mae_300K", "s_mae_300K", "cv_within_2sigma_300K"}


def test_recipe_script_saves_checkpoints_without_pickles(tmp_path):
    """recipes/thermo.py runs on the training package's CloudTrainer: checkpoint options as training_args.json."""
    import importlib.util
    import json
    from pathlib import Path

    from cloud_hf.phonons import DEFAULT_PHONON_FILE

    if not DEFAULT_PHONON_FILE.is_file():
        pytest.skip(f"{DEFAULT_PHONON_FILE} is not present")
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("recipe_thermo", root / "recipes" / "thermo.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    recipe.main([str(root / "recipes" / "configs" / "thermo_smoke.yaml"), "--output_dir", str(tmp_path),
                 "--max_train_rows", "8", "--members", "1", "--max_steps", "1", "--save_strategy", "steps",
                 "--save_steps", "1", "--seed", "3"])
    checkpoint = tmp_path / "checkpoint-1"
    assert not (checkpoint / "training_args.bin").exists()
    assert json.loads((checkpoint / "training_args.json").read_text())["seed"] == 3
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["train_examples"] == 8 and report["options"]["model"]["members"] == 1
    assert set(report["test"]) >= {"cv_mae_50K", "cv_mae_300K", "s_mae_300K"}


def test_pipeline_keeps_every_row_and_reports_std(tmp_path):
    """A thermo checkpoint in the crystal-property-prediction pipeline: one result per input, failures named."""
    from pymatgen.core import Lattice, Structure
    from transformers import pipeline

    import cloud_hf  # noqa: F401  (registers the pipeline task)
    from cloud_hf.scope import ScopeEncoder, canonical_vocabulary
    from cloud_hf.tokenization_cloud import CloudTokenizerFast

    tokenizer = CloudTokenizerFast.from_scope_vocabulary(canonical_vocabulary(), ScopeEncoder().to_dict(),
                                                         model_max_length=16)
    config = thermo_config(CloudConfig(**{**TINY, "vocab_size": len(tokenizer)}, scope=tokenizer.scope_config),
                           thermo_members=2)
    torch.manual_seed(0)
    CloudThermoModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    predictor = pipeline("crystal-property-prediction", model=str(tmp_path), device="cpu")
    rock_salt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    disordered = Structure(Lattice.cubic(3.7), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    results = predictor([rock_salt, disordered, rock_salt.copy()], temperatures=[50.0, 300.0], batch_size=2)
    assert [result["error"] is None for result in results] == [True, False, True]
    assert "partial" in results[1]["error"] or "disorder" in results[1]["error"].lower()
    records = {(r["property"], r.get("temperature")): r for r in results[0]["properties"]}
    assert records[("heat_capacity_per_atom", 300.0)]["std"] > 0
    assert records[("heat_capacity", 300.0)]["value"] == pytest.approx(
        results[0]["n_atoms"] * records[("heat_capacity_per_atom", 300.0)]["value"])
    assert results[0]["properties"] == results[2]["properties"]


@pytest.mark.parametrize("options, message", [
    (["--eval_strategy", "epoch", "--std_scale", "4.7"],
     "final_fit trains on the validation crystals too: set eval_strategy 'no'"),
    (["--calibrate_std", "false"], "final_fit leaves no validation crystals to fit the ensemble std scale on"),
])
def test_final_fit_needs_a_fixed_epoch_count_and_a_given_std_scale(options, message):
    from cloud_hf.training.thermo import check_final_fit

    data, model, training = parse_options(["recipes/configs/thermo_smoke.yaml", "--final_fit", "true", *options])
    with pytest.raises(CloudConfigError, match=message):
        check_final_fit(data, model, training)


def test_final_fit_with_a_given_std_scale_is_accepted():
    from cloud_hf.training.thermo import check_final_fit

    check_final_fit(*parse_options(["recipes/configs/thermo_smoke.yaml", "--final_fit", "true", "--std_scale", "4.7"]))


def test_final_fit_trains_on_every_crystal_but_the_test_split():
    from cloud_hf.phonons import DEFAULT_PHONON_FILE, load_phonon_table
    from cloud_hf.training.thermo import thermo_splits

    if not DEFAULT_PHONON_FILE.is_file():
        pytest.skip(f"{DEFAULT_PHONON_FILE} is not present")
    table = load_phonon_table()
    data, _, _ = parse_options(["recipes/configs/thermo_smoke.yaml", "--max_train_rows", "null"])
    train, validation, test = thermo_splits(data, table)
    data.final_fit = True
    final_train, final_validation, final_test = thermo_splits(data, table)
    assert sorted(final_train.mp_ids) == sorted(train.mp_ids + validation.mp_ids)
    assert not set(final_train.mp_ids) & set(test.mp_ids) and len(final_train) + len(test) == len(table)
    assert final_validation.mp_ids == validation.mp_ids and final_test.mp_ids == test.mp_ids


class _LabelTable:
    """A stand-in for a PhononTable: the same C_v truth at every temperature asked for."""

    def __init__(self, truth: np.ndarray):
        self.truth = truth

    def thermo_labels(self, wanted):
        assert len(wanted) == self.truth.shape[1]
        return self.truth, self.truth


def test_std_scale_puts_the_target_share_of_truths_within_two_sigma():
    from cloud_hf.training.thermo_evaluation import (
        EVAL_TEMPERATURES,
        fit_std_scale,
        pooled_std_scale,
        scaled_std,
    )

    n, temperatures = 200, len(EVAL_TEMPERATURES) + 1
    truth = np.full((n, temperatures), 20.0)
    generator = np.random.default_rng(0)
    sigma = generator.uniform(0.1, 1.0, (n, temperatures))
    prediction = {"heat_capacity": truth + sigma * generator.standard_t(3, (n, temperatures)),
                  "heat_capacity_std": sigma / 3.0, "entropy": truth, "entropy_std": sigma}
    scale = fit_std_scale(prediction, _LabelTable(truth), target_coverage=0.9)
    scaled = scaled_std(prediction, scale)
    within = np.abs(scaled["heat_capacity"] - truth)[:, :-1] <= 2.0 * scaled["heat_capacity_std"][:, :-1]
    assert within.mean() == pytest.approx(0.9, abs=1.0 / within.size)
    assert scaled["entropy"] is prediction["entropy"]
    np.testing.assert_allclose(scaled["entropy_std"], sigma * scale)
    # pooled over the two halves = fitted on the whole; one half alone is not
    halves = [({name: value[rows] for name, value in prediction.items()}, _LabelTable(truth[rows]))
              for rows in (slice(0, n // 2), slice(n // 2, n))]
    assert pooled_std_scale(halves, target_coverage=0.9) == pytest.approx(scale, rel=1e-12)
    assert fit_std_scale(*halves[0], target_coverage=0.9) != pytest.approx(scale, rel=1e-3)


def test_source_offsets_start_at_zero_and_move_only_their_source():
    model = tiny_model("dos", members=2, thermo_sources=["phonondb", "petretto", "jarvis"])
    inputs = {**batch(), "temperature": [300.0], "n_atoms": torch.tensor([2, 5])}
    default = model(**inputs).heat_capacity
    torch.testing.assert_close(model(**inputs, source_ids=torch.tensor([2, 1])).heat_capacity, default)
    with torch.no_grad():
        for member in model.members:
            member.source.weight[1].normal_()
    moved = model(**inputs, source_ids=torch.tensor([0, 1])).heat_capacity
    torch.testing.assert_close(moved[0], default[0])  # source 0 (the default) unchanged
    assert not torch.allclose(moved[1], default[1])
    torch.testing.assert_close(model(**inputs).heat_capacity, model(**inputs, source_ids=torch.tensor([0, 0]))
                               .heat_capacity)


def _element_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    from cloud_hf.tokenization_cloud import CloudTokenizerFast

    vocab = {token: index for index, token in enumerate(
        ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]", "Na", "Cl", "4a", "4b", "Cs", "1a", "1b"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return CloudTokenizerFast(tokenizer_object=backend)


def test_unseen_element_share_widens_the_std_in_proportion():
    """NaCl with Cl never seen in training: half its atoms unseen; CsCl: Cs and Cl unseen, all of them."""
    tokenizer = _element_tokenizer()
    model = tiny_model("dos", members=2, vocab_size=len(tokenizer.get_vocab()), thermo_composition_features=True,
                       thermo_training_elements=["Na"])
    model.set_composition_tables(tokenizer)
    ids = torch.tensor([[0, 5, 7, 6, 8, 2], [0, 9, 10, 6, 11, 2], [0, 5, 7, 2, 1, 1]])
    inputs = {"input_ids": ids, "attention_mask": (ids != 1).long(), "temperature": [300.0],
              "n_atoms": torch.tensor([2, 2, 1])}
    narrow = model(**inputs)
    torch.testing.assert_close(narrow.unseen_element_share, torch.tensor([0.5, 1.0, 0.0]))
    model.config.thermo_unseen_element_std = 0.1
    wide = model(**inputs)
    expected = torch.sqrt(narrow.heat_capacity_std**2 + (0.1 * torch.tensor([[0.5], [1.0], [0.0]])
                                                         * narrow.heat_capacity) ** 2)
    torch.testing.assert_close(wide.heat_capacity_std, expected)
    torch.testing.assert_close(wide.heat_capacity, narrow.heat_capacity)
    records = property_records(model, wide, [2, 2, 1], [300.0])
    assert [r["value"] for crystal in records for r in crystal if r["property"] == "unseen_element_share"] == [
        0.5, 1.0, 0.0]


def test_unseen_element_widening_reaches_the_target_coverage():
    from cloud_hf.phonons import LABEL_TEMPERATURES, PhononCrystals
    from cloud_hf.training.thermo_evaluation import fit_unseen_element_std, widened_std

    n, temperatures = 200, [300.0]
    rng = np.random.default_rng(0)
    truth = np.full((n, len(LABEL_TEMPERATURES)), 20.0)
    crystals = PhononCrystals(ids=[str(i) for i in range(n)], sources=["phonondb"] * n, formulas=["NaCl"] * n,
                              n_atoms=np.ones(n), cifs=[""] * n, all_metal=np.zeros(n, bool),
                              imaginary_fraction=np.zeros(n), frequencies=np.asarray([20.0, 40.0]),
                              dos=np.zeros((n, 2)), temperatures=np.asarray(LABEL_TEMPERATURES),
                              heat_capacity=truth, entropy=truth.copy())
    share = np.where(np.arange(n) < 100, 0.0, 0.5)
    value = 20.0 + rng.normal(0, 1.0, (n, 1)) * np.where(share > 0, 4.0, 1.0)[:, None]
    prediction = {"heat_capacity": value, "heat_capacity_std": np.full((n, 1), 0.5), "entropy": value,
                  "entropy_std": np.full((n, 1), 0.5), "unseen_element_share": share}
    kappa = fit_unseen_element_std(prediction, crystals, 2.0, temperatures)
    widened = widened_std(prediction, 2.0, kappa)
    unseen = share > 0
    within = np.abs(value - 20.0)[unseen] <= 2 * widened["heat_capacity_std"][unseen]
    assert within.mean() == pytest.approx(0.95, abs=0.011)
    np.testing.assert_allclose(widened["heat_capacity_std"][~unseen], 1.0)  # 2.0 × 0.5, no widening


def test_sources_smoke_recipe_trains_on_every_source_and_reports_per_source(tmp_path):
    from cloud_hf.phonons import PHONONDB_FILE, SOURCES, WIDE_FREQUENCIES
    from cloud_hf.training.thermo import train_thermo

    if not PHONONDB_FILE.is_file():
        pytest.skip(f"{PHONONDB_FILE} is not present")
    data, model, training = parse_options(["recipes/configs/thermo_sources_smoke.yaml", "--output_dir",
                                           str(tmp_path), "--cache_dir", str(tmp_path / "cache"),
                                           "--holdout_elements", "Be"])
    run = train_thermo(data, model, training)
    loaded = CloudThermoModel.from_pretrained(tmp_path / "model")
    assert loaded.config.thermo_frequencies == WIDE_FREQUENCIES and loaded.config.thermo_sources == list(SOURCES)
    assert "Be" not in loaded.config.thermo_training_elements and loaded.config.thermo_unseen_element_std > 0
    vocab = run.tokenizer.get_vocab()
    assert loaded.composition_unseen_element[vocab["Be"]] == 1 and loaded.composition_unseen_element[vocab["O"]] == 0
    for prefix in ("", "phonondb_", "petretto_", "metals_"):
        assert f"{prefix}cv_mae_300K" in run.test_metrics
    assert run.validation_metrics["shifted_n"] > 0 and "shifted_cv_within_2sigma_300K" in run.validation_metrics
    bad = (tmp_path / "bad_rows_phonons.csv").read_text().splitlines()
    assert bad[0] == "source,file,row,id,reason" and any("unstable:" in line for line in bad[1:])
    assert len(list((tmp_path / "cache").glob("crystal_encodings_*.json"))) == 1


def test_sources_final_fit_encodes_only_what_it_trains_on_and_reports_each_bad_row_once(tmp_path):
    """A final fit trains on the validation crystals: it encodes the crystals it trains on, not the validation
    carve a second time (a crystal of it that could not be encoded was two lines of the bad-rows file)."""
    import json

    import pandas as pd

    from cloud_hf.phonons import PHONONDB_FILE
    from cloud_hf.training.thermo import train_thermo

    if not PHONONDB_FILE.is_file():
        pytest.skip(f"{PHONONDB_FILE} is not present")
    data, model, training = parse_options(["recipes/configs/thermo_sources_smoke.yaml", "--output_dir",
                                           str(tmp_path), "--cache_dir", str(tmp_path / "cache"), "--final_fit",
                                           "true", "--std_scale", "2.0", "--unseen_element_std", "0.1"])
    run = train_thermo(data, model, training, evaluate_test=False)
    assert run.validation_metrics is None and run.model.config.thermo_std_scale == 2.0
    bad = pd.read_csv(tmp_path / "bad_rows_phonons.csv")
    assert len(bad) > 0 and not bad.duplicated(["source", "id"]).any()
    (cache,) = (tmp_path / "cache").glob("crystal_encodings_*.json")
    assert len(json.loads(cache.read_text())) == data.max_train_rows  # the 64 training crystals, nothing else


# --- the thermo settings in the config schema ---------------------------------------------------------------------


def test_thermo_settings_are_declared_once_in_the_config_with_their_defaults():
    config = CloudConfig(**TINY)
    assert config.thermo_settings() == {
        "thermo_head": "dos", "thermo_members": 1, "thermo_frequencies": [float(w) for w in range(20, 1001, 20)],
        "thermo_dos_prior": None, "thermo_num_einstein": 4, "thermo_std_scale": 1.0, "thermo_agl_trained": False,
        "thermo_composition_features": False, "thermo_dos_loss_weight": 1.0,
        "thermo_cumulative_dos_loss_weight": 0.0, "thermo_mass_scaling": False, "thermo_reference_mass": 20.0,
        "thermo_reduced_frequency_step": 10.0, "thermo_reduced_frequency_max": 1200.0,
        "thermo_cell_features": False, "thermo_cell_statistics": None, "thermo_sources": None,
        "thermo_training_elements": None, "thermo_unseen_element_std": 0.0, "thermo_loss_per_crystal": False,
    }


def test_an_old_checkpoint_without_newer_settings_loads_with_their_defaults(tmp_path):
    """Settings added after a checkpoint was saved are filled in by the config on load; building the model does not
    write into the caller's config."""
    import json

    model = tiny_model("dos", members=2, thermo_sources=["phonondb", "jarvis"])
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["thermo_members"] == 2 and saved["thermo_sources"] == ["phonondb", "jarvis"]
    for newer in ("thermo_sources", "thermo_training_elements", "thermo_unseen_element_std", "thermo_loss_per_crystal"):
        saved.pop(newer, None)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = CloudConfig.from_pretrained(tmp_path)
    assert (config.thermo_sources, config.thermo_training_elements, config.thermo_loss_per_crystal) == (None, None, False)
    before = config.to_dict()
    CloudThermoModel(config)
    assert config.to_dict() == before


def test_a_model_without_thermo_head_saves_no_thermo_settings_and_a_thermo_model_all(tmp_path):
    import json

    CloudDebyeModel(CloudConfig(**TINY)).save_pretrained(tmp_path)
    assert not [key for key in json.loads((tmp_path / "config.json").read_text()) if key.startswith("thermo_")]
    thermo = thermo_config(CloudConfig(**TINY), thermo_members=3, thermo_frequencies=[10.0, 20.0])
    thermo.save_pretrained(tmp_path / "thermo")
    saved = json.loads((tmp_path / "thermo" / "config.json").read_text())
    assert {key: value for key, value in saved.items() if key.startswith("thermo_")} == thermo.thermo_settings()
    assert saved["thermo_members"] == 3 and saved["thermo_head"] == "dos"  # defaults written too
    assert CloudConfig.from_pretrained(tmp_path / "thermo").thermo_settings() == thermo.thermo_settings()


@pytest.mark.parametrize(("settings", "message"), [
    ({"thermo_members": 0}, "thermo_members must be ≥ 1, got 0"),
    ({"thermo_frequencies": [20.0, 20.0, 40.0]}, "thermo_frequencies must be strictly increasing"),
    ({"thermo_frequencies": [0.0, 20.0]}, "thermo_frequencies must be strictly increasing and > 0"),
    ({"thermo_dos_prior": [0.0] * 49}, "thermo_dos_prior has 49 values for a DOS grid of 50 points"),
])
def test_the_one_check_of_the_thermo_settings_runs_for_thermo_config_and_for_the_model(settings, message):
    with pytest.raises(CloudConfigError, match=message):
        thermo_config(CloudConfig(**TINY), **settings)
    config = CloudConfig(**TINY, **settings)  # a config made by hand: checked when the thermo model is built
    with pytest.raises(CloudConfigError, match=message):
        CloudThermoModel(config)


def test_no_module_reads_a_thermo_setting_with_a_fallback_default():
    """The defaults live in the config schema only: no ``getattr(config, "thermo_…", default)`` anywhere else."""
    import re
    from pathlib import Path

    import cloud_hf

    pattern = re.compile(r"""getattr\([^()]*config[^()]*,\s*["']thermo_""")
    package = Path(cloud_hf.__file__).parent
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if path.name != "configuration_cloud.py" and pattern.search(path.read_text(encoding="utf-8"))]
    assert offenders == []


# --- the standard encoder inputs and outputs, per member -----------------------------------------------------------


def test_hidden_states_and_attentions_are_every_members_own():
    model = tiny_model("dos", members=3)
    inputs = batch()
    with torch.no_grad():
        output = model(**inputs, output_hidden_states=True, output_attentions=True)
        plain = model(**inputs)
        for index, member in enumerate(model.members):
            encoded = member.cloud(**inputs, output_hidden_states=True, output_attentions=True)
            for layer, states in enumerate(encoded.hidden_states):
                torch.testing.assert_close(output.hidden_states[layer][:, index], states, rtol=0, atol=0)
            for layer, weights in enumerate(encoded.attentions):
                torch.testing.assert_close(output.attentions[layer][:, index], weights, rtol=0, atol=0)
    assert len(output.hidden_states) == TINY["num_hidden_layers"] + 1
    assert output.hidden_states[0].shape == (2, 3, 5, TINY["hidden_size"])
    assert output.attentions[0].shape == (2, 3, TINY["num_attention_heads"], 5, 5)
    assert plain.hidden_states is None and plain.attentions is None
    torch.testing.assert_close(output.dos, plain.dos)


def test_inputs_embeds_and_position_ids_reach_every_member():
    """One member without composition descriptors: its own word embeddings given as inputs_embeds, or the default
    positions given as position_ids, give what input_ids give."""
    model = tiny_model("dos", members=1)
    inputs = batch()
    embeddings = model.members[0].cloud.embeddings.word_embeddings(inputs["input_ids"])
    positions = torch.arange(inputs["input_ids"].shape[1]).expand(2, -1)
    with torch.no_grad():
        reference = model(**inputs, temperature=[300.0])
        embedded = model(inputs_embeds=embeddings, attention_mask=inputs["attention_mask"], temperature=[300.0])
        positioned = model(**inputs, position_ids=positions, temperature=[300.0])
        shifted = model(**inputs, position_ids=positions + 1, temperature=[300.0])
    torch.testing.assert_close(embedded.heat_capacity, reference.heat_capacity)
    torch.testing.assert_close(positioned.heat_capacity, reference.heat_capacity)
    assert not torch.allclose(shifted.dos, reference.dos)


def test_inputs_embeds_alone_cannot_give_the_composition_descriptors():
    model = tiny_model("dos", members=1, thermo_composition_features=True)
    embeddings = torch.zeros(2, 5, TINY["hidden_size"])
    with pytest.raises(CloudDataError, match="reads the composition descriptors from the token ids: pass input_ids"):
        model(inputs_embeds=embeddings)
