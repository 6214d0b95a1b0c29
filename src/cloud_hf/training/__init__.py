"""Shared machinery of the training recipes (``recipes/*.py``), one job per module.

* :mod:`~cloud_hf.training.arguments`: the typed options: the base data, model and Trainer dataclasses
  (exported here) and each recipe's own subclasses (imported from the module);
* :mod:`~cloud_hf.training.parser`: YAML file + command line → those dataclasses (``HfArgumentParser``);
* :mod:`~cloud_hf.training.data`: tasks (which columns feed the model) and tokenized splits;
* :mod:`~cloud_hf.training.models`: tokenizer and model factory;
* :mod:`~cloud_hf.training.trainer`: ``CloudTrainer`` (optimizer from ``optim``, layer-wise lr decay), collators;
* :mod:`~cloud_hf.training.metrics`: scikit-learn scores;
* :mod:`~cloud_hf.training.reporting`: result files and parity plots;
* :mod:`~cloud_hf.training.supervised`: the fine-tune / keep-best / test loop.
* :mod:`~cloud_hf.training.thermo`, :mod:`~cloud_hf.training.thermo_data`,
  :mod:`~cloud_hf.training.thermo_evaluation`: the multi-fidelity thermodynamics recipe (options and run; phonon
  examples and collator; predictions, metrics and ensemble-std calibration).
"""

from cloud_hf.training.arguments import (
    CloudTrainingArguments,
    DataArguments,
    ModelArguments,
    SplitDataArguments,
    SupervisedTrainingArguments,
)
from cloud_hf.training.data import (
    PreparedSplit,
    TaskSpec,
    carve_validation,
    limit_rows,
    model_inputs,
    prepare_table,
    read_split,
    recipe_splits,
    scope_encoder_for,
)
from cloud_hf.training.metrics import classification_metrics, metrics_function, regression_metrics
from cloud_hf.training.models import (
    head_descriptors,
    init_supervised_model,
    load_or_init_model,
    load_tokenizer,
    max_positions,
    recipe_tokenizer,
)
from cloud_hf.training.parser import (
    RecipeArgumentParser,
    failure_status,
    parse_recipe_arguments,
    recipe_main,
    resume_checkpoint,
)
from cloud_hf.training.reporting import write_json, write_test_results
from cloud_hf.training.supervised import EvaluationResult, plot_debye_curves, train_and_evaluate
from cloud_hf.training.trainer import (
    CloudTrainer,
    EpochWeightedSampler,
    ReproducibleMLMCollator,
    build_trainer,
    layer_depth,
    layerwise_parameter_groups,
    start_run,
)

__all__ = [
    "CloudTrainer",
    "CloudTrainingArguments",
    "DataArguments",
    "EpochWeightedSampler",
    "EvaluationResult",
    "ModelArguments",
    "PreparedSplit",
    "RecipeArgumentParser",
    "ReproducibleMLMCollator",
    "SplitDataArguments",
    "SupervisedTrainingArguments",
    "TaskSpec",
    "build_trainer",
    "carve_validation",
    "classification_metrics",
    "failure_status",
    "head_descriptors",
    "init_supervised_model",
    "layer_depth",
    "layerwise_parameter_groups",
    "limit_rows",
    "load_or_init_model",
    "load_tokenizer",
    "max_positions",
    "metrics_function",
    "model_inputs",
    "parse_recipe_arguments",
    "plot_debye_curves",
    "prepare_table",
    "read_split",
    "recipe_main",
    "recipe_splits",
    "recipe_tokenizer",
    "regression_metrics",
    "resume_checkpoint",
    "scope_encoder_for",
    "start_run",
    "train_and_evaluate",
    "write_json",
    "write_test_results",
]
