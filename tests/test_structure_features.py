"""The structure-feature registry (cloud_hf.features), checked by doing what a new feature and a new head do: a toy
feature and a toy head registered through the public registration points only (``register_feature``, a config's
``structure_features``, ``cloud_hf.property_heads.register_property_head``), then the processor, the pipeline,
``cloud-hf predict --plot``, the recipe's data path, its collator and the evaluation, none of them edited for it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from pymatgen.core import Lattice, Structure
from torch import nn

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudConfigError, CloudDataError, CrystalInputError
from cloud_hf.features import get_feature, register_feature
from cloud_hf.modeling_cloud import CloudForRegression
from cloud_hf.modeling_cloud_thermo import CloudThermoModel, thermo_config
from cloud_hf.processing_cloud import CloudProcessor

MAX_TOY_ATOMS = 8


def toy_packing(cell) -> list[float]:
    """ln(volume per atom / Å³) and the number of elements of a validated cell."""
    volume = abs(float(np.linalg.det(np.asarray(cell.lattice, float))))
    return [float(np.log(volume / len(cell))), float(len(set(cell.atomic_numbers)))]


def refuse_large_cells(cell) -> None:
    if len(cell) > MAX_TOY_ATOMS:
        raise CrystalInputError(f"{cell.name}: {len(cell)} atoms; the toy feature reads at most {MAX_TOY_ATOMS}")


TOY = register_feature("toy_packing", toy_packing, input_name="toy_features",
                       value_names=("ln_volume_per_atom", "n_elements"), description="toy packing numbers",
                       check=refuse_large_cells)
TOY_STATISTICS = [[3.0, 2.0], [0.5, 1.0]]
TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 32, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "head_dropout": 0.0}


def rock_salt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def toy_values(structure: Structure) -> list[float]:
    return [float(np.log(structure.volume / len(structure))), float(len(structure.composition.elements))]


def toy_thermo_model(canonical_tokenizer, **settings) -> CloudThermoModel:
    """A thermo head (an existing class) that reads the toy feature, declared in its config only."""
    torch.manual_seed(0)
    base = CloudConfig(**TINY, vocab_size=len(canonical_tokenizer), scope=canonical_tokenizer.scope_config)
    config = thermo_config(base, thermo_members=2, thermo_composition_features=True, structure_features=["toy_packing"],
                           structure_feature_statistics={"toy_packing": TOY_STATISTICS}, **settings)
    model = CloudThermoModel(config)
    model.set_composition_tables(canonical_tokenizer)
    with torch.no_grad():  # weights of order 1, so that outputs follow the inputs
        for member in model.members:
            for parameter in [*member.composition.parameters(), *member.head.parameters()]:
                parameter.normal_(0.0, 0.5)
    return model.eval()


class ToyFeatureRegression(CloudForRegression):
    """A new head: regression whose predictions move with the toy feature (a linear map of it is added, beside the
    descriptor MLP every CloudForRegression puts on the features its config declares)."""

    def __init__(self, config: CloudConfig):
        super().__init__(config)
        self.toy = nn.Linear(TOY.size, config.num_targets)

    def forward(self, input_ids=None, attention_mask=None, toy_features=None, **kwargs):
        if toy_features is None:
            raise CloudDataError("ToyFeatureRegression reads toy_features")
        output = super().forward(input_ids, attention_mask, toy_features=toy_features, **kwargs)
        output.predictions = output.predictions + self.toy(toy_features.to(output.predictions))
        return output


# --- the registry ---------------------------------------------------------------------------------------------------


def test_registration_is_idempotent_and_refuses_clashes():
    assert get_feature("toy_packing") is TOY and TOY.size == 2 and TOY.version == 1
    assert register_feature("toy_packing", toy_packing, input_name="toy_features",
                            value_names=("ln_volume_per_atom", "n_elements"), description="toy packing numbers",
                            check=refuse_large_cells) == TOY
    with pytest.raises(CloudConfigError, match="already registered"):
        register_feature("toy_packing", toy_values, input_name="toy_features", value_names=("a", "b"))
    with pytest.raises(CloudConfigError, match="already registered"):  # another feature, the same model input
        register_feature("toy_other", toy_packing, input_name="cell_features", value_names=("a",))
    with pytest.raises(CloudConfigError, match="taken by the models' own inputs"):
        register_feature("toy_ids", toy_packing, input_name="input_ids", value_names=("a",))
    with pytest.raises(CloudConfigError, match=r"'no_such_feature' is not registered \(registered: .*cell_descriptors"):
        get_feature("no_such_feature")
    assert get_feature("cell_descriptors").input_name == "cell_features"  # the built-in one, loaded on look-up


def test_config_resolves_the_features_a_head_reads():
    assert CloudConfig().structure_feature_names == []
    assert "structure_features" not in CloudConfig().to_json_string()  # configs without features save as before
    cells = CloudConfig(thermo_cell_features=True, thermo_cell_statistics=[[0.0] * 4, [1.0] * 4])
    assert cells.structure_feature_names == ["cell_descriptors"]  # how thermo checkpoints record the descriptors
    assert cells.feature_statistics("cell_descriptors") == [[0.0] * 4, [1.0] * 4]
    both = CloudConfig(thermo_cell_features=True, structure_features=["toy_packing"])
    assert both.structure_feature_names == ["cell_descriptors", "toy_packing"]
    both.set_feature_statistics("toy_packing", TOY_STATISTICS)
    assert CloudConfig.from_dict(both.to_dict()).feature_statistics("toy_packing") == TOY_STATISTICS
    with pytest.raises(StrictDataclassClassValidationError, match="distinct names"):
        CloudConfig(thermo_cell_features=True, structure_features=["cell_descriptors"])
    with pytest.raises(StrictDataclassClassValidationError, match="which structure_features lacks"):
        CloudConfig(structure_feature_statistics={"toy_packing": TOY_STATISTICS})


# --- the processor --------------------------------------------------------------------------------------------------


def test_the_processor_computes_exactly_the_declared_features(canonical_tokenizer, tmp_path):
    config = CloudConfig(scope=canonical_tokenizer.scope_config, structure_features=["toy_packing"])
    processor = CloudProcessor.for_model(config, canonical_tokenizer)
    assert processor.model_input_names == ["input_ids", "attention_mask", "toy_features"]
    large = rock_salt() * (2, 2, 2)
    batch = processor([rock_salt(), "no/such/file.cif", large], return_tensors="pt")
    assert "cell_features" not in batch and batch["toy_features"].shape == (3, 2)
    np.testing.assert_allclose(batch["toy_features"][0].numpy(), toy_values(rock_salt()), rtol=1e-6)
    assert batch["toy_features"][1].tolist() == [0.0, 0.0] and batch.errors[1] is not None
    assert "the toy feature reads at most 8" in batch.errors[2]  # the feature's check, per crystal
    assert "pass the structure" in processor(scopes=["cF m-3m SG225 Na 4a Cl 4b"]).errors[0]
    # both kinds of declaration together: each feature under its own input name
    both = CloudProcessor.for_model(CloudConfig(scope=canonical_tokenizer.scope_config, thermo_cell_features=True,
                                                structure_features=["toy_packing"]), canonical_tokenizer)
    assert set(both([rock_salt()])) == {"input_ids", "attention_mask", "cell_features", "toy_features"}
    # the processor saves what it computes with each feature's version, and refuses another definition
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["structure_features"] == {"toy_packing": 1}
    assert CloudProcessor.from_pretrained(tmp_path).structure_features == {"toy_packing": 1}
    with pytest.raises(CloudConfigError, match="at version 2, but the registered definition is version 1"):
        CloudProcessor(canonical_tokenizer, structure_features={"toy_packing": 2})
    with pytest.raises(CloudConfigError, match="not registered"):
        CloudProcessor(canonical_tokenizer, structure_features=["no_such_feature"])


# --- an existing head reading the new feature (its config only) -----------------------------------------------------


def test_an_existing_head_reads_a_new_feature_through_pipeline_and_cli_plot(canonical_tokenizer, tmp_path, capsys):
    from transformers import pipeline

    import cloud_hf  # noqa: F401  (registers the pipeline task)
    from cloud_hf.cli import main

    model = toy_thermo_model(canonical_tokenizer)
    batch = CloudProcessor.for_model(model.config, canonical_tokenizer)([rock_salt()], return_tensors="pt")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "temperature": [300.0],
              "n_atoms": batch.n_atoms}
    with pytest.raises(CloudDataError, match=r"reads the crystals' toy packing numbers: pass toy_features \(batch, 2\)"):
        model(**inputs)
    heat = model(**inputs, toy_features=batch["toy_features"]).heat_capacity
    assert (model(**inputs, toy_features=batch["toy_features"] + 1.0).heat_capacity - heat).abs().item() > 1e-3
    model.save_pretrained(tmp_path / "model")
    canonical_tokenizer.save_pretrained(tmp_path / "model")
    predictor = pipeline("crystal-property-prediction", model=str(tmp_path / "model"), device="cpu")
    results = predictor([rock_salt(), "no/such/file.cif", rock_salt()], temperatures=[300.0], batch_size=2)
    assert [result["error"] is None for result in results] == [True, False, True]
    value = {r["property"]: r["value"] for r in results[0]["properties"]}["heat_capacity"]
    assert value == pytest.approx(heat[0, 0].item(), rel=1e-5)  # the model's own output on the processor's feature
    plot = tmp_path / "curves.png"
    assert main(["predict", "examples/Si_diamond.cif", "examples/CsCl.cif", "--model", str(tmp_path / "model"),
                 "--plot", str(plot)]) == 0
    assert "2 ok, 0 failed" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- a new head reading the new feature ----------------------------------------------------------------------------


def test_a_new_head_reading_a_new_feature_is_served_by_pipeline_and_cli(canonical_tokenizer, tmp_path, monkeypatch,
                                                                       capsys):
    from transformers import pipeline

    import cloud_hf  # noqa: F401  (registers the pipeline task)
    from cloud_hf.cli import main
    from cloud_hf.property_heads import PROPERTY_HEADS, register_property_head, regression_records

    monkeypatch.setitem(PROPERTY_HEADS, "ToyFeatureRegression", None)  # undone after the test
    register_property_head("ToyFeatureRegression", ToyFeatureRegression, regression_records)
    torch.manual_seed(0)
    config = CloudConfig(**TINY, vocab_size=len(canonical_tokenizer), scope=canonical_tokenizer.scope_config,
                         target_names=["toy_target"], target_units=["eV"], structure_features=["toy_packing"])
    model = ToyFeatureRegression(config).eval()
    model.save_pretrained(tmp_path)
    canonical_tokenizer.save_pretrained(tmp_path)
    predictor = pipeline("crystal-property-prediction", model=str(tmp_path), device="cpu")
    assert type(predictor.model).__name__ == "ToyFeatureRegression"
    results = predictor([rock_salt(), rock_salt() * (2, 2, 2)], batch_size=2)
    assert results[1]["error"] is not None and "at most 8" in results[1]["error"]
    batch = CloudProcessor.for_model(model.config, canonical_tokenizer)([rock_salt()], return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).predictions[0, 0].item()
    assert results[0]["properties"] == [{"property": "toy_target", "value": pytest.approx(expected, rel=1e-5),
                                         "unit": "eV"}]
    assert main(["predict", "examples/Si_diamond.cif", "--model", str(tmp_path)]) == 0
    assert "1 ok, 0 failed" in capsys.readouterr().out


# --- the recipe's data path, collator and evaluation ---------------------------------------------------------------


def test_the_recipe_data_path_and_evaluation_pass_a_new_feature_through(canonical_tokenizer):
    from cloud_hf.training.thermo import ThermoModelArguments, build_model
    from cloud_hf.training.thermo_data import ThermoCollator, encode_crystals
    from cloud_hf.training.thermo_evaluation import predict_thermo

    cifs = [rock_salt().to(fmt="cif"), Structure(Lattice.cubic(3.0), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3]).to(fmt="cif")]
    ids, features = encode_crystals(canonical_tokenizer, cifs, ["NaCl", "CsCl"], ["toy_packing"])
    assert set(features) == {"toy_features"} and features["toy_features"].shape == (2, 2)
    np.testing.assert_allclose(features["toy_features"][0], toy_values(rock_salt()), rtol=1e-6)
    model = toy_thermo_model(canonical_tokenizer)
    examples = [{"input_ids": row, "n_atoms": 2.0, "toy_features": values, "dos_labels": np.full(50, 0.003, "f4")}
                for row, values in zip(ids, features["toy_features"])]
    batch = ThermoCollator(canonical_tokenizer.pad_token_id, [300.0], model)(examples)
    torch.testing.assert_close(batch["toy_features"], torch.as_tensor(features["toy_features"]))
    assert torch.isfinite(model.train()(**batch).loss)
    model.eval()
    prediction = predict_thermo(model, ids, [2.0, 2.0], [300.0], canonical_tokenizer.pad_token_id, features=features)
    with torch.no_grad():
        direct = model(**{name: batch[name] for name in ("input_ids", "attention_mask", "toy_features")},
                       temperature=[300.0], n_atoms=torch.tensor([2.0, 2.0])).heat_capacity
    np.testing.assert_allclose(prediction["heat_capacity"], direct.numpy(), rtol=1e-6)
    with pytest.raises(CloudDataError, match=r"reads the structure features \['toy_features'\]"):
        predict_thermo(model, ids, [2.0, 2.0], [300.0], canonical_tokenizer.pad_token_id)
    # the recipe declares the feature through config_overrides and standardises it by the training crystals
    model_args = ThermoModelArguments(composition_features=True,
                                      config_overrides={"structure_features": ["toy_packing"]})
    built = build_model(model_args, examples, canonical_tokenizer)
    assert built.config.structure_feature_names == ["toy_packing"]
    np.testing.assert_allclose(built.config.feature_statistics("toy_packing"),
                               [features["toy_features"].mean(0), np.maximum(features["toy_features"].std(0), 1e-6)],
                               rtol=1e-6)
