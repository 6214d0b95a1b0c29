"""Register the ``cloud`` model type with the ``transformers`` auto classes (config, tokenizer, processor, models).

Imported by ``import cloud_hf`` and by :mod:`cloud_hf.pipeline_cloud` (which also registers the pipeline task), so
whatever path loads a CLOUD checkpoint through ``Auto*`` or ``pipeline`` finds the classes registered.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoProcessor,
    AutoTokenizer,
)

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.modeling_cloud import CloudForClassification, CloudForMaskedLM, CloudModel
from cloud_hf.processing_cloud import CloudProcessor
from cloud_hf.tokenization_cloud import CloudTokenizerFast

AutoConfig.register(CloudConfig.model_type, CloudConfig, exist_ok=True)
AutoTokenizer.register(CloudConfig, fast_tokenizer_class=CloudTokenizerFast, exist_ok=True)
AutoProcessor.register(CloudConfig, CloudProcessor, exist_ok=True)
AutoModel.register(CloudConfig, CloudModel, exist_ok=True)
AutoModelForMaskedLM.register(CloudConfig, CloudForMaskedLM, exist_ok=True)
AutoModelForSequenceClassification.register(CloudConfig, CloudForClassification, exist_ok=True)
