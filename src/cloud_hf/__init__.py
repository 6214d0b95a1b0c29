"""cloud-hf: the CLOUD crystal foundation model as a Hugging Face ``transformers`` extension.

Importing the package registers the ``cloud`` model type with the ``Auto*`` classes and the
``crystal-property-prediction`` pipeline task.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.conversion import convert_reference_checkpoint
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
from cloud_hf.pipeline_cloud import (
    BUNDLED_MODEL_DIR,
    AutoModelForCrystalPropertyPrediction,
    CrystalPropertyPredictionPipeline,
)
from cloud_hf.scope import ScopeEncoder, ScopeError
from cloud_hf.tokenization_cloud import CloudTokenizerFast

__version__ = "0.1.0"

AutoConfig.register(CloudConfig.model_type, CloudConfig, exist_ok=True)
AutoTokenizer.register(CloudConfig, fast_tokenizer_class=CloudTokenizerFast, exist_ok=True)
AutoModel.register(CloudConfig, CloudModel, exist_ok=True)
AutoModelForMaskedLM.register(CloudConfig, CloudForMaskedLM, exist_ok=True)
AutoModelForSequenceClassification.register(CloudConfig, CloudForClassification, exist_ok=True)

__all__ = [
    "BUNDLED_MODEL_DIR",
    "AutoModelForCrystalPropertyPrediction",
    "CloudConfig",
    "CloudDebyeModel",
    "CloudDebyeOutput",
    "CloudForClassification",
    "CloudForMaskedLM",
    "CloudForRegression",
    "CloudModel",
    "CloudPreTrainedModel",
    "CloudPredictionHead",
    "CloudRegressionOutput",
    "CloudTokenizerFast",
    "CrystalPropertyPredictionPipeline",
    "ScopeEncoder",
    "ScopeError",
    "__version__",
    "convert_reference_checkpoint",
]
