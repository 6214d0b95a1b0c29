"""Training recipes end to end on real data (tiny models, few steps), in one process and under accelerate."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudConfigError
from cloud_hf.modeling_cloud import CloudForMaskedLM, CloudForRegression
from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.scope import ScopeEncoder, canonical_vocabulary
from cloud_hf.tokenization_cloud import CloudTokenizerFast
from cloud_hf.training import (
    carve_validation,
    classification_metrics,
    layerwise_parameter_groups,
    regression_metrics,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "recipes" / "configs"
TINY_MODEL = ("{hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 1, intermediate_size: 32, "
              "max_position_embeddings: 128}")
QUICK = ["--per_device_train_batch_size", "16", "--logging_steps", "1", "--training.report_to", "none"]


def load_recipe(name: str) -> ModuleType:
    """Import ``recipes/NAME.py`` as a module (the recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO_ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # registered first, as import does: a dataclass in it looks its module up
    spec.loader.exec_module(module)
    return module


def run_recipe(name: str, config: str, arguments: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a recipe's ``main()`` in this process, as ``python recipes/NAME.py CONFIG ARGS`` would."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "argv", [f"recipes/{name}.py", str(CONFIGS / config), *arguments])
    load_recipe(name).main()


@pytest.fixture(scope="module")
def canonical_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The repository's canonical tokenizer folder, or the same tokenizer built from the SCOPE vocabulary."""
    if (REPO_ROOT / "tokenizer" / "tokenizer.json").is_file():
        return str(REPO_ROOT / "tokenizer")
    folder = tmp_path_factory.mktemp("tokenizer")
    CloudTokenizerFast.from_scope_vocabulary(canonical_vocabulary(), ScopeEncoder().to_dict()).save_pretrained(folder)
    return str(folder)


# ---------------------------------------------------------------- configuration, metrics, optimizer


def test_regression_metrics_match_definitions() -> None:
    labels = np.array([1.0, 2.0, 4.0, 7.0])
    predictions = np.array([1.5, 2.0, 3.0, 9.0])
    metrics = regression_metrics(predictions, labels)
    assert metrics["mae"] == pytest.approx(3.5 / 4)
    assert metrics["rmse"] == pytest.approx(math.sqrt(5.25 / 4))
    assert metrics["r2"] == pytest.approx(1 - 5.25 / 21.0)
    assert metrics["mae_over_mad"] == pytest.approx((3.5 / 4) / 2.0)


def test_classification_metrics_roc_auc_from_logits() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    logits = np.array([[2.0, 0.0], [0.0, 0.5], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    metrics = classification_metrics(logits, labels)
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    # class-1 margins: negatives -2, 0.5; positives 1, -1, 3: 5 of the 6 positive-negative pairs are ordered
    assert metrics["roc_auc"] == pytest.approx(5 / 6)


def test_layerwise_learning_rates_decay_towards_the_embeddings() -> None:
    model = CloudForRegression(CloudConfig(vocab_size=40, hidden_size=16, num_hidden_layers=3,
                                           num_attention_heads=1, intermediate_size=32))
    no_decay = {n for n, p in model.named_parameters() if p.ndim == 1}
    groups = layerwise_parameter_groups(model, learning_rate=1.0, decay=0.5, weight_decay=0.01,
                                        decay_parameters={n for n, _ in model.named_parameters()} - no_decay)
    rate_of = {id(p): group["lr"] for group in groups for p in group["params"]}
    named = dict(model.named_parameters())
    embedding = next(p for n, p in named.items() if "word_embeddings" in n)
    block_0 = next(p for n, p in named.items() if ".layers.0." in n)
    block_2 = next(p for n, p in named.items() if ".layers.2." in n)
    head = next(p for n, p in named.items() if n.startswith("head"))
    assert rate_of[id(head)] == 1.0
    assert rate_of[id(block_2)] == 0.5 and rate_of[id(block_0)] == 0.125
    assert rate_of[id(embedding)] == 0.0625
    assert sum(len(group["params"]) for group in groups) == len(named)
    decay_of = {id(p): group["weight_decay"] for group in groups for p in group["params"]}
    assert all(decay_of[id(p)] == (0.0 if n in no_decay else 0.01) for n, p in named.items())


def test_carved_validation_is_disjoint_from_training(reference_data: Path) -> None:
    from cloud_hf.data import read_table

    table = read_table(reference_data / "cloud_cv_train_and_val.csv", label_columns=["cv"])
    train, validation = carve_validation(table, 0.1, seed=0)
    assert len(validation) == round(0.1 * len(table))
    assert not set(train["row"]) & set(validation["row"])
    assert len(train) + len(validation) == len(table)


def test_debye_theta_scale_from_heat_capacities_round_trips() -> None:
    from cloud_hf.debye import heat_capacity, median_debye_temperature

    theta = torch.tensor([150.0, 420.0, 900.0], dtype=torch.float64)
    atoms = torch.tensor([2.0, 5.0, 8.0], dtype=torch.float64)
    cv = heat_capacity(theta, torch.tensor(300.0, dtype=torch.float64), atoms)
    median = median_debye_temperature(cv.tolist(), atoms.tolist(), 300.0)
    assert median == pytest.approx(420.0, rel=1e-6)


# ---------------------------------------------------------------- recipes in one process


def test_pretrain_smoke(canonical_tokenizer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "pretrain"
    run_recipe("pretrain_mlm", "pretrain_mlm_smoke.yaml",
               ["--output_dir", str(output), "--model.tokenizer", canonical_tokenizer, "--max_rows", "60",
                "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", "--model.config_overrides", TINY_MODEL, *QUICK],
               monkeypatch)
    metrics = json.loads((output / "pretrain_metrics.json").read_text())
    assert metrics["train"]["train_samples_per_second"] > 0 and math.isfinite(metrics["eval"]["eval_loss"])
    assert metrics["n_train"] + metrics["n_validation"] + metrics["n_skipped"] <= 120
    model = CloudForMaskedLM.from_pretrained(output)
    assert model.config.scope["mode"] == "canonical"
    assert (output / "model.safetensors").is_file()
    assert CloudTokenizerFast.from_pretrained(output).scope_config == model.config.scope


def test_pretrain_resume_matches_uninterrupted_run(canonical_tokenizer: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    common = ["--model.tokenizer", canonical_tokenizer, "--max_rows", "60", "--max_steps", "6",
              "--save_steps", "3", "--eval_steps", "100", "--model.config_overrides", TINY_MODEL, *QUICK]
    uninterrupted, interrupted = tmp_path / "straight", tmp_path / "resumed"
    run_recipe("pretrain_mlm", "pretrain_mlm_smoke.yaml", ["--output_dir", str(uninterrupted), *common], monkeypatch)
    # an interruption after step 3: only checkpoint-3 survives
    interrupted.mkdir()
    os.symlink(uninterrupted / "checkpoint-3", interrupted / "checkpoint-3")
    run_recipe("pretrain_mlm", "pretrain_mlm_smoke.yaml",
               ["--output_dir", str(interrupted), "--resume_from_checkpoint", "true", *common], monkeypatch)
    expected = load_file(uninterrupted / "model.safetensors")
    resumed = load_file(interrupted / "model.safetensors")
    halfway = load_file(uninterrupted / "checkpoint-3" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert any(not torch.equal(halfway[name], expected[name]) for name in expected)  # steps 4-6 did train


def test_finetune_smoke_saves_standardisation_and_plot(canonical_tokenizer: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "finetune"
    run_recipe("finetune", "finetune_shear_smoke.yaml",
               ["--output_dir", str(output), "--model.tokenizer", canonical_tokenizer, "--max_rows", "48",
                "--num_train_epochs", "1", "--model.config_overrides", TINY_MODEL, *QUICK], monkeypatch)
    results = json.loads((output / "test_metrics.json").read_text())
    assert results["n_test"] == 48 and math.isfinite(results["metrics"]["mae"])
    assert {"mae", "rmse", "r2", "mean_predictor_mae"} <= set(results["metrics"])
    model = CloudForRegression.from_pretrained(output / "model")
    # no pickle in any saved folder: the options are written as JSON, not as training_args.bin
    assert not list(output.rglob("*.bin"))
    saved_options = json.loads((output / "model" / "training_args.json").read_text())
    assert saved_options["num_train_epochs"] == 1
    train_labels = pd.read_csv(REPO_ROOT.parent / "shared/data/structures/aflow/shear_modulus/train.csv.gz",
                               nrows=48)["shear_modulus"]
    assert model.config.target_names == ["shear_modulus"]
    assert model.config.target_mean[0] == pytest.approx(train_labels.mean())
    assert model.config.target_std[0] == pytest.approx(train_labels.std(ddof=0))
    predictions = pd.read_csv(output / "test_predictions.csv")
    assert len(predictions) == 48 and predictions["shear_modulus_predicted"].notna().all()
    assert (output / "parity_test.png").stat().st_size > 10_000
    assert pd.read_csv(output / "bad_rows_train.csv").empty


def test_debye_cv_smoke_reference_strings(reference_data: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "debye_cv"
    run_recipe("debye_cv", "debye_cv_smoke.yaml",
               ["--output_dir", str(output), "--max_rows", "48", "--num_train_epochs", "1",
                "--model.config_overrides", TINY_MODEL.replace("128", "64"), *QUICK], monkeypatch)
    results = json.loads((output / "test_metrics.json").read_text())
    assert results["n_test"] == 48 and results["metrics"]["mae"] > 0
    model = CloudDebyeModel.from_pretrained(output / "model")
    assert model.config.scope["mode"] == "reference"
    predictions = pd.read_csv(output / "test_predictions.csv")
    # a Debye C_v cannot exceed the Dulong-Petit limit 3NR
    atoms = pd.read_csv(reference_data / "cloud_cv_test.csv", nrows=48)["n_atoms"].to_numpy()
    assert (predictions["cv_predicted"].to_numpy() <= 3 * 8.314462618 * atoms + 1e-3).all()
    assert (output / "thermo_curves_test.png").is_file()


def test_debye_theta_smoke(canonical_tokenizer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "debye_theta"
    run_recipe("debye_theta", "debye_theta_smoke.yaml",
               ["--output_dir", str(output), "--model.tokenizer", canonical_tokenizer, "--max_rows", "48",
                "--num_train_epochs", "1", "--model.config_overrides", TINY_MODEL, *QUICK], monkeypatch)
    metrics = json.loads((output / "test_metrics.json").read_text())["metrics"]
    assert metrics["mae"] > 0 and metrics["mean_predictor_mae"] > 0
    predictions = pd.read_csv(output / "test_predictions.csv")
    assert (predictions["debye_temperature_predicted"] > 0).all()


# ---------------------------------------------------------------- MatBench folds


def matbench_installed() -> bool:
    try:
        importlib.metadata.distribution("matbench")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_matbench = pytest.mark.skipif(not matbench_installed(), reason="pip install --no-deps matbench")


@needs_matbench
def test_matbench_folds_never_leak_test_rows(shared_data: Path) -> None:
    from cloud_hf.data import read_table

    matbench = load_recipe("matbench")
    _, folds = matbench.matbench_task("matbench_jdft2d")
    table = read_table(shared_data / "structures/matbench/matbench_jdft2d.csv.gz")
    table = table.remove_columns("id").add_column("id", matbench.matbench_ids("matbench_jdft2d", len(table), folds))
    assert table["id"][0] == "mb-jdft2d-001"
    tested = []
    for index, (name, fold) in enumerate(sorted(folds.items())):
        train, validation, test = matbench.fold_tables(table, fold, 0.1, seed=index)
        train_ids, validation_ids, test_ids = set(train["id"]), set(validation["id"]), set(test["id"])
        assert test_ids == set(fold["test"]), name
        assert not train_ids & test_ids and not validation_ids & test_ids and not train_ids & validation_ids
        assert train_ids | validation_ids == set(fold["train"])
        tested += test["id"]
    assert sorted(tested) == sorted(table["id"])  # every row is tested exactly once


@needs_matbench
def test_matbench_harness_writes_record_and_results(canonical_tokenizer: str, shared_data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "matbench"
    run_recipe("matbench", "matbench_jdft2d_smoke.yaml",
               ["--task", "matbench_jdft2d", "--data_file", str(shared_data / "structures/matbench/matbench_jdft2d.csv.gz"),
                "--output_dir", str(output), "--model.tokenizer", canonical_tokenizer, "--max_folds", "1",
                "--num_train_epochs", "1", "--model.config_overrides", TINY_MODEL, *QUICK], monkeypatch)
    _, folds = load_recipe("matbench").matbench_task("matbench_jdft2d")
    record = json.loads((output / "matbench_record.json").read_text())
    assert record["dataset_name"] == "matbench_jdft2d"
    assert set(record["results"]["fold_0"]["data"]) == set(folds["fold_0"]["test"])
    results = json.loads((output / "results.json").read_text())
    assert results["mean_mae"] == pytest.approx(record["results"]["fold_0"]["scores"]["mae"])


# ---------------------------------------------------------------- accelerate launch, 2 CPU processes (gloo)


def accelerate_launch(recipe: str, config: str, arguments: list[str], timeout: int = 240) -> None:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO_ROOT / "recipes/accelerate/cpu_2proc.yaml"), "--num_cpu_threads_per_process", "1",
               str(REPO_ROOT / "recipes" / f"{recipe}.py"), str(CONFIGS / config), *arguments]
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                               env=environment)
    assert completed.returncode == 0, completed.stderr[-4000:]


def test_pretrain_and_finetune_under_accelerate_two_processes(canonical_tokenizer: str, tmp_path: Path) -> None:
    pretrained = tmp_path / "pretrain"
    accelerate_launch("pretrain_mlm", "pretrain_mlm_smoke.yaml",
                      ["--output_dir", str(pretrained), "--model.tokenizer", canonical_tokenizer, "--max_rows", "60",
                       "--max_steps", "3", "--eval_steps", "3", "--save_steps", "3", "--model.config_overrides", TINY_MODEL,
                       *QUICK])
    metrics = json.loads((pretrained / "pretrain_metrics.json").read_text())
    assert metrics["world_size"] == 2
    finetuned = tmp_path / "finetune"
    accelerate_launch("finetune", "finetune_shear_smoke.yaml",
                      ["--output_dir", str(finetuned), "--model.checkpoint", str(pretrained), "--max_rows", "40",
                       "--num_train_epochs", "1", *QUICK])
    results = json.loads((finetuned / "test_metrics.json").read_text())
    assert results["n_test"] == 40 and math.isfinite(results["metrics"]["mae"])
    # the test predictions gathered from both processes cover every test row once
    predictions = pd.read_csv(finetuned / "test_predictions.csv")
    assert len(predictions) == 40 and predictions["id"].is_unique


def test_finetune_with_descriptors_fits_their_statistics_on_the_training_rows(canonical_tokenizer: str,
                                                                               tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pymatgen.core import Structure

    from cloud_hf.mass_descriptors import mass_descriptors
    from cloud_hf.structures import load_cell

    output = tmp_path / "finetune_descriptors"
    run_recipe("finetune", "finetune_shear_smoke.yaml",
               ["--output_dir", str(output), "--model.tokenizer", canonical_tokenizer, "--max_rows", "48",
                "--num_train_epochs", "1", "--model.config_overrides", TINY_MODEL, "--composition_features", "true",
                "--structure_features", "mass_descriptors", *QUICK], monkeypatch)
    model = CloudForRegression.from_pretrained(output / "model")
    assert model.config.composition_features and model.config.structure_features == ["mass_descriptors"]
    assert bool(model.descriptors.is_element.any())  # the composition tables were filled and saved
    train = pd.read_csv(REPO_ROOT.parent / "shared/data/structures/aflow/shear_modulus/train.csv.gz", nrows=48)
    column = next(name for name in ("structure", "cif") if name in train.columns)
    values = np.array([mass_descriptors(load_cell(Structure.from_str(text, fmt="cif"))) for text in train[column]])
    means, _ = model.config.feature_statistics("mass_descriptors")
    np.testing.assert_allclose(means, values.mean(0), rtol=1e-9)
    validation = json.loads((output / "validation_metrics.json").read_text())
    assert math.isfinite(validation["mae"]) and validation["mae"] >= 0
    predictions = pd.read_csv(output / "test_predictions.csv")
    assert len(predictions) == 48 and predictions["shear_modulus_predicted"].notna().all()


def test_scaling_power_law_fit_recovers_known_exponents_and_the_smoke_grid_runs(
        canonical_tokenizer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "recipes"))  # scaling.py reads its corpus with pretrain_mlm's reader
    scaling = load_recipe("scaling")
    x = np.array([1e4, 1e5, 1e6, 1e7])
    fit = scaling.power_law(x, 3.0 * x ** -0.076)
    assert fit["alpha"] == pytest.approx(0.076) and fit["a"] == pytest.approx(3.0) and fit["r2"] == pytest.approx(1.0)
    assert scaling.parse_size("128x4") == {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
                                           "intermediate_size": 512}
    with pytest.raises(CloudConfigError, match="not HIDDENxLAYERS"):
        scaling.parse_size("big")
    output = tmp_path / "scaling"
    run_recipe("scaling", "scaling_smoke.yaml", ["--output_dir", str(output), "--model.tokenizer", canonical_tokenizer,
                                                 "--max_rows", "120", "--max_steps", "2"], monkeypatch)
    result = json.loads((output / "scaling.json").read_text())
    assert len(result["runs"]) == 12 and set(result["fits"]) == {"parameters", "n_train"}
    sizes = {run["size"]: run["parameters"] for run in result["runs"]}
    assert sizes["32x1"] < sizes["32x2"] < sizes["64x2"]  # non-embedding parameters grow with the grid
    fractions = sorted({run["n_train"] for run in result["runs"]})
    assert len(fractions) == 3 and fractions[-1] == result["runs"][-1]["n_train"]
    assert (output / "scaling.png").stat().st_size > 10_000
