"""cloud-hf: the CLOUD crystal foundation model as a Hugging Face ``transformers`` extension.

Importing the package registers the ``cloud`` model type with the ``Auto*`` classes and the
``crystal-property-prediction`` pipeline task.
"""

from cloud_hf.scope import ScopeEncoder, ScopeError

__version__ = "0.1.0"

__all__ = [
    "ScopeEncoder",
    "ScopeError",
    "__version__",
]
