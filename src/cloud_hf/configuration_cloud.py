"""CLOUD model configuration."""

from __future__ import annotations

import math
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

CELL_DESCRIPTORS_FEATURE = "cell_descriptors"
"""The registered name of the cell descriptors (:mod:`cloud_hf.cell_descriptors`), which a thermo head declares
with ``thermo_cell_features``."""


@strict
class CloudConfig(PreTrainedConfig):
    r"""
    Configuration of the CLOUD crystal transformer (a BERT-style encoder over SCOPE tokens) and its heads.

    The encoder fields carry BERT's names and meaning, so a reference ``BertConfig`` maps onto this one field by
    field (see [`cloud_hf.convert_reference_checkpoint`]). The defaults describe a small model over the canonical
    SCOPE tokenizer shipped in the repository's ``tokenizer/`` folder; the released reference checkpoint is
    12 layers × 768 hidden × 12 heads.

    Args:
        vocab_size (`int`): number of token ids; equal to the tokenizer's ``len(tokenizer)`` (585 for the canonical
            tokenizer in ``tokenizer/``, 564 for the converted reference one).
        hidden_size (`int`): width of the encoder (64 × ``num_attention_heads`` in the reference).
        num_hidden_layers (`int`): number of transformer blocks.
        num_attention_heads (`int`): attention heads per block; must divide ``hidden_size``.
        intermediate_size (`int`): width of the feed-forward layer (4 × ``hidden_size`` in the reference).
        hidden_act (`str`): feed-forward activation, a key of ``transformers.activations.ACT2FN``.
        hidden_dropout_prob (`float`): dropout on embeddings and on every residual branch.
        attention_probs_dropout_prob (`float`): dropout on attention probabilities.
        max_position_embeddings (`int`): longest token sequence, [CLS] and [SEP] included.
        layer_norm_eps (`float`): epsilon of every LayerNorm.
        initializer_range (`float`): standard deviation of the normal weight initialisation.
        pad_token_id (`int`): id of [PAD]; its embedding row starts at zero.
        tie_word_embeddings (`bool`): share the masked-LM decoder matrix with the word embeddings (as BERT).
        scope (`dict`, *optional*): the ``ScopeEncoder.to_dict()`` settings the model was trained with, so that new
            crystals are encoded the same way (mode ``"canonical"`` or ``"reference"``, version, backend, tolerances).
        head_num_layers (`int`): number k of hidden ``Linear(h, h) + SiLU`` layers in [`CloudPredictionHead`]
            (the reference fine-tuning head is Dropout → k × (Linear + SiLU) → Linear; default 1).
        head_dropout (`float`): dropout applied to the [CLS] state before the prediction head (reference 0.1).
        target_names (`list[str]`, *optional*): names of the regression targets, e.g. ``["band_gap"]``.
        target_mean (`list[float]`, *optional*): mean of each target in physical units; predictions are
            ``logits * target_std + target_mean``. Defaults to 0 per target.
        target_std (`list[float]`, *optional*): standard deviation of each target in physical units (> 0).
            Defaults to 1 per target.
        target_units (`list[str]`, *optional*): unit of each target, e.g. ``["eV"]``; informational.
        regression_loss (`"l1"` or `"mse"`): loss on standardized targets (the reference uses L1).
        debye_theta_scale (`float`): typical Debye temperature θ_D of the training data, in K, used by
            `CloudDebyeModel`: a fresh head predicts it, and it scales the θ_D loss (default 300 K, about the
            median AFLOW AGL Debye temperature).
        structure_features (`list[str]`, *optional*): registered structure features ([`cloud_hf.features`]) the
            head also reads, in order; the checkpoint's processor computes them. Resolved with the thermo head's
            ``thermo_cell_features`` by [`structure_feature_names`].
        structure_feature_statistics (`dict[str, list[list[float]]]`, *optional*): ``[means, stds]`` a head
            standardises a feature of ``structure_features`` by (see [`feature_statistics`]).
    """

    model_type = "cloud"

    vocab_size: int = 585
    hidden_size: int = 256
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 128
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 1
    tie_word_embeddings: bool = True
    scope: dict[str, Any] | None = None
    head_num_layers: int = 1
    head_dropout: float | int = 0.1
    target_names: list[str] | None = None
    target_mean: list[float | int] | None = None
    target_std: list[float | int] | None = None
    target_units: list[str] | None = None
    regression_loss: Literal["l1", "mse"] = "l1"
    debye_theta_scale: float | int = 300.0

    @property
    def num_targets(self) -> int:
        """Number of regression outputs: one per entry of ``target_names`` (1 when unset)."""
        for values in (self.target_names, self.target_mean, self.target_std):
            if values:
                return len(values)
        return 1

    @property
    def scope_mode(self) -> str | None:
        """The SCOPE mode (``"canonical"`` or ``"reference"``) the model was trained with, if recorded."""
        return None if self.scope is None else self.scope.get("mode")

    # Structure features: optional attributes, as the head settings are, so a config without them saves as before.

    @property
    def structure_feature_names(self) -> list[str]:
        """The registered structure features (:mod:`cloud_hf.features`) the head reads, in order: the cell
        descriptors of a thermo head with ``thermo_cell_features`` (how its checkpoints record them), then
        ``structure_features``. Its processor computes exactly these."""
        cells = [CELL_DESCRIPTORS_FEATURE] if getattr(self, "thermo_cell_features", False) else []
        return cells + list(getattr(self, "structure_features", None) or [])

    def feature_statistics(self, name: str) -> list[list[float]] | None:
        """``[means, stds]`` the head standardises feature ``name`` by, None to read it as computed: a thermo head
        records its cell descriptors' in ``thermo_cell_statistics``, every other feature's are in
        ``structure_feature_statistics``."""
        if name == CELL_DESCRIPTORS_FEATURE and getattr(self, "thermo_cell_features", False):
            return getattr(self, "thermo_cell_statistics", None)
        return (getattr(self, "structure_feature_statistics", None) or {}).get(name)

    def set_feature_statistics(self, name: str, statistics: list[list[float]]) -> None:
        """Record the statistics of feature ``name`` where :meth:`feature_statistics` reads them."""
        if name not in self.structure_feature_names:
            raise ValueError(f"structure feature {name!r} is not one this head reads ({self.structure_feature_names})")
        if name == CELL_DESCRIPTORS_FEATURE and getattr(self, "thermo_cell_features", False):
            self.thermo_cell_statistics = statistics
        else:
            self.structure_feature_statistics = {**(getattr(self, "structure_feature_statistics", None) or {}),
                                                 name: statistics}

    def validate_structure_features(self) -> None:
        """Part of ``@strict`` validation: feature names are distinct strings, statistics belong to one of them
        (their sizes are checked against the registered features where a head is built)."""
        names = self.structure_feature_names
        if any(not isinstance(name, str) or not name for name in names) or len(set(names)) != len(names):
            raise ValueError(f"structure features must be distinct names, got {names}")
        stray = set(getattr(self, "structure_feature_statistics", None) or {}) - set(names)
        if stray:
            raise ValueError(f"structure_feature_statistics for {sorted(stray)}, which structure_features lacks")

    def validate_encoder_shape(self) -> None:
        """Part of ``@strict`` validation: the encoder dimensions are consistent."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.head_num_layers < 0:
            raise ValueError(f"head_num_layers must be >= 0, got {self.head_num_layers}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "head_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not (math.isfinite(self.debye_theta_scale) and self.debye_theta_scale > 0):
            raise ValueError(f"debye_theta_scale must be a finite temperature > 0 K, got {self.debye_theta_scale}")

    def validate_targets(self) -> None:
        """Part of ``@strict`` validation: target statistics are consistent and usable for standardization."""
        lengths = {
            name: len(values)
            for name in ("target_names", "target_mean", "target_std", "target_units")
            if (values := getattr(self, name)) is not None
        }
        if len(set(lengths.values())) > 1:
            raise ValueError(f"target lists must have one entry per target, got lengths {lengths}")
        for index, std in enumerate(self.target_std or []):
            if not (math.isfinite(std) and std > 0):
                raise ValueError(f"target_std[{index}] must be finite and > 0, got {std}")
        for index, mean in enumerate(self.target_mean or []):
            if not math.isfinite(mean):
                raise ValueError(f"target_mean[{index}] must be finite, got {mean}")


__all__ = ["CloudConfig"]
