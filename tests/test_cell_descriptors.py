"""Cell descriptors (cloud_hf.cell_descriptors): values against pymatgen, invariances, the processor's
``cell_features``, and the thermo heads that read them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
from pymatgen.core import Lattice, Structure

from cloud_hf.cell_descriptors import CELL_DESCRIPTOR_FEATURE, NUM_CELL_DESCRIPTORS, cell_descriptors
from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.modeling_cloud_thermo import CloudThermoModel, thermo_config
from cloud_hf.structures import load_cell, nearest_neighbour_distances

PROTOTYPES = [entry["snl"].structure for entry in AFLOW_PROTOTYPE_LIBRARY[::12]]


def pymatgen_descriptors(structure: Structure) -> list[float]:
    """The four descriptors from pymatgen's own volume, density and neighbour list (an independent reference)."""
    centres, _, _, distances = structure.get_neighbor_list(8.0)
    nearest = np.array([distances[(centres == i) & (distances > 1e-8)].min() for i in range(len(structure))])
    return [math.log(structure.volume / len(structure)), math.log(structure.density), math.log(nearest.mean()),
            math.log(nearest.min())]


@pytest.mark.parametrize("structure", PROTOTYPES, ids=lambda s: s.composition.reduced_formula)
def test_descriptors_match_pymatgen_volume_density_and_neighbour_list(structure):
    np.testing.assert_allclose(cell_descriptors(load_cell(structure)), pymatgen_descriptors(structure), atol=1e-9)


def test_descriptors_do_not_depend_on_cell_choice_rotation_translation_or_site_order():
    perovskite = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    reference = cell_descriptors(load_cell(perovskite))
    supercell = perovskite * (2, 1, 3)
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
        [[1.0, 0.0, 0.0], [0.0, math.cos(0.7), -math.sin(0.7)], [0.0, math.sin(0.7), math.cos(0.7)]])
    rotated = Structure(Lattice(perovskite.lattice.matrix @ rotation.T), perovskite.species, perovskite.frac_coords)
    shifted = Structure(perovskite.lattice, perovskite.species, perovskite.frac_coords + np.array([0.13, 0.71, 0.29]))
    reordered = Structure(perovskite.lattice, perovskite.species[::-1], perovskite.frac_coords[::-1])
    for variant in (supercell, rotated, shifted, reordered):
        np.testing.assert_allclose(cell_descriptors(load_cell(variant)), reference, atol=1e-9)
    # hand values: V/atom = a³/5, Ti–O = a/2 is the shortest distance
    assert reference[0] == pytest.approx(math.log(3.905**3 / 5)) and reference[3] == pytest.approx(math.log(3.905 / 2))


def test_nearest_neighbour_of_a_lone_atom_is_its_own_image_and_the_radius_grows_when_needed():
    assert nearest_neighbour_distances(np.diag([3.0, 4.0, 5.0]), np.zeros((1, 3))).tolist() == [3.0]
    # 27 atoms packed in one corner of a 10 Å cube and one far away: the first radius (2·(V/N)^⅓ ≈ 6.5 Å) holds no
    # neighbour of the far atom (its own images are 10 Å away, the cluster ≥ 6.9 Å): the search must widen
    grid = np.stack(np.meshgrid(*[np.arange(3) * 0.1] * 3, indexing="ij"), -1).reshape(-1, 3)
    frac = np.vstack([grid, [[0.6, 0.6, 0.6]]])
    lattice = np.eye(3) * 10.0
    distances = nearest_neighbour_distances(lattice, frac)
    structure = Structure(Lattice(lattice), ["Si"] * len(frac), frac)
    expected = [min(structure.get_distance(i, j) for j in range(len(frac)) if j != i) for i in range(len(frac))]
    np.testing.assert_allclose(distances, expected, atol=1e-9)
    assert distances[-1] == pytest.approx(math.sqrt(3) * 4.0)


def test_descriptor_statistics_are_means_and_stds_and_refuse_wrong_shapes():
    descriptor_statistics = CELL_DESCRIPTOR_FEATURE.statistics  # the registered feature's statistics
    rows = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 5.0, 8.0]])
    assert descriptor_statistics(rows) == [[2.0, 2.0, 4.0, 6.0], [1.0, 1e-6, 1.0, 2.0]]
    with pytest.raises(ValueError, match=r"must be \(n ≥ 1, 4\)"):
        descriptor_statistics(rows[:, :3])


# --- the processor ------------------------------------------------------------------------------------------------


def rock_salt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_processor_gives_cell_features_only_when_asked_and_keeps_failed_rows(canonical_tokenizer, tmp_path):
    from cloud_hf.processing_cloud import CloudProcessor

    plain = CloudProcessor(canonical_tokenizer)
    assert "cell_features" not in plain([rock_salt()]) and plain.model_input_names == ["input_ids", "attention_mask"]
    processor = CloudProcessor(canonical_tokenizer, cell_features=True)
    batch = processor([rock_salt(), "no/such/file.cif"], return_tensors="pt")
    assert batch["cell_features"].shape == (2, NUM_CELL_DESCRIPTORS)
    np.testing.assert_allclose(batch["cell_features"][0].numpy(), pymatgen_descriptors(rock_salt()), atol=1e-5)
    assert batch["cell_features"][1].tolist() == [0.0] * 4 and batch.errors[1] is not None
    assert processor.model_input_names[-1] == "cell_features"
    refused = processor(scopes=["cF m-3m SG225 Na 4a Cl 4b"]).errors[0]
    assert "does not give; pass the structure" in refused
    processor.save_pretrained(tmp_path)
    assert CloudProcessor.from_pretrained(tmp_path).cell_features is True


def test_processor_of_a_checkpoint_without_processor_file_follows_its_config(canonical_tokenizer):
    from cloud_hf.processing_cloud import CloudProcessor

    config = CloudConfig(scope=canonical_tokenizer.scope_config, thermo_cell_features=True)
    assert CloudProcessor.for_model(config, canonical_tokenizer).cell_features is True
    assert CloudProcessor.for_model(CloudConfig(scope=canonical_tokenizer.scope_config),
                                    canonical_tokenizer).cell_features is False


# --- the heads ----------------------------------------------------------------------------------------------------


TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 32, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "head_dropout": 0.0}
STATISTICS = [[3.0, 1.5, 0.9, 0.8], [0.5, 0.4, 0.2, 0.25]]


def cell_model(tokenizer, statistics=STATISTICS, members: int = 2) -> CloudThermoModel:
    torch.manual_seed(0)
    config = thermo_config(CloudConfig(**TINY, vocab_size=len(tokenizer), scope=tokenizer.scope_config),
                           thermo_members=members, thermo_composition_features=True, thermo_cell_features=True,
                           thermo_cell_statistics=statistics)
    model = CloudThermoModel(config)
    model.set_composition_tables(tokenizer)
    with torch.no_grad():  # a fresh head starts at the prior spectrum for every crystal, its descriptor MLP near 0:
        for member in model.members:  # weights of order 1, so that outputs follow the inputs
            for parameter in [*member.composition.parameters(), *member.head.parameters()]:
                parameter.normal_(0.0, 0.5)
    return model.eval()


def test_head_reads_the_standardised_cell_descriptors(canonical_tokenizer):
    from cloud_hf.processing_cloud import CloudProcessor

    batch = CloudProcessor(canonical_tokenizer, cell_features=True)([rock_salt()], return_tensors="pt")
    model = cell_model(canonical_tokenizer)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "temperature": [300.0]}
    heat = model(**inputs, cell_features=batch["cell_features"]).heat_capacity
    compressed = batch["cell_features"] - torch.tensor([[0.3, -0.3, 0.1, 0.1]])  # the same crystal, packed tighter
    assert (model(**inputs, cell_features=compressed).heat_capacity - heat).abs().item() > 1e-3
    # the statistics standardise the input: shifting the means with the input gives the same output
    mean, std = torch.tensor(STATISTICS)
    moved = cell_model(canonical_tokenizer, [(mean + std).tolist(), std.tolist()])
    torch.testing.assert_close(moved(**inputs, cell_features=batch["cell_features"] + std).heat_capacity, heat)


@pytest.mark.parametrize("cells, message", [
    (None, "this model reads the crystals' cell descriptors: pass cell_features"),
    (torch.zeros(1, 3), r"cell_features has shape \(1, 3\); expected \(1, 4\)"),
    (torch.tensor([[1.0, math.nan, 0.0, 0.0]]), r"cell_features has NaN or infinite values in row\(s\) \[0\]"),
])
def test_missing_or_bad_cell_features_name_the_argument(canonical_tokenizer, cells, message):
    ids = torch.tensor([canonical_tokenizer("cF m-3m SG225 Na 4a Cl 4b")["input_ids"]])
    with pytest.raises(CloudDataError, match=message):
        cell_model(canonical_tokenizer)(input_ids=ids, temperature=300.0, cell_features=cells)


@pytest.mark.parametrize("settings, message", [
    ({"thermo_composition_features": False}, "thermo_cell_features joins the cell descriptors to the composition"),
    ({"thermo_composition_features": True, "thermo_cell_statistics": [[0.0] * 4, [1.0] * 3]},
     "thermo_cell_statistics must be"),
    ({"thermo_composition_features": True, "thermo_cell_statistics": [[0.0] * 4, [1.0, 1.0, 0.0, 1.0]]},
     "stds > 0"),
])
def test_config_refuses_cell_features_without_composition_or_with_bad_statistics(settings, message):
    with pytest.raises(CloudConfigError, match=message):
        thermo_config(CloudConfig(**TINY), thermo_cell_features=True, **settings)


def test_cell_model_round_trips_and_runs_in_the_pipeline(canonical_tokenizer, tmp_path):
    from transformers import pipeline

    import cloud_hf  # noqa: F401  (registers the pipeline task)

    model = cell_model(canonical_tokenizer)
    model.save_pretrained(tmp_path)
    canonical_tokenizer.save_pretrained(tmp_path)
    loaded = CloudThermoModel.from_pretrained(tmp_path)
    assert loaded.config.thermo_cell_statistics == STATISTICS
    predictor = pipeline("crystal-property-prediction", model=str(tmp_path), device="cpu")
    assert predictor.processor.cell_features is True
    results = predictor([rock_salt(), "no/such/file.cif", rock_salt() * (1, 2, 1)], temperatures=[300.0],
                        batch_size=2)
    assert [result["error"] is None for result in results] == [True, False, True]
    per_atom = [{r["property"]: r["value"] for r in result["properties"]}["heat_capacity_per_atom"]
                for result in (results[0], results[2])]
    assert per_atom[0] == pytest.approx(per_atom[1], rel=1e-5)  # a supercell: the same crystal per atom
    # the pipeline's value is the model's own on the processor's cell features
    from cloud_hf.processing_cloud import CloudProcessor

    batch = CloudProcessor(canonical_tokenizer, cell_features=True)([rock_salt()], return_tensors="pt")
    heat = loaded(**batch, temperature=[300.0], n_atoms=batch.n_atoms).heat_capacity[0, 0].item()
    assert per_atom[0] == pytest.approx(heat / results[0]["n_atoms"], rel=1e-5)



def test_recipe_option_fits_the_statistics_on_the_training_crystals():
    from cloud_hf.training import CloudTrainingArguments, parse_recipe_arguments
    from cloud_hf.training.thermo import ThermoDataArguments, ThermoModelArguments, build_model

    _, model_args, _ = parse_recipe_arguments((ThermoDataArguments, ThermoModelArguments, CloudTrainingArguments),
                                              ["recipes/configs/thermo_smoke.yaml", "--cell_features", "true"])
    cells = np.array([[3.0, 1.0, 0.9, 0.8], [2.0, 2.0, 0.7, 0.6], [2.5, 1.5, 0.8, 0.8]], "f4")
    examples = [{"input_ids": [0, 2], "dos_labels": np.full(50, 0.003, "f4"), "cell_features": row} for row in cells]
    model = build_model(model_args, examples)
    assert model.config.thermo_cell_features is True
    np.testing.assert_allclose(model.config.thermo_cell_statistics, [cells.mean(0), cells.std(0)], rtol=1e-6)


def test_cli_predicts_and_plots_with_a_cell_model(canonical_tokenizer, tmp_path, capsys):
    from cloud_hf.cli import main

    cell_model(canonical_tokenizer).save_pretrained(tmp_path / "model")
    canonical_tokenizer.save_pretrained(tmp_path / "model")
    plot = tmp_path / "curves.png"
    assert main(["predict", "examples/Si_diamond.cif", "examples/CsCl.cif", "--model", str(tmp_path / "model"),
                 "--plot", str(plot)]) == 0
    assert "2 ok, 0 failed" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_oblique_setting_of_a_cubic_cell_is_searched_in_its_reduced_basis():
    """b′ = b + 3000·a is the same simple cubic lattice; as given, its (100) planes are 0.001 Å apart, so the image
    search would need ~10⁵ shifts: it runs in the LLL-reduced basis and finds what the cubic setting finds."""
    from cloud_hf.structures import MAX_IMAGE_SHIFTS, closest_pair, interplanar_spacings

    oblique = np.array([[3.0, 0.0, 0.0], [9000.0, 3.0, 0.0], [0.0, 0.0, 3.0]])
    assert np.prod(2 * np.ceil(2.0 / interplanar_spacings(oblique)) + 1) > 10 * MAX_IMAGE_SHIFTS
    frac_cubic = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    frac_oblique = (frac_cubic @ np.linalg.inv(np.array([[1.0, 0, 0], [3000.0, 1, 0], [0, 0, 1]]))) % 1.0
    np.testing.assert_allclose(nearest_neighbour_distances(oblique, frac_oblique), [math.sqrt(27) / 2] * 2)
    assert closest_pair(oblique, frac_oblique, cutoff=3.0) == pytest.approx((0, 1, math.sqrt(27) / 2))
    caesium_chloride = Structure(Lattice.cubic(3.0), ["Cs", "Cl"], frac_cubic)
    np.testing.assert_allclose(cell_descriptors(load_cell(Structure(Lattice(oblique), ["Cs", "Cl"], frac_oblique))),
                               cell_descriptors(load_cell(caesium_chloride)), atol=1e-9)


# --- packing descriptors: the cell descriptors without the vacuum ---------------------------------------------------


def monolayer(height: float) -> Structure:
    """A MoS2-like monolayer (S–Mo–S, 1.56 Å either side) centred in a cell ``height`` Å tall."""
    return Structure(Lattice.hexagonal(3.16, height), ["Mo", "S", "S"],
                     [[1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5 + 1.56 / height], [2 / 3, 1 / 3, 0.5 - 1.56 / height]])


@pytest.mark.parametrize("structure", PROTOTYPES[:8], ids=lambda s: s.composition.reduced_formula)
def test_packing_descriptors_of_bulk_cells_are_the_cell_descriptors(structure):
    from cloud_hf.cell_descriptors import packing_descriptors

    cell = load_cell(structure)
    assert packing_descriptors(cell) == [*cell_descriptors(cell), 0.0]


def test_packing_descriptors_of_a_layer_do_not_move_with_its_vacuum():
    from cloud_hf.cell_descriptors import packing_descriptors

    values = [packing_descriptors(load_cell(monolayer(height))) for height in (14.0, 20.0, 35.0)]
    for other in values[1:]:
        np.testing.assert_allclose(other, values[0], rtol=1e-12)
    # hand value: the layer is 3.12 Å thick, plus one mean neighbour distance (every atom's nearest is Mo–S)
    nearest = math.sqrt((3.16 / math.sqrt(3)) ** 2 + 1.56**2)
    area = 3.16**2 * math.sqrt(3) / 2
    assert values[0][0] == pytest.approx(math.log(area * (3.12 + nearest) / 3))
    assert values[0][2] == pytest.approx(math.log(nearest)) and values[0][4] == 1.0
    # while the cell descriptors of the same cells follow the vacuum
    assert cell_descriptors(load_cell(monolayer(35.0)))[0] - cell_descriptors(load_cell(monolayer(14.0)))[0] == (
        pytest.approx(math.log(35.0 / 14.0)))
