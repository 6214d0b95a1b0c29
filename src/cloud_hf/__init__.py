"""cloud-hf: the CLOUD crystal foundation model as a Hugging Face ``transformers`` extension.

Importing the package registers the ``cloud`` model type with the ``Auto*`` classes (config, tokenizer, processor,
models) and the ``crystal-property-prediction`` pipeline task. It imports only torch, transformers and the model
code: the SCOPE encoder, pymatgen, moyopy, spglib, datasets and pandas load on first use (``cloud_hf.ScopeEncoder``,
``cloud_hf.scope``, ``cloud_hf.data``, ...), so ``import cloud_hf`` costs about what ``import torch, transformers``
does (``benchmarks/bench_startup.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoProcessor,
    AutoTokenizer,
)

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudConfigError, CloudDataError, CloudError, CrystalInputError, ScopeError
from cloud_hf.lazy_imports import lazy_attributes
from cloud_hf.modeling_cloud import (
    CloudForClassification,
    CloudForMaskedLM,
    CloudForRegression,
    CloudModel,
    CloudPredictionHead,
    CloudPreTrainedModel,
    CloudRegressionOutput,
)
from cloud_hf.modeling_cloud_debye import CloudDebyeModel, CloudDebyeOutput
from cloud_hf.pipeline_cloud import (  # importing the module registers the pipeline task
    BUNDLED_MODEL_DIR,
    AutoModelForCrystalPropertyPrediction,
    CrystalPropertyPredictionPipeline,
)
from cloud_hf.processing_cloud import CloudProcessor
from cloud_hf.tokenization_cloud import CloudTokenizerFast

if TYPE_CHECKING:
    from cloud_hf.conversion import convert_reference_checkpoint
    from cloud_hf.scope import ScopeEncoder

__version__ = "0.1.0"

AutoConfig.register(CloudConfig.model_type, CloudConfig, exist_ok=True)
AutoTokenizer.register(CloudConfig, fast_tokenizer_class=CloudTokenizerFast, exist_ok=True)
AutoProcessor.register(CloudConfig, CloudProcessor, exist_ok=True)
AutoModel.register(CloudConfig, CloudModel, exist_ok=True)
AutoModelForMaskedLM.register(CloudConfig, CloudForMaskedLM, exist_ok=True)
AutoModelForSequenceClassification.register(CloudConfig, CloudForClassification, exist_ok=True)

_LAZY_ATTRIBUTES = {
    "ScopeEncoder": "cloud_hf.scope.encoder",
    "convert_reference_checkpoint": "cloud_hf.conversion",
}
"""Public names whose modules load on first access (PEP 562), so that ``import cloud_hf`` stays light."""


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY_ATTRIBUTES)


__all__ = [
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
    "CloudForRegression",
    "CloudModel",
    "CloudPreTrainedModel",
    "CloudPredictionHead",
    "CloudProcessor",
    "CloudRegressionOutput",
    "CloudTokenizerFast",
    "CrystalInputError",
    "CrystalPropertyPredictionPipeline",
    "ScopeEncoder",
    "ScopeError",
    "__version__",
    "convert_reference_checkpoint",
]
