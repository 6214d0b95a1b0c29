"""Model factory of the recipes: the tokenizer, and a model loaded from a checkpoint or built from the options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedModel, set_seed

from cloud_hf.errors import CloudConfigError
from cloud_hf.training.arguments import ModelArguments
from cloud_hf.training.data import TaskSpec

REFERENCE_TOKENIZER_PREFIX = "reference:"


def load_tokenizer(spec: str | os.PathLike) -> Any:
    """A ``CloudTokenizerFast`` from a folder, or ``"reference:FOLDER"`` for the reference tokenizer files."""
    from cloud_hf.tokenization_cloud import CloudTokenizerFast

    spec = str(spec)
    if spec.startswith(REFERENCE_TOKENIZER_PREFIX):
        return CloudTokenizerFast.from_reference_files(spec[len(REFERENCE_TOKENIZER_PREFIX):])
    return CloudTokenizerFast.from_pretrained(spec)


def recipe_tokenizer(model_args: ModelArguments) -> Any:
    """The tokenizer saved with the checkpoint when there is one (so strings match the checkpoint's
    vocabulary), else the ``tokenizer`` option (a folder, or ``reference:FOLDER``)."""
    checkpoint = model_args.checkpoint
    if checkpoint and (Path(checkpoint) / "tokenizer_config.json").is_file():
        return load_tokenizer(checkpoint)
    if not model_args.tokenizer:
        raise CloudConfigError("the option tokenizer (model.tokenizer) is required unless the checkpoint "
                               "was saved with its tokenizer")
    return load_tokenizer(model_args.tokenizer)


def max_positions(model_args: ModelArguments) -> int:
    """``max_position_embeddings`` of the model the recipe will train (checkpoint or new config)."""
    from cloud_hf.configuration_cloud import CloudConfig

    if model_args.checkpoint:
        return int(CloudConfig.from_pretrained(model_args.checkpoint).max_position_embeddings)
    return int((model_args.config_overrides or {}).get("max_position_embeddings",
                                                       CloudConfig().max_position_embeddings))


def load_or_init_model(model_class: type[PreTrainedModel], model_args: ModelArguments, tokenizer: Any, seed: int,
                       **config_updates: Any) -> PreTrainedModel:
    """The checkpoint loaded with ``from_pretrained`` (new heads initialised), or a new model.

    A new model takes its encoder sizes from ``config_overrides`` and its vocabulary and SCOPE settings from
    the tokenizer. ``config_updates`` (e.g. target names and statistics) are set on the config either way.
    ``seed`` makes new weights (encoder or head) the same in every run.
    """
    from cloud_hf.configuration_cloud import CloudConfig

    set_seed(seed)
    if model_args.checkpoint:
        return model_class.from_pretrained(model_args.checkpoint, **config_updates)
    sizes = dict(model_args.config_overrides or {})
    try:
        cloud_config = CloudConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                   scope=getattr(tokenizer, "scope_config", None), **{**sizes, **config_updates})
    except (TypeError, ValueError) as error:
        raise CloudConfigError(f"config_overrides {sizes}: {error}") from None
    return model_class(cloud_config)


def head_descriptors(model_args: ModelArguments) -> tuple[bool, list[str]]:
    """``(composition_features, structure_features)`` the supervised head of ``model_args`` reads: the options where
    set (``SupervisedModelArguments``), else the checkpoint's, else none. The recipes encode every row with these
    structure features (``recipe_splits(features=...)``) before the model is built."""
    from cloud_hf.configuration_cloud import CloudConfig

    composition = getattr(model_args, "composition_features", None)
    features = getattr(model_args, "structure_features", None)
    if (composition is None or features is None) and model_args.checkpoint:
        saved = CloudConfig.from_pretrained(model_args.checkpoint)
        composition = saved.composition_features if composition is None else composition
        features = list(saved.structure_features or []) if features is None else features
    return bool(composition), list(features or [])


def init_supervised_model(model_args: ModelArguments, tokenizer: Any, task: TaskSpec, train_rows: datasets.Dataset,
                          seed: int, num_classes: int = 2) -> PreTrainedModel:
    """``CloudForRegression`` with target statistics from ``train_rows`` (physical units, saved in the config),
    or ``CloudForClassification`` with ``num_classes`` classes, per ``task.problem``.

    The head reads the descriptors of :func:`head_descriptors`: its composition tables are filled from
    ``tokenizer``, and each structure feature is standardised by its mean and std over ``train_rows``' column of
    that feature (saved in the config, ``structure_feature_statistics``), unless the checkpoint already has them.
    """
    from cloud_hf.data import label_statistics
    from cloud_hf.features import get_features
    from cloud_hf.modeling_cloud import CloudForClassification, CloudForRegression

    composition, features = head_descriptors(model_args)
    descriptors = {"composition_features": composition, "structure_features": features or None}
    element_embeddings = getattr(model_args, "element_property_embeddings", None)  # SupervisedModelArguments'
    if element_embeddings is not None:
        descriptors["element_property_embeddings"] = element_embeddings
    if task.problem == "classification":
        model = load_or_init_model(CloudForClassification, model_args, tokenizer, seed, num_labels=num_classes,
                                   **descriptors)
    else:
        mean, std = label_statistics(train_rows, task.label_columns)
        units = [task.units] * len(task.label_columns) if task.units else None
        model = load_or_init_model(CloudForRegression, model_args, tokenizer, seed,
                                   target_names=list(task.label_columns), target_mean=mean, target_std=std,
                                   target_units=units, **descriptors)
    if not model.cloud.embeddings.has_element_tables:
        model.cloud.embeddings.set_element_tables(tokenizer)
    if model.descriptors is not None:
        if composition and not bool(model.descriptors.is_element.any()):
            model.descriptors.set_composition_tables(tokenizer)
        for feature in get_features(features):  # standardised as the training rows, unless the checkpoint says
            if model.config.feature_statistics(feature.name) is None:
                model.config.set_feature_statistics(feature.name, feature.statistics(train_rows[feature.input_name]))
    return model


__all__ = ["head_descriptors", "init_supervised_model", "load_or_init_model", "load_tokenizer", "max_positions", "recipe_tokenizer"]
