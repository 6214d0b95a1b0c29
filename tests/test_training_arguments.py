"""The recipes' typed options: YAML + command line through HfArgumentParser, discoverable and strict."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from transformers.optimization import Adafactor

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudConfigError
from cloud_hf.modeling_cloud import CloudForRegression
from cloud_hf.training import (
    CloudTrainer,
    CloudTrainingArguments,
    ModelArguments,
    RecipeArgumentParser,
    ReproducibleMLMCollator,
    SupervisedTrainingArguments,
    parse_recipe_arguments,
)
from cloud_hf.training.arguments import FinetuneDataArguments

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "recipes" / "configs"
PACKAGE = REPO_ROOT / "src" / "cloud_hf" / "training"
RECIPES = ("pretrain_mlm", "pretrain_multitask", "finetune", "matbench", "debye_cv", "debye_theta", "thermo",
           "scaling")
#: package modules that read a thin recipe's options for it (its run() only passes them on)
RECIPE_MODULES = {"thermo": ("thermo.py",)}
FINETUNE = (FinetuneDataArguments, ModelArguments, SupervisedTrainingArguments)
#: variable name → position of its dataclass in a recipe's ARGUMENTS (the naming every recipe and module follows)
OPTION_VARIABLES = {"data_args": 0, "model_args": 1, "training_args": 2}


def load_recipe(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO_ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # registered first, as import does: a dataclass in it looks its module up
    spec.loader.exec_module(module)
    return module


def write_yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


FINETUNE_YAML = """
output_dir: out
seed: 7
data: {train: a.csv, label_columns: [g], max_rows: 10}
model: {tokenizer: tok, config_overrides: {hidden_size: 16}}
training: {learning_rate: 1.0e-4, layer_lr_decay: 0.9}
"""


def test_yaml_then_command_line_then_defaults(tmp_path: Path) -> None:
    config = write_yaml(tmp_path, FINETUNE_YAML)
    data, model, training = parse_recipe_arguments(
        FINETUNE, [config, "--max_rows", "5", "--training.learning_rate=2e-3", "--model.tokenizer", "other",
                   "--label_columns", "a", "b", "--config_overrides", "{hidden_size: 32, num_hidden_layers: 1}"])
    assert (data.train, data.max_rows, data.label_columns, data.validation_fraction) == ("a.csv", 5, ["a", "b"], 0.1)
    assert model.tokenizer == "other" and model.config_overrides == {"hidden_size": 32, "num_hidden_layers": 1}
    assert (training.output_dir, training.seed, training.learning_rate) == ("out", 7, 2e-3)
    assert training.layer_lr_decay == 0.9 and training.save_total_limit == 2  # YAML, then the supervised default
    assert str(training.eval_strategy) in ("epoch", "IntervalStrategy.EPOCH")


def test_null_on_the_command_line_clears_an_optional_option(tmp_path: Path) -> None:
    config = write_yaml(tmp_path, FINETUNE_YAML.replace("tokenizer: tok", "checkpoint: ckpt, tokenizer: tok"))
    data, model, training = parse_recipe_arguments(FINETUNE, [config, "--checkpoint", "null", "--data.max_rows", "none",
                                                              "--layer_lr_decay=null", "--save_total_limit", "~"])
    assert model.checkpoint is None and data.max_rows is None and training.layer_lr_decay is None
    assert training.save_total_limit is None
    assert training.report_to == []  # its default "none" is text, never read as None
    _, _, training = parse_recipe_arguments(FINETUNE, [config, "--report_to", "none"])
    assert training.report_to == []


HELP_FLAGS = {
    "pretrain_multitask": ("--tasks", "--exclude", "--balance_exponent", "--multitask_loss_weight", "--mlm_probability",
                           "--element_property_embeddings", "--resume_from_checkpoint"),
    "matbench": ("--max_folds", "--data_file", "--task", "--checkpoint", "--config_overrides", "--optim",
                 "--layer_lr_decay", "--early_stopping_patience", "--learning_rate"),
    "thermo": ("--labels", "--label_temperatures", "--phonon_file", "--max_train_rows", "--head", "--members",
               "--bootstrap", "--calibrate_std", "--checkpoint", "--optim", "--layer_lr_decay", "--learning_rate"),
}


@pytest.mark.parametrize("recipe", sorted(HELP_FLAGS))
def test_help_of_the_script_lists_the_options_and_exits_0(recipe: str) -> None:
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "recipes" / f"{recipe}.py"), "--help"],
                               capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    for flag in HELP_FLAGS[recipe]:
        assert f"{flag} " in completed.stdout
    assert completed.stdout.startswith(f"usage: python recipes/{recipe}.py [CONFIG.yaml] [--option value ...]")


def test_every_shipped_config_parses(tmp_path: Path) -> None:
    gpu_only = []
    for config in sorted(CONFIGS.glob("*.yaml")):
        recipe = next((name for name in RECIPES if config.name.startswith(name)),  # e.g. pretrain_multitask_small
                      next(name for name in RECIPES if config.name.startswith(name.split("_")[0])))  # pretrain_small
        try:
            parse_recipe_arguments(load_recipe(recipe).ARGUMENTS, [str(config)])
        except CloudConfigError as error:  # the paper-size configs ask for bf16 on a GPU
            assert "bf16" in str(error) and not torch.cuda.is_available(), (config.name, error)
            gpu_only.append(config.name)
    assert len(gpu_only) <= 5


def test_unknown_yaml_key_names_the_key_and_the_closest_option(tmp_path: Path) -> None:
    with pytest.raises(CloudConfigError, match=r"run.yaml: unknown key data.max_row \(did you mean 'max_rows'\?\)"):
        parse_recipe_arguments(FINETUNE, [write_yaml(tmp_path, "data: {train: a, label_columns: [g], max_row: 3}")])
    with pytest.raises(CloudConfigError, match=r"unknown key model.layer_lr_decay \(it is an option of section "
                                               r"'training'\)"):
        parse_recipe_arguments(FINETUNE, [write_yaml(tmp_path, "model: {layer_lr_decay: 0.9}")])
    with pytest.raises(CloudConfigError, match=r"unknown key lerning_rate \(did you mean 'learning_rate'\?\)"):
        parse_recipe_arguments(FINETUNE, [write_yaml(tmp_path, "lerning_rate: 0.1")])


def test_unknown_flag_names_the_closest_option_and_prefixes_are_refused(tmp_path: Path) -> None:
    matbench = load_recipe("matbench").ARGUMENTS
    common = ["--task", "matbench_jdft2d", "--data_file", "x.csv"]
    with pytest.raises(CloudConfigError, match=r"unknown option --max_fold \(did you mean '--max_folds'\?\)"):
        parse_recipe_arguments(matbench, [*common, "--max_fold", "1"])
    with pytest.raises(CloudConfigError, match=r"unknown option --data.max_fold \(did you mean 'max_folds'\?\)"):
        parse_recipe_arguments(matbench, [*common, "--data.max_fold", "1"])
    data, _, _ = parse_recipe_arguments(matbench, [*common, "--max_folds", "1"])
    assert data.max_folds == 1


def test_wrong_types_and_missing_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(CloudConfigError, match=r"option max_rows must be int, got 2\.5"):
        parse_recipe_arguments(FINETUNE, [write_yaml(tmp_path, "data: {train: a, label_columns: [g], max_rows: 2.5}")])
    with pytest.raises(CloudConfigError, match=r"argument --max_rows.*invalid int value: 'many'"):
        parse_recipe_arguments(FINETUNE, ["--train", "a", "--label_columns", "g", "--max_rows", "many"])
    with pytest.raises(CloudConfigError, match=r"label_columns .* is required"):
        parse_recipe_arguments(FINETUNE, ["--train", "a"])
    with pytest.raises(CloudConfigError, match="choice"):
        parse_recipe_arguments(FINETUNE, ["--train", "a", "--label_columns", "g", "--problem", "ranking"])


@pytest.mark.parametrize(("recipe", "text", "error"), [
    ("finetune", "data: {train: a, label_columns: [g]}\nmodell: {}\n", "unknown key modell (did you mean 'model'?)"),
    ("thermo", "head: dos\nmember: 2\n", "unknown key member (did you mean 'members'?)"),
])
def test_main_turns_a_config_error_into_one_line_and_status_2(tmp_path: Path, capsys, recipe: str, text: str,
                                                              error: str) -> None:
    config = write_yaml(tmp_path, text)
    with pytest.raises(SystemExit) as exit_info:
        load_recipe(recipe).main([config])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message == f"python recipes/{recipe}.py: error: {config}: {error}"


# ---------------------------------------------------------------- every option read is declared and listed


def option_reads(path: Path) -> list[tuple[str, str, int]]:
    """``(variable, attribute, line)`` of every ``data_args.X`` / ``model_args.X`` / ``training_args.X`` /
    ``self.args.X`` read."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    reads = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in OPTION_VARIABLES:
            reads.append((node.value.id, node.attr, node.lineno))
        elif ast.unparse(node.value) == "self.args":  # the Trainer's own options
            reads.append(("training_args", node.attr, node.lineno))
    return reads


def string_key_lookups(path: Path) -> list[int]:
    """Lines of ``config.get("...")`` / ``config["..."]`` lookups, the pattern the dataclasses replace."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        target = node.func.value if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                                     and node.func.attr == "get") else node.value if isinstance(node, ast.Subscript) \
            else None
        if isinstance(target, ast.Name) and "config" in target.id:
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_option_a_recipe_reads_is_declared_and_in_its_help(recipe: str) -> None:
    module = load_recipe(recipe)
    parser = RecipeArgumentParser(module.ARGUMENTS, prog=module.PROGRAM)
    help_text = parser.format_help()
    sources = [REPO_ROOT / "recipes" / f"{recipe}.py", *(PACKAGE / name for name in RECIPE_MODULES.get(recipe, ()))]
    reads = [(variable, attribute, f"{path.name}:{line}") for path in sources
             for variable, attribute, line in option_reads(path)]
    assert reads, "the recipe reads its options as data_args / model_args / training_args attributes"
    for variable, attribute, line in reads:
        option_class = module.ARGUMENTS[OPTION_VARIABLES[variable]]
        assert hasattr(option_class, attribute) or attribute in {f.name for f in dataclasses.fields(option_class)}, \
            f"{line} reads {variable}.{attribute}, not an option of {option_class.__name__}"
        if attribute in {f.name for f in dataclasses.fields(option_class)}:
            assert f"--{attribute} " in help_text, f"--help of {recipe} does not list --{attribute}"
    for field in (f for cls in module.ARGUMENTS for f in dataclasses.fields(cls) if f.init):
        assert f"--{field.name}" in help_text
    assert not any(string_key_lookups(path) for path in sources)


def test_the_package_reads_only_declared_options() -> None:
    base_classes = (FinetuneDataArguments.__mro__[-2], ModelArguments, CloudTrainingArguments)  # DataArguments first
    recipe_of = {name: recipe for recipe, names in RECIPE_MODULES.items() for name in names}
    for path in sorted(PACKAGE.glob("*.py")):
        classes = load_recipe(recipe_of[path.name]).ARGUMENTS if path.name in recipe_of else base_classes
        for variable, attribute, line in option_reads(path):
            option_class = classes[OPTION_VARIABLES[variable]]
            if path.name == "data.py" and variable == "data_args" and attribute in ("train", "validation", "test"):
                option_class = FinetuneDataArguments.__mro__[1]  # recipe_splits takes SplitDataArguments
            assert hasattr(option_class, attribute) or attribute in {f.name for f in dataclasses.fields(option_class)}, \
                f"{path.name}:{line} reads {variable}.{attribute}, not an option of {option_class.__name__}"
        assert not string_key_lookups(path), path.name


# ---------------------------------------------------------------- optimizer from --optim, reproducible masks


def tiny_regressor() -> CloudForRegression:
    return CloudForRegression(CloudConfig(vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=1,
                                          intermediate_size=32))


@pytest.mark.parametrize("decay", [0.5, None])
def test_optim_adafactor_is_used_with_and_without_layerwise_groups(tmp_path: Path, decay: float | None) -> None:
    arguments = ["--train", "a", "--label_columns", "g", "--output_dir", str(tmp_path), "--optim", "adafactor",
                 "--learning_rate", "0.01", "--use_cpu", "true", "--eval_strategy", "no", "--save_strategy", "no",
                 "--load_best_model_at_end", "false"]
    if decay is not None:
        arguments += ["--layer_lr_decay", str(decay)]
    _, _, training = parse_recipe_arguments(FINETUNE, arguments)
    model = tiny_regressor()
    trainer = CloudTrainer(model=model, args=training)
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, Adafactor)
    rates = sorted({group["lr"] for group in optimizer.param_groups})
    assert rates == ([0.01 * 0.5**k for k in range(4, -1, -1)] if decay else [0.01])
    named = dict(model.named_parameters())
    decayed = {id(p) for group in optimizer.param_groups if group["weight_decay"] > 0 for p in group["params"]}
    assert not any(id(named[n]) in decayed for n in named if n.endswith("bias") or "LayerNorm" in n) or \
        training.weight_decay == 0


def test_mlm_masks_depend_on_the_batch_only_not_on_what_came_before() -> None:
    """The first batch a process collates is masked as the same batch collated later (a resumed run's
    first batch against the uninterrupted run's fourth): the cause of the inexact resume."""
    from cloud_hf.scope import ScopeEncoder, canonical_vocabulary
    from cloud_hf.tokenization_cloud import CloudTokenizerFast

    tokenizer = CloudTokenizerFast.from_scope_vocabulary(canonical_vocabulary(), ScopeEncoder().to_dict())
    ids = tokenizer(["cF m-3m SG225 Na 4a Cl 4b", "cP m-3m SG221 Cs 1a Cl 1b", "hP 6/mmm SG191 Mg 1a B 2d"] * 4)
    rows = [{"input_ids": row} for row in ids["input_ids"]]
    first, later = rows[:6], rows[6:]
    fresh = ReproducibleMLMCollator(tokenizer, mlm_probability=0.5, mask_seed=3)
    resumed = ReproducibleMLMCollator(tokenizer, mlm_probability=0.5, mask_seed=3)
    resumed_batch = resumed(later)
    fresh(first)
    fresh_batch = fresh(later)
    assert torch.equal(resumed_batch["labels"], fresh_batch["labels"])
    assert torch.equal(resumed_batch["input_ids"], fresh_batch["input_ids"])
    other_seed = ReproducibleMLMCollator(tokenizer, mlm_probability=0.5, mask_seed=4)(later)
    assert not torch.equal(other_seed["labels"], fresh_batch["labels"])
