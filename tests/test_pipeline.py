"""The ``crystal-property-prediction`` pipeline: inputs of every kind, batching, units, bad crystals in their slots."""

from __future__ import annotations

import math
from pathlib import Path

import pymatgen.util
import pytest
import safetensors.torch
import torch
from pymatgen.core import Lattice, Molecule, Structure
from transformers import AutoProcessor, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

import cloud_hf
from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.debye import thermodynamics
from cloud_hf.modeling_cloud import CloudForClassification, CloudForMaskedLM, CloudForRegression
from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.modeling_cloud_thermo import CloudThermoModel
from cloud_hf.pipeline_cloud import BUNDLED_MODEL_DIR, TASK_NAME
from cloud_hf.processing_cloud import CloudProcessor
from cloud_hf.property_heads import prediction_inputs, property_records
from cloud_hf.scope import ScopeEncoder, canonical_vocabulary
from cloud_hf.tokenization_cloud import CloudTokenizerFast

PYMATGEN_STRUCTURES = Path(pymatgen.util.__file__).parent / "structures"

HEADS = {
    "debye": CloudDebyeModel, "regression": CloudForRegression, "classification": CloudForClassification,
    "masked_lm": CloudForMaskedLM,
}


def save_tiny_checkpoint(
    folder: Path, head: str = "debye", max_positions: int = 32, tokenizer: CloudTokenizerFast | None = None,
    **config_fields,
) -> Path:
    """Save a randomly initialised 1-layer model of ``head`` kind into ``folder``, with ``tokenizer`` (default:
    canonical SCOPE); the model records the tokenizer's SCOPE settings."""
    if tokenizer is None:
        tokenizer = CloudTokenizerFast.from_scope_vocabulary(
            canonical_vocabulary(), ScopeEncoder(mode="canonical").to_dict(), model_max_length=max_positions
        )
    scope_settings = tokenizer.scope_config
    config = CloudConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        initializer_range=0.5,  # large weights: different crystals get clearly different outputs
        scope=scope_settings,
        **config_fields,
    )
    torch.manual_seed(0)
    model = HEADS[head](config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def pymatgen_structure(name: str) -> Structure:
    """One of the structures pymatgen ships (``Si``, ``CsCl``, ``SrTiO3``, ``LiFePO4``, ...)."""
    return Structure.from_file(PYMATGEN_STRUCTURES / f"{name}.json")


def disordered_structure() -> Structure:
    """A CuAu solid solution: one site half Cu, half Au (partial occupancy)."""
    return Structure(Lattice.cubic(3.7), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])


def property_value(result: dict, name: str, temperature: float | None = None) -> float:
    """The value of property ``name`` (at ``temperature`` K where given) in a pipeline result."""
    matches = [
        record["value"] for record in result["properties"]
        if record["property"] == name and (temperature is None or record.get("temperature") == temperature)
    ]
    assert len(matches) == 1, f"{name}@{temperature}: {result['properties']}"
    return matches[0]


@pytest.fixture(scope="module")
def debye_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("debye"))


@pytest.fixture(scope="module")
def predictor(debye_checkpoint):
    return pipeline(TASK_NAME, model=str(debye_checkpoint), device="cpu")


def test_task_is_registered_on_import():
    assert TASK_NAME in PIPELINE_REGISTRY.get_supported_tasks()
    assert cloud_hf.CrystalPropertyPredictionPipeline is PIPELINE_REGISTRY.check_task(TASK_NAME)[1]["impl"]


def test_loads_offline_with_the_recorded_head(predictor):
    assert isinstance(predictor.model, CloudDebyeModel)
    assert predictor.processor.scope_encoder == ScopeEncoder.from_dict(predictor.model.config.scope)


def test_every_input_kind_gives_the_same_prediction(predictor, tmp_path):
    from ase import Atoms

    structure = pymatgen_structure("SrTiO3")
    atoms = Atoms(
        symbols=[site.specie.symbol for site in structure], cell=structure.lattice.matrix,
        scaled_positions=structure.frac_coords, pbc=True,
    )
    cif_path = tmp_path / "SrTiO3.cif"
    structure.to(filename=str(cif_path))
    inputs = [structure, atoms, structure.as_dict(), cif_path.read_text(), str(cif_path), cif_path]
    results = predictor(inputs)
    assert len(results) == len(inputs)
    expected = results[0]
    assert expected["error"] is None and expected["formula"] == "SrTiO3" and expected["n_atoms"] == 5
    assert expected["scope"] == ScopeEncoder(mode="canonical").encode(structure)
    for result in results[1:]:
        assert result["scope"] == expected["scope"]
        assert property_value(result, "debye_temperature") == pytest.approx(property_value(expected, "debye_temperature"))
    assert predictor(structure)["properties"] == expected["properties"]  # a single crystal returns one dict


def test_debye_outputs_follow_the_debye_model_at_the_requested_temperatures(predictor):
    structure = pymatgen_structure("LiFePO4")
    temperatures = [50.0, 300.0, 1200.0]
    result = predictor(structure, temperatures=temperatures)
    theta = property_value(result, "debye_temperature")
    assert theta > 0
    units = {record["property"]: record["unit"] for record in result["properties"]}
    assert units == {
        "debye_temperature": "K", "heat_capacity": "J/(mol·K)", "heat_capacity_per_atom": "J/(mol·K)",
        "internal_energy": "J/mol", "free_energy": "J/mol", "entropy": "J/(mol·K)",
    }
    expected = thermodynamics(torch.tensor(theta, dtype=torch.float64), torch.tensor(temperatures, dtype=torch.float64), 28)
    for index, temperature in enumerate(temperatures):
        cv = property_value(result, "heat_capacity", temperature)
        assert cv == pytest.approx(float(expected.heat_capacity[index]), rel=1e-4)
        assert property_value(result, "entropy", temperature) == pytest.approx(float(expected.entropy[index]), rel=1e-4)
        assert property_value(result, "heat_capacity_per_atom", temperature) == pytest.approx(cv / 28)
    assert property_value(result, "heat_capacity", 1200.0) < 3 * 8.314 * 28  # below Dulong–Petit


def test_default_temperature_is_300_kelvin(predictor):
    result = predictor(pymatgen_structure("Si"))
    assert sorted({record["temperature"] for record in result["properties"] if "temperature" in record}) == [300.0]


def test_batching_keeps_order_and_values(predictor):
    names = ["Si", "CsCl", "SrTiO3", "LiFePO4", "Li2O", "VO2", "SiO2"]
    crystals = [pymatgen_structure(name) for name in names]
    one_by_one = predictor(crystals, batch_size=1, temperatures=[100, 300])
    batched = predictor(crystals, batch_size=3, temperatures=[100, 300])
    assert [result["formula"] for result in batched] == [crystal.composition.reduced_formula for crystal in crystals]
    for single, batch in zip(one_by_one, batched):
        for single_record, batch_record in zip(single["properties"], batch["properties"], strict=True):
            assert batch_record["value"] == pytest.approx(single_record["value"], rel=1e-4)
    thetas = [property_value(result, "debye_temperature") for result in batched]
    assert len({round(theta, 3) for theta in thetas}) == len(thetas)  # rows really differ, so order is tested


def test_bad_crystals_yield_their_error_in_their_slot(predictor):
    silicon, cesium_chloride = pymatgen_structure("Si"), pymatgen_structure("CsCl")
    water = Molecule(["O", "H", "H"], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    broken_cif = "data_broken\n_cell_length_a 4.0\nloop_\n_atom_site_label\n"
    inputs = [silicon, broken_cif, disordered_structure(), water, "no/such/file.cif", cesium_chloride]
    for batch_size in (1, 4):
        results = predictor(inputs, batch_size=batch_size)
        assert len(results) == len(inputs)
        assert [result["error"] is None for result in results] == [True, False, False, False, False, True]
        assert "data_broken" in results[1]["error"]
        assert "disordered" in results[2]["error"]
        assert "non-periodic" in results[3]["error"]
        assert "no/such/file.cif" in results[4]["error"]
        assert all(result["properties"] == [] for result in results[1:5])
        assert results[0]["properties"] == predictor(silicon)["properties"]
        assert results[5]["properties"] == predictor(cesium_chloride)["properties"]


def test_all_bad_batch_and_empty_input(predictor):
    results = predictor([disordered_structure(), disordered_structure()], batch_size=2)
    assert [result["error"] is not None for result in results] == [True, True]
    assert predictor([]) == []


def test_the_checkpoint_scope_mode_decides_the_encoding(reference_data, tmp_path):
    tokenizer = CloudTokenizerFast.from_reference_files(reference_data / "tokenizer")
    folder = save_tiny_checkpoint(tmp_path, max_positions=64, tokenizer=tokenizer)
    reference_model = pipeline(TASK_NAME, model=str(folder), device="cpu")
    assert reference_model.model.config.scope["mode"] == "reference"
    rock_salt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    result = reference_model(rock_salt)
    assert result["scope"] == "1 6 a O D D a D O D b O O O c O O O d O O O e O O O 0 | 4a 4b | Na 0.5 Cl 0.5"
    assert result["error"] is None and property_value(result, "debye_temperature") > 0


def test_too_long_scope_string_is_an_error(tmp_path):
    short_model = pipeline(TASK_NAME, model=str(save_tiny_checkpoint(tmp_path, max_positions=8)), device="cpu")
    silicon, olivine = short_model([pymatgen_structure("Si"), pymatgen_structure("LiFePO4")], batch_size=2)
    assert silicon["error"] is None
    assert "longer than the model's 8 positions" in olivine["error"]


def test_bad_temperatures_are_refused(predictor):
    for temperatures in ([], [-10.0], [float("nan")]):
        with pytest.raises(ValueError, match="temperatures"):
            predictor(pymatgen_structure("Si"), temperatures=temperatures)


def test_regression_checkpoint_reports_its_targets_and_units(tmp_path):
    folder = save_tiny_checkpoint(
        tmp_path, head="regression", target_names=["band_gap", "formation_energy_per_atom"],
        target_units=["eV", "eV/atom"], target_mean=[1.0, -1.0], target_std=[0.5, 0.2],
    )
    regressor = pipeline(TASK_NAME, model=str(folder), device="cpu")
    assert isinstance(regressor.model, CloudForRegression)
    structure = pymatgen_structure("CsCl")
    result = regressor(structure)
    assert [(record["property"], record["unit"]) for record in result["properties"]] == [
        ("band_gap", "eV"), ("formation_energy_per_atom", "eV/atom"),
    ]
    tokens = regressor.tokenizer(result["scope"], return_tensors="pt")
    with torch.no_grad():
        expected = regressor.model(**tokens).predictions[0].tolist()
    assert [record["value"] for record in result["properties"]] == pytest.approx(expected, rel=1e-5)


def test_classification_checkpoint_reports_a_label(tmp_path):
    folder = save_tiny_checkpoint(tmp_path, head="classification", num_labels=2, id2label={0: "metal", 1: "insulator"})
    classifier = pipeline(TASK_NAME, model=str(folder), device="cpu")
    (record,) = classifier(pymatgen_structure("Si"))["properties"]
    assert record["property"] == "label" and record["value"] in {"metal", "insulator"}
    assert 0.5 <= record["score"] <= 1.0


def test_a_checkpoint_without_a_property_head_is_refused(tmp_path):
    folder = save_tiny_checkpoint(tmp_path, head="masked_lm")
    with pytest.raises(ValueError, match="CloudForMaskedLM"):
        pipeline(TASK_NAME, model=str(folder), device="cpu")


def test_bundled_model_is_the_default_and_predicts_sensible_heat_capacities():
    assert (BUNDLED_MODEL_DIR / "model.safetensors").is_file()
    weights_mb = sum(path.stat().st_size for path in BUNDLED_MODEL_DIR.glob("*.safetensors")) / 1e6
    assert weights_mb <= 25  # the thermodynamics model itself
    package_mb = sum(path.stat().st_size for path in BUNDLED_MODEL_DIR.rglob("*.safetensors")) / 1e6
    assert package_mb <= 30  # with the θ_D encoder (debye_agl/) and the backbone (backbone/)
    predictor = pipeline(TASK_NAME, device="cpu")  # no model given: the bundled one
    assert isinstance(predictor.model, CloudThermoModel) and predictor.model.config.thermo_members >= 5
    assert predictor.model.config.scope["mode"] == "canonical"
    results = predictor([pymatgen_structure("Si"), pymatgen_structure("CsCl")], temperatures=[300.0])
    records = [{record["property"]: record for record in result["properties"]} for result in results]
    thetas = [crystal["debye_temperature"]["value"] for crystal in records]
    assert all(50 < theta < 2500 and math.isfinite(theta) for theta in thetas)
    assert thetas[0] > thetas[1]  # diamond-structure Si is far stiffer than CsCl (~640 K vs ~175 K)
    for crystal in records:
        heat = crystal["heat_capacity_per_atom"]
        assert 0 < heat["value"] < 3 * 8.314 and 0 < heat["std"] < heat["value"]
        assert crystal["entropy"]["std"] > 0


# --- the processor -------------------------------------------------------------------------------------------


def test_processor_keeps_one_row_per_crystal_with_its_error(debye_checkpoint):
    processor = CloudProcessor.from_pretrained(debye_checkpoint)  # no processor file: rebuilt from config.json
    assert processor.scope == CloudConfig.from_pretrained(debye_checkpoint).scope and processor.max_length == 32
    batch = processor([pymatgen_structure("Si"), "no/such/file.cif", pymatgen_structure("CsCl")], return_tensors="pt")
    assert batch["input_ids"].shape[0] == 3
    assert batch.errors[0] is None and "no/such/file.cif" in batch.errors[1] and batch.errors[2] is None
    assert batch.scopes[0] == "cF m-3m SG227 Si 8a" and batch.formulas == ["Si", None, "CsCl"]
    assert batch.n_atoms.tolist() == [2, 1, 2]
    expected = processor.tokenizer(batch.scopes[0])["input_ids"]
    assert batch["input_ids"][0, : len(expected)].tolist() == expected
    assert batch["attention_mask"][1].tolist()[:3] == [1, 1, 0]  # the failed crystal: a [CLS] [SEP] placeholder
    model = CloudDebyeModel.from_pretrained(debye_checkpoint).eval()
    with torch.no_grad():  # the batch runs as is, placeholder included
        outputs = model(**batch, **prediction_inputs(model, batch.n_atoms, [300.0]))
    assert outputs.heat_capacity.shape == (3, 1)


def test_processor_saves_and_loads_through_auto_processor(debye_checkpoint, tmp_path):
    processor = CloudProcessor.from_pretrained(debye_checkpoint)
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, CloudProcessor)
    assert loaded.scope == processor.scope and loaded.max_length == processor.max_length
    assert loaded(scopes=["cF m-3m SG225 Na 4a Cl 4b"])["input_ids"] == processor(scopes=["cF m-3m SG225 Na 4a Cl 4b"])[
        "input_ids"
    ]


def test_processor_is_the_one_length_and_unknown_token_check(debye_checkpoint):
    processor = CloudProcessor(CloudProcessor.from_pretrained(debye_checkpoint).tokenizer, max_length=7)
    short, long_string, unknown = processor(
        scopes=["cF m-3m SG225 Na 4a", "cF m-3m SG225 Na 4a Cl 4b", "cF m-3m SG225 Xx 4a"]
    ).errors
    assert short is None
    assert "9 tokens, longer than the model's 7 positions" in long_string
    assert "['Xx'] outside the model's vocabulary" in unknown


def test_saved_processor_settings_decide_the_pipeline_encoding(debye_checkpoint, tmp_path):
    import shutil

    folder = Path(shutil.copytree(debye_checkpoint, tmp_path / "checkpoint"))
    processor = CloudProcessor.from_pretrained(folder)
    CloudProcessor(processor.tokenizer, scope=ScopeEncoder(symprec=0.01).to_dict(), max_length=32).save_pretrained(folder)
    predictor = pipeline(TASK_NAME, model=str(folder), device="cpu")
    assert predictor.processor.scope_encoder == ScopeEncoder(symprec=0.01)


def test_heads_implement_the_pipeline_contract(tmp_path):
    folder = save_tiny_checkpoint(tmp_path, head="regression", target_names=["band_gap"], target_units=["eV"])
    model = CloudForRegression.from_pretrained(folder).eval()
    assert prediction_inputs(model, torch.tensor([2, 5]), [300.0]) == {}
    tokenizer = CloudTokenizerFast.from_pretrained(folder)
    inputs = tokenizer(["cF m-3m SG225 Na 4a Cl 4b", "cP m-3m SG221 Ti 1a Sr 1b O 3d"], padding=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    records = property_records(model, outputs, [8, 5], [300.0])
    assert [[(r["property"], r["unit"]) for r in crystal] for crystal in records] == [[("band_gap", "eV")]] * 2
    assert [crystal[0]["value"] for crystal in records] == pytest.approx(outputs.predictions[:, 0].tolist())
    with pytest.raises(NotImplementedError, match="CloudForMaskedLM is not a property head"):
        property_records(CloudForMaskedLM(model.config), outputs, [8, 5], [300.0])


def test_pipeline_refuses_a_pickle_only_checkpoint_without_opt_in(tmp_path):
    folder = save_tiny_checkpoint(tmp_path, head="regression")
    weights = safetensors.torch.load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="allow_pickle=True"):  # transformers wraps the CloudConfigError
        pipeline(TASK_NAME, model=str(folder), device="cpu")
    predictor = pipeline(TASK_NAME, model=str(folder), device="cpu", model_kwargs={"allow_pickle": True})
    assert predictor(pymatgen_structure("Si"))["error"] is None
