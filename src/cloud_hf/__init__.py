"""cloud-hf: the CLOUD crystal foundation model as a Hugging Face ``transformers`` extension.

Importing the package registers the ``cloud`` model type with the ``Auto*`` classes (config, tokenizer, processor,
models) and the ``crystal-property-prediction`` pipeline task. That takes torch and transformers, nothing more: the
public names below load their modules on first access, and the SCOPE encoder, pymatgen, moyopy, spglib, datasets,
pandas and matplotlib load only where they are used (``benchmarks/bench_startup.py`` measures it).

The ``cloud-hf`` command line is the one exception: run as that console script, the package defers the
registration (and with it torch) to the sub-commands that load models, which import :mod:`cloud_hf.pipeline_cloud`;
so ``cloud-hf --help`` and ``cloud-hf scope`` start without torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cloud_hf.lazy_imports import lazy_attributes

if TYPE_CHECKING:
    from cloud_hf.configuration_cloud import CloudConfig
    from cloud_hf.conversion import convert_reference_checkpoint
    from cloud_hf.errors import CloudConfigError, CloudDataError, CloudError, CrystalInputError, ScopeError
    from cloud_hf.features import register_feature
    from cloud_hf.modeling_cloud import (
        CloudForClassification,
        CloudForMaskedLM,
        CloudForMultiTaskPretraining,
        CloudForRegression,
        CloudModel,
        CloudPredictionHead,
        CloudPreTrainedModel,
        CloudRegressionOutput,
    )
    from cloud_hf.modeling_cloud_debye import CloudDebyeModel, CloudDebyeOutput
    from cloud_hf.pipeline_cloud import (
        BUNDLED_BACKBONE_DIR,
        BUNDLED_MODEL_DIR,
        AutoModelForCrystalPropertyPrediction,
        CrystalPropertyPredictionPipeline,
    )
    from cloud_hf.processing_cloud import CloudProcessor
    from cloud_hf.property_heads import register_property_head
    from cloud_hf.scope import ScopeEncoder
    from cloud_hf.structures import CrystalReader, register_reader
    from cloud_hf.tokenization_cloud import CloudTokenizerFast

__version__ = "0.1.0"

_LAZY_ATTRIBUTES = {
    "BUNDLED_BACKBONE_DIR": "cloud_hf.pipeline_cloud",
    "BUNDLED_MODEL_DIR": "cloud_hf.pipeline_cloud",
    "AutoModelForCrystalPropertyPrediction": "cloud_hf.pipeline_cloud",
    "CrystalPropertyPredictionPipeline": "cloud_hf.pipeline_cloud",
    "CloudConfig": "cloud_hf.configuration_cloud",
    "CloudConfigError": "cloud_hf.errors",
    "CloudDataError": "cloud_hf.errors",
    "CloudError": "cloud_hf.errors",
    "CrystalInputError": "cloud_hf.errors",
    "ScopeError": "cloud_hf.errors",
    "CloudForClassification": "cloud_hf.modeling_cloud",
    "CloudForMaskedLM": "cloud_hf.modeling_cloud",
    "CloudForMultiTaskPretraining": "cloud_hf.modeling_cloud",
    "CloudForRegression": "cloud_hf.modeling_cloud",
    "CloudModel": "cloud_hf.modeling_cloud",
    "CloudPredictionHead": "cloud_hf.modeling_cloud",
    "CloudPreTrainedModel": "cloud_hf.modeling_cloud",
    "CloudRegressionOutput": "cloud_hf.modeling_cloud",
    "CloudDebyeModel": "cloud_hf.modeling_cloud_debye",
    "CloudDebyeOutput": "cloud_hf.modeling_cloud_debye",
    "CloudProcessor": "cloud_hf.processing_cloud",
    "CloudThermoModel": "cloud_hf.modeling_cloud_thermo",
    "CloudThermoOutput": "cloud_hf.modeling_cloud_thermo",
    "thermo_config": "cloud_hf.modeling_cloud_thermo",
    "CloudTokenizerFast": "cloud_hf.tokenization_cloud",
    "ScopeEncoder": "cloud_hf.scope.encoder",
    "convert_reference_checkpoint": "cloud_hf.conversion",
    "register_feature": "cloud_hf.features",
    "register_property_head": "cloud_hf.property_heads",
    "register_reader": "cloud_hf.structures",
    "CrystalReader": "cloud_hf.structures",
}
"""Public names → the module defining them, imported on first access (PEP 562)."""

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY_ATTRIBUTES)

if Path(sys.argv[0]).stem != "cloud-hf":
    import cloud_hf.pipeline_cloud  # noqa: F401  (registers the auto classes and the pipeline task)

__all__ = [
    "BUNDLED_BACKBONE_DIR",
    "BUNDLED_MODEL_DIR",
    "AutoModelForCrystalPropertyPrediction",
    "CloudConfig",
    "CloudConfigError",
    "CloudDataError",
    "CloudDebyeModel",
    "CloudDebyeOutput",
    "CloudError",
    "CloudForClassification",
    "CloudForMaskedLM",
    "CloudForMultiTaskPretraining",
    "CloudForRegression",
    "CloudModel",
    "CloudPreTrainedModel",
    "CloudPredictionHead",
    "CloudProcessor",
    "CloudRegressionOutput",
    "CloudThermoModel",
    "CloudThermoOutput",
    "CloudTokenizerFast",
    "CrystalInputError",
    "CrystalPropertyPredictionPipeline",
    "CrystalReader",
    "ScopeEncoder",
    "ScopeError",
    "__version__",
    "convert_reference_checkpoint",
    "register_feature",
    "register_property_head",
    "register_reader",
    "thermo_config",
]
