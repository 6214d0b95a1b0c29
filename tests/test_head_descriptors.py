"""Descriptors for every head (issue 22, item 1): CloudForRegression and CloudForClassification read the pooled
composition descriptors and any registered structure feature through one descriptor MLP added to [CLS], declared in
the config only; the recipes' data path computes the features as the processor does, the Trainer keeps their
columns, and the statistics are fitted on the training rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from cloud_hf.composition import element_token_table, pooled_composition_features
from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.data import add_feature_columns, add_scope_column, add_token_columns, split_bad_rows
from cloud_hf.errors import CloudDataError
from cloud_hf.modeling_cloud import CloudForClassification, CloudForRegression
from cloud_hf.processing_cloud import CloudProcessor
from cloud_hf.scope import ScopeEncoder

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 32, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "head_dropout": 0.0}
FEATURES = ["cell_descriptors", "mass_descriptors"]


def rock_salt(a: float = 5.64, species=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def regression(tokenizer, **settings) -> CloudForRegression:
    torch.manual_seed(0)
    config = CloudConfig(**TINY, vocab_size=len(tokenizer), scope=tokenizer.scope_config, **settings)
    model = CloudForRegression(config)
    if model.descriptors is not None:
        model.descriptors.set_composition_tables(tokenizer)
    return model.eval()


def test_a_head_without_descriptors_has_no_descriptor_weights(canonical_tokenizer, tmp_path):
    model = regression(canonical_tokenizer)
    assert model.descriptors is None
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["composition_features"] is False and "structure_features" not in saved
    assert not [name for name in model.state_dict() if "descriptors" in name]


def test_regression_reads_composition_and_structure_features_declared_in_its_config(canonical_tokenizer, tmp_path):
    model = regression(canonical_tokenizer, composition_features=True, structure_features=FEATURES)
    processor = CloudProcessor.for_model(model.config, canonical_tokenizer)
    assert processor.feature_input_names == ["cell_features", "mass_features"]
    batch = processor([rock_salt(), rock_salt(4.08, ("Li", "H"))], return_tensors="pt")
    with torch.no_grad():
        predictions = model(**batch).predictions
        # the same tokens with other cell numbers: another prediction (the descriptors reach the head)
        moved = model(**{**batch, "cell_features": batch["cell_features"] + 1.0}).predictions
    assert not torch.allclose(predictions, moved)
    # the descriptor MLP reads exactly [pooled composition, cell, mass] (no statistics: as computed)
    tables = element_token_table(canonical_tokenizer.get_vocab(), model.config.vocab_size)
    composition = pooled_composition_features(batch["input_ids"], batch["attention_mask"], *tables)
    joined = torch.cat([composition, batch["cell_features"], batch["mass_features"]], dim=-1)
    with torch.no_grad():
        encoded = model.cloud(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[:, 0]
        expected = model.head(encoded + model.descriptors.mlp(joined)) * model.target_std + model.target_mean
    torch.testing.assert_close(predictions, expected)
    # the composition tables are saved with the weights: a loaded model predicts the same without a tokenizer
    model.save_pretrained(tmp_path)
    loaded = CloudForRegression.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).predictions, predictions)
    assert loaded.config.composition_features and loaded.config.structure_features == FEATURES


def test_feature_statistics_standardise_the_input(canonical_tokenizer):
    statistics = [[0.1, 0.03, 0.0, 0.0], [0.05, 0.02, 0.5, 0.25]]
    model = regression(canonical_tokenizer, structure_features=["mass_descriptors"],
                       structure_feature_statistics={"mass_descriptors": statistics})
    processor = CloudProcessor.for_model(model.config, canonical_tokenizer)
    batch = processor([rock_salt()], return_tensors="pt")
    with torch.no_grad():
        summary = model.cloud(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[:, 0]
        standardised = (batch["mass_features"] - torch.tensor(statistics[0])) / torch.tensor(statistics[1])
        expected = model.head(summary + model.descriptors.mlp(standardised))
        torch.testing.assert_close(model(**batch).logits, expected)


def test_missing_or_bad_feature_inputs_are_clear_errors(canonical_tokenizer):
    model = regression(canonical_tokenizer, composition_features=True, structure_features=["mass_descriptors"])
    batch = CloudProcessor.for_model(model.config, canonical_tokenizer)([rock_salt()], return_tensors="pt")
    with pytest.raises(CloudDataError, match=r"pass mass_features \(batch, 4\) = mean_inverse_sqrt_mass"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    with pytest.raises(CloudDataError, match=r"mass_features has NaN or infinite values in row\(s\) \[0\]"):
        model(**{**batch, "mass_features": torch.full((1, 4), float("nan"))})
    embeds = model.cloud.embeddings.word_embeddings(batch["input_ids"])
    with pytest.raises(CloudDataError, match="pools composition descriptors from input_ids"):
        model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], mass_features=batch["mass_features"])


def test_classification_reads_descriptors_too(canonical_tokenizer):
    torch.manual_seed(0)
    config = CloudConfig(**TINY, vocab_size=len(canonical_tokenizer), scope=canonical_tokenizer.scope_config,
                         num_labels=3, composition_features=True, structure_features=["mass_descriptors"])
    model = CloudForClassification(config).eval()
    model.descriptors.set_composition_tables(canonical_tokenizer)
    batch = CloudProcessor.for_model(config, canonical_tokenizer)([rock_salt()], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        moved = model(**{**batch, "mass_features": batch["mass_features"] * 3}).logits
    assert logits.shape == (1, 3) and not torch.allclose(logits, moved)


def test_data_path_computes_the_processor_s_features_and_reports_refused_rows(canonical_tokenizer, tmp_path):
    import datasets

    slab = Structure(Lattice.tetragonal(3.905, 23.905), ["Sr", "Ti", "O", "O", "O"],
                     np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
                     * np.array([3.905, 3.905, 3.905]) / np.array([3.905, 3.905, 23.905]))
    crystals = [rock_salt(), slab, rock_salt(4.08, ("Li", "H"))]
    table = datasets.Dataset.from_dict({"id": ["nacl", "slab", "lih"], "row": [0, 1, 2],
                                        "structure": [s.to(fmt="cif") for s in crystals], "error": [None] * 3})
    table = add_token_columns(add_scope_column(table, ScopeEncoder()), canonical_tokenizer, 32)
    table = add_feature_columns(table, FEATURES)
    good, bad = split_bad_rows(table)
    assert good["id"] == ["nacl", "lih"] and bad["id"] == ["slab"]
    assert "slab or layer in vacuum" in bad["error"][0] and "'slab'" in bad["error"][0]
    processor = CloudProcessor(canonical_tokenizer, scope=canonical_tokenizer.scope_config,
                               structure_features=FEATURES)
    expected = processor([crystals[0], crystals[2]], return_tensors="np")
    for name in ("cell_features", "mass_features"):
        np.testing.assert_allclose(np.array(good[name]), expected[name], rtol=1e-6)
    # the mass descriptors alone do not refuse the slab: vacuum does not set them
    assert split_bad_rows(add_feature_columns(table.remove_columns(["cell_features", "mass_features"])
                                              .map(lambda row: {"error": None}), ["mass_descriptors"]))[1].num_rows == 0
    with pytest.raises(CloudDataError, match="needs a 'structure' column"):
        add_feature_columns(datasets.Dataset.from_dict({"scope": ["x"], "error": [None]}), ["mass_descriptors"])


def test_trainer_keeps_the_feature_columns_the_model_reads(canonical_tokenizer, tmp_path):
    from transformers import TrainingArguments

    from cloud_hf.training.trainer import CloudTrainer

    model = regression(canonical_tokenizer, structure_features=FEATURES)
    trainer = CloudTrainer(model=model, args=TrainingArguments(str(tmp_path), use_cpu=True, report_to="none"))
    trainer._set_signature_columns_if_needed()
    assert {"cell_features", "mass_features", "input_ids", "labels"} <= set(trainer._signature_columns)


def test_init_supervised_model_fits_statistics_on_training_rows_and_fills_tables(canonical_tokenizer, tmp_path):
    import datasets

    from cloud_hf.training import TaskSpec, head_descriptors, init_supervised_model
    from cloud_hf.training.arguments import SupervisedModelArguments

    rows = np.array([[0.1, 0.02, 0.0, 0.0], [0.3, 0.1, 0.5, 0.5], [0.2, 0.04, 0.0, 0.0]])
    train = datasets.Dataset.from_dict({"input_ids": [[0, 2]] * 3, "target": [1.0, 2.0, 4.0],
                                        "mass_features": rows.tolist()})
    model_args = SupervisedModelArguments(tokenizer=None, config_overrides=dict(TINY),
                                          composition_features=True, structure_features=["mass_descriptors"])
    assert head_descriptors(model_args) == (True, ["mass_descriptors"])
    model = init_supervised_model(model_args, canonical_tokenizer, TaskSpec(label_columns=["target"]), train, 0)
    means, stds = model.config.feature_statistics("mass_descriptors")
    np.testing.assert_allclose(means, rows.mean(0))
    np.testing.assert_allclose(stds, np.maximum(rows.std(0), 1e-6))
    # the composition tables are the tokenizer's (a fresh model's are zeros until filled)
    expected = element_token_table(canonical_tokenizer.get_vocab(), model.config.vocab_size)
    torch.testing.assert_close(model.descriptors.is_element, expected[0])
    torch.testing.assert_close(model.descriptors.element_properties, expected[1])
    # a checkpoint carries its settings: options left unset take the checkpoint's
    model.save_pretrained(tmp_path)
    assert head_descriptors(SupervisedModelArguments(checkpoint=str(tmp_path))) == (True, ["mass_descriptors"])
    assert head_descriptors(SupervisedModelArguments(checkpoint=str(tmp_path), composition_features=False,
                                                     structure_features=[])) == (False, [])


def test_element_property_embeddings_join_element_tokens_only(canonical_tokenizer, tmp_path):
    model = regression(canonical_tokenizer, element_property_embeddings=True)
    embeddings = model.cloud.embeddings
    assert not embeddings.has_element_tables  # a fresh model's table is empty until filled
    embeddings.set_element_tables(canonical_tokenizer)
    expected = element_token_table(canonical_tokenizer.get_vocab(), model.config.vocab_size)[1]
    torch.testing.assert_close(embeddings.element_properties, expected)
    vocab = canonical_tokenizer.get_vocab()
    ids = torch.tensor([[vocab["Na"], vocab["4a"], vocab["Cl"]]])
    with torch.no_grad():
        joined = embeddings.word_embeddings(ids) + embeddings.element_projection(expected[ids])
        positions = embeddings.position_embeddings(torch.arange(3))[None]
        torch.testing.assert_close(embeddings(ids), embeddings.LayerNorm(joined + positions))
    # the Wyckoff token gets nothing added; elements that are neighbours in the table get closer added vectors
    assert not expected[vocab["4a"]].any()
    projected = embeddings.element_projection(expected[[vocab["Na"], vocab["K"], vocab["I"]]])
    assert (projected[0] - projected[1]).norm() < (projected[0] - projected[2]).norm()
    model.save_pretrained(tmp_path)
    loaded = CloudForRegression.from_pretrained(tmp_path)
    assert loaded.cloud.embeddings.has_element_tables
    torch.testing.assert_close(loaded.cloud.embeddings.element_properties, expected)
