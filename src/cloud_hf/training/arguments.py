"""The recipes' typed options: one dataclass field (default, type, help line) per option.

A recipe reads three dataclasses with :class:`~cloud_hf.training.parser.RecipeArgumentParser`: its data
options (a subclass of :class:`DataArguments`), its model options (a subclass of :class:`ModelArguments`)
and its Trainer options (:class:`CloudTrainingArguments`, or :class:`SupervisedTrainingArguments` for
recipes that evaluate every epoch and keep the best checkpoint). A new recipe subclasses these and adds
its own fields; every field is then a YAML key and a ``--flag`` listed by ``--help``.
"""

# ruff: noqa: RUF009  (option() returns a dataclasses.Field, built by transformers.HfArg)

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import yaml
from transformers import TrainingArguments
from transformers.hf_argparser import HfArg
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from cloud_hf.errors import CloudConfigError


def option(default: Any, help: str) -> Any:
    """A dataclass field with its one default and its ``--help`` line (``transformers.HfArg``; a list default
    becomes a ``default_factory``)."""
    if isinstance(default, list):
        return HfArg(default_factory=lambda: list(default), help=help)
    return HfArg(default=default, help=help)


@dataclass
class DataArguments:
    """Options every recipe has for reading and preparing its tables (section ``data`` of the YAML)."""

    _argument_group_name = "data options (YAML section data)"
    required_options: ClassVar[tuple[str, ...]] = ()
    """Options a subclass cannot run without (checked when the options are read)."""

    structure_column: str | None = option(None, "Column holding the structures (CIF, POSCAR, pymatgen dict); "
                                                "None: detected by cloud_hf.data.read_table.")
    scope_column: str | None = option(None, "Column holding ready SCOPE strings instead of structures.")
    id_column: str | None = option(None, "Column used as row id; None: detected, else the row number.")
    max_rows: int | None = option(None, "Read only the first N rows of each file (smoke runs); None: all.")
    validation_fraction: float = option(0.1, "Fraction of the training rows carved out for validation when "
                                             "no validation file is given.")
    num_proc: int | None = option(None, "Processes for SCOPE encoding and tokenization (datasets.map).")
    cache_dir: str | None = option(None, "Folder of the datasets cache shared by processes; None: no cache.")

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise CloudConfigError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        for name in self.required_options:
            if getattr(self, name) in (None, "", []):
                raise CloudConfigError(f"the option {name} (YAML data.{name}) is required")


@dataclass
class SplitDataArguments(DataArguments):
    """Data options of a recipe trained on train / validation / test files."""

    train: str | None = option(None, "Training table: a file (CSV, JSON, JSON Lines) or a folder of CIF/POSCAR.")
    validation: str | None = option(None, "Validation table; None: carved out of the training rows.")
    test: str | None = option(None, "Test table; None: no test metrics.")
    required_options: ClassVar[tuple[str, ...]] = ("train",)


@dataclass
class ModelArguments:
    """Options every recipe has for the model and its tokenizer (section ``model`` of the YAML)."""

    _argument_group_name = "model options (YAML section model)"

    checkpoint: str | None = option(None, "cloud-hf checkpoint folder to start from; None: a new model.")
    tokenizer: str | None = option(None, "Tokenizer folder, or reference:FOLDER for the reference tokenizer files; "
                                         "the checkpoint's own tokenizer is used when it has one.")
    config_overrides: dict | str | None = option(
        None, "CloudConfig values of a new model (sizes, dropout), a YAML mapping such as "
              "'{hidden_size: 128, num_hidden_layers: 4}'.")

    def __post_init__(self) -> None:
        if isinstance(self.config_overrides, str):
            self.config_overrides = yaml.safe_load(self.config_overrides)
        if self.config_overrides is not None and not isinstance(self.config_overrides, dict):
            raise CloudConfigError(f"config_overrides must be a mapping, got {self.config_overrides!r}")


@dataclass
class CloudTrainingArguments(TrainingArguments):
    """``transformers.TrainingArguments`` (section ``training``) plus the recipes' optimizer and stopping options."""

    _argument_group_name = "training options (YAML section training: transformers.TrainingArguments and more)"

    layer_lr_decay: float | None = option(None, "Layer-wise learning-rate decay (e.g. 0.9): block i trains at "
                                                "learning_rate * decay ** (depth below the head); None: off.")
    early_stopping_patience: int | None = option(None, "Stop after this many evaluations without a better "
                                                       "validation loss; None: never.")


@dataclass
class SupervisedTrainingArguments(CloudTrainingArguments):
    """Trainer options of the supervised recipes: evaluate and save every epoch, keep the best model."""

    eval_strategy: IntervalStrategy | str = option("epoch", "When to evaluate: 'no', 'steps' or 'epoch'.")
    save_strategy: SaveStrategy | str = option("epoch", "When to save: 'no', 'steps', 'epoch' or 'best'.")
    logging_strategy: IntervalStrategy | str = option("epoch", "When to log: 'no', 'steps' or 'epoch'.")
    load_best_model_at_end: bool = option(True, "Load the checkpoint of the best validation metric at the end.")
    metric_for_best_model: str | None = option("loss", "Validation metric that picks the best checkpoint.")
    greater_is_better: bool | None = option(False, "Whether a greater metric_for_best_model is better.")
    save_total_limit: int | None = option(2, "Checkpoints kept in output_dir (the best one always).")


# ------------------------------------------------------------------------------------------ task options


@dataclass
class CorpusDataArguments(DataArguments):
    """Data options of masked-LM pre-training on a corpus of crystals or SCOPE strings."""

    train: list[str] = option([], "Files, folders or glob patterns of the corpus (any format read_table reads).")
    deduplicate: bool = option(True, "Drop duplicate structures and SCOPE strings before carving validation.")
    validation_fraction: float = option(0.02, "Fraction of the distinct strings held out for validation.")
    required_options: ClassVar[tuple[str, ...]] = ("train",)

    def __post_init__(self) -> None:
        if isinstance(self.train, str):
            self.train = [self.train]
        super().__post_init__()


@dataclass
class SupervisedModelArguments(ModelArguments):
    """Model options of the regression and classification recipes: what the head reads beside [CLS]."""

    composition_features: bool | None = option(
        None, "The head also reads composition descriptors pooled from the SCOPE tokens (cloud_hf.composition); "
              "None: as the checkpoint (off for a new model).")
    element_property_embeddings: bool | None = option(
        None, "Element tokens' embeddings are joined by a learned map of their element properties (pymatgen); None: "
              "as the checkpoint (off for a new model).")
    structure_features: list[str] | None = option(
        None, "Registered structure features the head also reads (cloud_hf.features, e.g. cell_descriptors, "
              "mass_descriptors), standardised on the training rows; None: as the checkpoint (none for a new model).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.structure_features, str):
            self.structure_features = [self.structure_features]


@dataclass
class PretrainModelArguments(ModelArguments):
    """Model options of masked-LM pre-training."""

    mlm_probability: float = option(0.15, "Fraction of tokens masked in each string.")


@dataclass
class MultiTaskDataArguments(CorpusDataArguments):
    """Data options of multi-task pre-training: the masked-LM corpus (``train``) and the labelled property tasks."""

    tasks: dict | str | None = option(
        None, "Property tasks, a YAML mapping {name: {sources: {table path: column}, units: str, log10: bool}}; every "
              "table is also masked-LM corpus.")
    exclude: list[str] = option([], "Tables (paths or glob patterns) whose crystals are removed from every task and "
                                    "from the corpus: each task's own test split, benchmark crystals.")
    balance_exponent: float = option(0.5, "Task-balanced sampling: a task with n labels is drawn (n_max / n) ** "
                                          "exponent times as often as its size gives (0: plain shuffling; 1: equal).")
    required_options: ClassVar[tuple[str, ...]] = ("tasks",)

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = yaml.safe_load(self.tasks)
        if isinstance(self.exclude, str):
            self.exclude = [self.exclude]
        super().__post_init__()
        if self.balance_exponent < 0:
            raise CloudConfigError(f"balance_exponent must be >= 0, got {self.balance_exponent}")


@dataclass
class MultiTaskModelArguments(PretrainModelArguments):
    """Model options of multi-task pre-training."""

    multitask_loss_weight: float = option(1.0, "Weight of the property loss beside the masked-LM loss.")
    element_property_embeddings: bool | None = option(
        None, "Element tokens' embeddings are joined by a learned map of their element properties (pymatgen); None: "
              "as the checkpoint (off for a new model).")


@dataclass
class FinetuneDataArguments(SplitDataArguments):
    """Data options of fine-tuning on table columns."""

    label_columns: list[str] = option([], "Target columns (physical units; NaN = missing label).")
    units: str = option("", "Units of the targets, for reports and the saved config (e.g. GPa).")
    problem: Literal["regression", "classification"] = option("regression", "Regression or classification.")
    num_classes: int = option(2, "Number of classes (classification only).")
    required_options: ClassVar[tuple[str, ...]] = ("train", "label_columns")


@dataclass
class DebyeCvDataArguments(SplitDataArguments):
    """Data options of CLOUD-DEBYE trained on heat capacities C_v(300 K)."""

    label_column: str = option("cv", "Column of C_v at 300 K in J/(mol-cell·K).")
    n_atoms_column: str = option("n_atoms", "Column of the atoms per cell N.")


@dataclass
class DebyeCvModelArguments(ModelArguments):
    """Model options of the C_v(300 K) recipe."""

    head: Literal["debye", "regression"] = option("debye", "debye: CloudDebyeModel (θ_D → Debye C_v); "
                                                           "regression: plain CloudForRegression baseline.")
    debye_theta_scale: str = option("auto", "θ_D scale of the Debye head in K, or auto: the median θ_D implied "
                                            "by the training C_v.")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.debye_theta_scale = str(self.debye_theta_scale)
        if self.debye_theta_scale != "auto" and self.theta_scale_kelvin is None:
            raise CloudConfigError(f"debye_theta_scale must be auto or a positive number of K, "
                                   f"got {self.debye_theta_scale!r}")

    @property
    def theta_scale_kelvin(self) -> float | None:
        """The given θ_D scale in K, or None for auto (or an unusable value)."""
        try:
            value = float(self.debye_theta_scale)
        except ValueError:
            return None
        return value if value > 0 else None


@dataclass
class DebyeThetaDataArguments(SplitDataArguments):
    """Data options of CLOUD-DEBYE trained on Debye temperatures."""

    label_column: str = option("debye_temperature", "Column of θ_D in K.")


@dataclass
class DebyeThetaModelArguments(ModelArguments):
    """Model options of the θ_D recipe."""

    debye_theta_scale: float = option(300.0, "θ_D scale of the Debye head in K (about the median θ_D).")


@dataclass
class MatbenchDataArguments(DataArguments):
    """Data options of the MatBench v0.1 protocol."""

    task: str | None = option(None, "MatBench task name, e.g. matbench_jdft2d.")
    data_file: str | None = option(None, "The task's matminer json.gz, or a CSV of its structures in MatBench order.")
    max_folds: int | None = option(None, "Train and test only the first N of the 5 official folds; None: all.")
    required_options: ClassVar[tuple[str, ...]] = ("task", "data_file")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_rows is not None:
            raise CloudConfigError("max_rows does not apply to MatBench (its folds cover every row); use max_folds")
        if self.max_folds is not None and self.max_folds < 1:
            raise CloudConfigError(f"max_folds must be >= 1, got {self.max_folds}")


__all__ = [
    "CloudTrainingArguments",
    "CorpusDataArguments",
    "DataArguments",
    "DebyeCvDataArguments",
    "DebyeCvModelArguments",
    "DebyeThetaDataArguments",
    "DebyeThetaModelArguments",
    "FinetuneDataArguments",
    "MatbenchDataArguments",
    "ModelArguments",
    "MultiTaskDataArguments",
    "MultiTaskModelArguments",
    "PretrainModelArguments",
    "SplitDataArguments",
    "SupervisedTrainingArguments",
    "option",
]
