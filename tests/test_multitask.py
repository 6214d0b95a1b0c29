"""Multi-task pre-training: the model's masked losses, the backbone it exports, the joined corpus, balanced sampling."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure
from safetensors.torch import load_file

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.modeling_cloud import CloudForMaskedLM, CloudForMultiTaskPretraining, CloudForRegression
from cloud_hf.scope import ScopeEncoder
from cloud_hf.training import EpochWeightedSampler
from cloud_hf.training.metrics import per_target_mae
from cloud_hf.training.multitask import (
    balanced_sample_weights,
    parse_tasks,
    property_statistics,
    read_multitask_corpus,
)
from test_recipes import CONFIGS, QUICK, TINY_MODEL, canonical_tokenizer, run_recipe  # noqa: F401 (fixture)

NAN = float("nan")


def tiny_multitask_model(**overrides) -> CloudForMultiTaskPretraining:
    torch.manual_seed(0)
    config = CloudConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=32, target_names=["a", "b"], target_mean=[1.0, 10.0],
                         target_std=[2.0, 5.0], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                         head_dropout=0.0, **overrides)
    return CloudForMultiTaskPretraining(config).eval()


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 40, (3, 6), generator=generator)
    labels = torch.full_like(input_ids, -100)
    labels[:, 2] = input_ids[:, 2]
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


# ------------------------------------------------------------------------------------------------- the model


def test_property_loss_counts_only_the_labels_a_crystal_has() -> None:
    model = tiny_multitask_model()
    inputs = batch()
    properties = torch.tensor([[3.0, NAN], [NAN, NAN], [-1.0, 20.0]])
    output = model(**inputs, property_labels=properties)
    standardized = (properties - torch.tensor([1.0, 10.0])) / torch.tensor([2.0, 5.0])
    logits = (output.predictions - torch.tensor([1.0, 10.0])) / torch.tensor([2.0, 5.0])
    known = ~torch.isnan(standardized)
    expected = (logits[known] - standardized[known]).abs().mean()  # L1 (the config's default) over 3 labels
    torch.testing.assert_close(output.property_loss, expected)
    torch.testing.assert_close(output.loss, output.mlm_loss + output.property_loss)
    masked_only = CloudForMaskedLM(model.backbone().config)
    masked_only.load_state_dict(model.backbone().state_dict())
    torch.testing.assert_close(output.mlm_loss, masked_only.eval()(**inputs).loss)


def test_property_loss_weight_and_a_batch_without_property_labels() -> None:
    model = tiny_multitask_model(multitask_loss_weight=0.25)
    inputs = batch()
    properties = torch.tensor([[3.0, 4.0], [NAN, 12.0], [NAN, NAN]])
    output = model(**inputs, property_labels=properties)
    torch.testing.assert_close(output.loss, output.mlm_loss + 0.25 * output.property_loss)
    unlabelled = model(**inputs, property_labels=torch.full((3, 2), NAN))
    assert unlabelled.property_loss.item() == 0.0
    torch.testing.assert_close(unlabelled.loss, unlabelled.mlm_loss)
    unlabelled.loss.backward()  # the graph is intact: the masked-LM term trains alone
    assert model.head.out_proj.weight.grad.abs().sum().item() == 0.0
    assert model.cloud.embeddings.word_embeddings.weight.grad.abs().sum().item() > 0


def test_backbone_is_the_same_encoder_and_loads_into_any_head(tmp_path: Path) -> None:
    model = tiny_multitask_model(element_property_embeddings=False)
    backbone = model.backbone()
    assert type(backbone) is CloudForMaskedLM
    assert backbone.config.target_names is None and backbone.config.composition_features is False
    inputs = batch()
    torch.testing.assert_close(backbone.eval()(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    backbone.save_pretrained(tmp_path)
    assert not any("head.out_proj" in key for key in load_file(tmp_path / "model.safetensors"))
    regression = CloudForRegression.from_pretrained(tmp_path, target_names=["shear"], target_mean=[30.0],
                                                    target_std=[20.0])
    encoder_state = {k: v for k, v in model.state_dict().items() if k.startswith("cloud.")}
    for key, value in encoder_state.items():
        torch.testing.assert_close(regression.state_dict()[key], value, msg=key)
    assert regression.head.out_proj.weight.shape == (1, 16)


# ------------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(("spec", "message"), [
    ({}, "non-empty mapping"),
    ({"gap": {"units": "eV"}}, "task gap: sources must map"),
    ({"gap": {"sources": {"a.csv": ""}}}, "task gap: source a.csv must name its column"),
    ({"gap": {"sources": {"a.csv": "band_gap"}, "scale": 2}}, r"task gap: unknown keys \['scale'\]"),
    ({"gap": ["a.csv"]}, "task gap: expected a mapping"),
])
def test_task_options_are_checked_before_reading(spec: dict, message: str) -> None:
    with pytest.raises(CloudConfigError, match=message):
        parse_tasks(spec)


def test_balanced_sample_weights_by_hand() -> None:
    labels = np.array([[1.0, NAN], [2.0, NAN], [3.0, NAN], [4.0, 5.0], [NAN, NAN]])  # task a: 4 rows, b: 1 row
    np.testing.assert_allclose(balanced_sample_weights(labels, 0.5), [1, 1, 1, 2, 1])
    np.testing.assert_allclose(balanced_sample_weights(labels, 1.0), [1, 1, 1, 4, 1])
    np.testing.assert_allclose(balanced_sample_weights(labels, 0.0), [1, 1, 1, 1, 1])


def test_epoch_weighted_sampler_follows_weights_and_repeats_per_epoch() -> None:
    sampler = EpochWeightedSampler(torch.tensor([0.0, 0.0, 1.0, 3.0]), num_samples=4000, seed=7)
    first = list(sampler)
    assert set(first) == {2, 3}
    assert abs(first.count(3) / len(first) - 0.75) < 0.03
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # a resumed run redraws epoch 0 exactly


def test_per_target_mae_and_statistics_skip_missing_labels() -> None:
    labels = np.array([[1.0, NAN], [3.0, 10.0]])
    predictions = np.array([[2.0, 0.0], [3.0, 7.0]])
    assert per_target_mae(predictions, labels, ["a", "b"]) == {"mae_a": 0.5, "mae_b": 3.0}
    means, stds = property_statistics(pd.DataFrame(labels, columns=["a", "b"]), ["a", "b"])
    assert means == [2.0, 10.0] and stds == [1.0, 1.0]  # one label: std 1, not 0


# ------------------------------------------------------------------------------------------------- the corpus


def cif(structure: Structure) -> str:
    return structure.to(fmt="cif")


@pytest.fixture(scope="module")
def crystals() -> dict[str, Structure]:
    return {
        "NaCl": Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "CsCl": Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "Si": Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]),
        "MgO": Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    }


def write_table(path: Path, rows: list[dict]) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_corpus_joins_by_string_averages_repeats_and_drops_excluded_crystals(
        crystals: dict[str, Structure], tmp_path: Path) -> None:
    first = write_table(tmp_path / "a.csv", [
        {"cif": cif(crystals["NaCl"]), "gap": 5.0, "modulus": 20.0},
        {"cif": cif(crystals["Si"]), "gap": 1.0, "modulus": -3.0},   # a modulus <= 0 is no log label
        {"cif": cif(crystals["MgO"]), "gap": 7.0, "modulus": 100.0},
        {"cif": "not a crystal", "gap": 1.0, "modulus": 1.0}])
    second = write_table(tmp_path / "b.csv", [
        {"cif": cif(crystals["NaCl"].copy().perturb(0.0)), "gap": 6.0},  # the same crystal: labels averaged
        {"cif": cif(crystals["CsCl"]), "gap": 2.0}])
    unlabelled = write_table(tmp_path / "c.csv", [{"cif": cif(crystals["CsCl"])}, {"cif": cif(crystals["Si"])}])
    excluded = write_table(tmp_path / "test.csv", [{"cif": cif(crystals["MgO"])}])
    tasks = parse_tasks({"gap": {"sources": {first: "gap", second: "gap"}},
                         "modulus": {"log10": True, "units": "GPa", "sources": {first: "modulus"}}})
    encoder = ScopeEncoder(mode="canonical")
    corpus = read_multitask_corpus(tasks, [unlabelled], [excluded], encoder, {})
    rows = corpus.rows.set_index("scope")
    strings = {name: encoder.encode(structure) for name, structure in crystals.items()}
    assert set(rows.index) == {strings["NaCl"], strings["Si"], strings["CsCl"]}  # MgO excluded everywhere
    assert rows.loc[strings["NaCl"], "gap"] == pytest.approx(5.5)
    assert rows.loc[strings["NaCl"], "modulus"] == pytest.approx(np.log10(20.0))
    assert np.isnan(rows.loc[strings["Si"], "modulus"]) and rows.loc[strings["Si"], "gap"] == 1.0
    assert rows.loc[strings["CsCl"], "gap"] == 2.0
    assert corpus.labels_per_task == {"gap": 3, "modulus": 1}
    assert corpus.n_read == 8 and corpus.n_excluded == 1
    assert list(corpus.bad_rows["source"]) == [first] and corpus.bad_rows["row"] == [3]
    assert tasks[1].label_units == "log10(GPa)"


def test_corpus_errors_name_the_task_or_table(crystals: dict[str, Structure], tmp_path: Path) -> None:
    table = write_table(tmp_path / "a.csv", [{"cif": cif(crystals["NaCl"]), "gap": NAN, "g": 1.0},
                                             {"cif": cif(crystals["Si"]), "gap": NAN, "g": 2.0}])
    encoder = ScopeEncoder(mode="canonical")
    with pytest.raises(CloudDataError, match=r"task gap: column 'gap' of .*a.csv holds no usable value"):
        read_multitask_corpus(parse_tasks({"gap": {"sources": {table: "gap"}}}), [], [], encoder, {})
    with pytest.raises(CloudDataError, match="band_gap"):
        read_multitask_corpus(parse_tasks({"gap": {"sources": {table: "band_gap"}}}), [], [], encoder, {})
    with pytest.raises(CloudDataError, match=r"missing\.csv"):
        read_multitask_corpus(parse_tasks({"g": {"sources": {str(tmp_path / "missing.csv"): "g"}}}), [], [],
                              encoder, {})
    with pytest.raises(CloudDataError, match="task g: no labelled crystal left"):
        read_multitask_corpus(parse_tasks({"g": {"sources": {table: "g"}}}), [], [table], encoder, {})
    with pytest.raises(CloudDataError, match="matches no file"):
        read_multitask_corpus(parse_tasks({"g": {"sources": {table: "g"}}}), [str(tmp_path / "*.json")], [],
                              encoder, {})


# ------------------------------------------------------------------------------------------------- the recipe


def test_multitask_smoke_writes_backbone_and_per_task_metrics(canonical_tokenizer: str, shared_data: Path,  # noqa: F811
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "multitask"
    run_recipe("pretrain_multitask", "pretrain_multitask_smoke.yaml",
               ["--output_dir", str(output), "--model.tokenizer", canonical_tokenizer, "--max_rows", "40",
                "--max_steps", "4", "--eval_steps", "2", "--model.config_overrides", TINY_MODEL, *QUICK], monkeypatch)
    metrics = json.loads((output / "pretrain_metrics.json").read_text())
    names = ["formation_energy", "band_gap", "shear_modulus_aflow"]
    assert set(metrics["units"]) == set(names) and metrics["units"]["shear_modulus_aflow"] == "log10(GPa)"
    assert all(np.isfinite(metrics["eval"][f"eval_mae_{name}"]) for name in names
               if metrics["eval_train_mean_baseline"][f"mae_{name}"] is not None)
    backbone = CloudForMaskedLM.from_pretrained(output)
    assert backbone.config.target_names is None and backbone.config.element_property_embeddings is True
    full = CloudForMultiTaskPretraining.from_pretrained(output / "multitask")
    assert full.config.target_names == names
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(full.state_dict()[key], value, msg=key)


def test_multitask_config_is_honest_about_test_splits() -> None:
    """Every task of the shipped recipe reads no test split and the exclude list covers every test split it has."""
    import yaml

    config = yaml.safe_load((CONFIGS / "pretrain_multitask_small.yaml").read_text())
    sources = [path for task in config["data"]["tasks"].values() for path in task["sources"]]
    assert sources and not any("test" in Path(path).name for path in sources)
    assert not any("phonon" in path or "matbench" in path for path in sources)
    excluded = " ".join(config["data"]["exclude"])
    for folder in ("aflow/*/test", "mp_20/*test", "mpts_52/test", "perov_5/*test", "carbon_24/test",
                   "supercon/supercon_test", "matbench_jdft2d", "jarvis_dft_2d"):
        assert folder in excluded, folder


def test_multitask_resume_matches_uninterrupted_run(canonical_tokenizer: str, shared_data: Path,  # noqa: F811
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Balanced sampling and masks depend on the seed, the epoch and the batch only: a run interrupted after step 3
    (two epochs of 2-3 steps) and resumed ends with the weights of the uninterrupted run."""
    common = ["--model.tokenizer", canonical_tokenizer, "--max_rows", "16", "--max_steps", "6",
              "--save_strategy", "steps", "--save_steps", "3", "--eval_steps", "100",
              "--model.config_overrides", TINY_MODEL, *QUICK]
    uninterrupted, interrupted = tmp_path / "straight", tmp_path / "resumed"
    run_recipe("pretrain_multitask", "pretrain_multitask_smoke.yaml", ["--output_dir", str(uninterrupted), *common],
               monkeypatch)
    interrupted.mkdir()
    os.symlink(uninterrupted / "checkpoint-3", interrupted / "checkpoint-3")
    run_recipe("pretrain_multitask", "pretrain_multitask_smoke.yaml",
               ["--output_dir", str(interrupted), "--resume_from_checkpoint", "true", *common], monkeypatch)
    expected = load_file(uninterrupted / "multitask" / "model.safetensors")
    resumed = load_file(interrupted / "multitask" / "model.safetensors")
    halfway = load_file(uninterrupted / "checkpoint-3" / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert any(not torch.equal(halfway[name], expected[name]) for name in expected)
