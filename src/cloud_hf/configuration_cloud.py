"""CLOUD model configuration."""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from cloud_hf.errors import CloudConfigError

THERMO_HEADS = ("dos", "debye-einstein")
"""The spectrum kinds of [`CloudThermoModel`] (``thermo_head``); ``"debye"`` is `CloudDebyeModel`'s own class."""
DEFAULT_FREQUENCIES = tuple(float(omega) for omega in range(20, 1001, 20))
"""The DOS head's default grid, cm⁻¹: the phonon data's 20 cm⁻¹ bins (its ω = 0 point is the Debye onset)."""
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
        multitask_loss_weight (`float`): weight of the property loss beside the masked-LM loss in
            [`CloudForMultiTaskPretraining`] (1: the two count alike).
        debye_theta_scale (`float`): typical Debye temperature θ_D of the training data, in K, used by
            `CloudDebyeModel`: a fresh head predicts it, and it scales the θ_D loss (default 300 K, about the
            median AFLOW AGL Debye temperature).
        composition_features (`bool`): the regression and classification heads also read the composition
            descriptors pooled from the token ids ([`cloud_hf.composition`]), through a descriptor MLP added to
            the [CLS] state (with ``structure_features``, if any). The thermo heads' switch is
            ``thermo_composition_features``.
        element_property_embeddings (`bool`): element tokens' embeddings are joined by a learned linear map of their
            element properties (pymatgen: ln mass, electronegativity, radius, row, group), so rare elements start
            near similar ones.
        structure_features (`list[str]`, *optional*): registered structure features ([`cloud_hf.features`]) the
            head also reads, in order; the checkpoint's processor computes them. Resolved with the thermo head's
            ``thermo_cell_features`` by [`structure_feature_names`].
        structure_feature_statistics (`dict[str, list[list[float]]]`, *optional*): ``[means, stds]`` a head
            standardises a feature of ``structure_features`` by (see [`feature_statistics`]).

    Settings of the thermodynamics heads ([`CloudThermoModel`]; the ``thermo_*`` field group, checked together by
    [`~CloudConfig.check_thermo_settings`] when a thermo config is made (`thermo_config`) and when a thermo model is
    built; other heads ignore them; a checkpoint saved before a setting existed gets its default here, on load):

        thermo_head (`str`): the spectrum kind, ``"dos"`` (a DOS on ``thermo_frequencies``) or ``"debye-einstein"``.
        thermo_members (`int`): deep-ensemble members (≥ 1), each its own encoder and head.
        thermo_frequencies (`list[float]`): the DOS grid, cm⁻¹, strictly increasing and > 0 (the Debye ω² onset is
            below its first point).
        thermo_dos_prior (`list[float]`, *optional*): logits added to the DOS head's outputs, one per DOS point (on
            the mass-reduced grid with ``thermo_mass_scaling``), so that a fresh head starts at the mean spectrum.
        thermo_num_einstein (`int`): Einstein frequencies of the debye-einstein head.
        thermo_std_scale (`float`): calibration factor of the ensemble standard deviation (fitted on validation).
        thermo_agl_trained (`bool`): whether the auxiliary AFLOW-AGL θ_D output was trained (and is reported).
        thermo_composition_features (`bool`): each member's head also reads composition descriptors pooled from
            the SCOPE tokens.
        thermo_dos_loss_weight (`float`), thermo_cumulative_dos_loss_weight (`float`): weights of the L1 loss per
            DOS point and of the L1 loss of the cumulative mode count (a Wasserstein-1 distance), against the C_v
            and S terms.
        thermo_mass_scaling (`bool`): the dos head predicts the spectrum on the mass-reduced axis
            u = ω·√(m̄/``thermo_reference_mass``)·e^δ (needs the dos head and the composition descriptors).
        thermo_reference_mass (`float`): m_ref of the reduced axis, amu.
        thermo_reduced_frequency_step (`float`), thermo_reduced_frequency_max (`float`): the uniform reduced grid
            0, step, …, max, cm⁻¹ at m̄ = m_ref (max a whole number of steps).
        thermo_cell_features (`bool`): the heads also read the cell descriptors (needs the composition descriptors).
        thermo_cell_statistics (`list[list[float]]`, *optional*): ``[means, stds]`` of the cell descriptors over
            the training crystals, for standardising them.
        thermo_sources (`list[str]`, *optional*): the label sources (codes, functionals) with a learned offset each.
        thermo_training_elements (`list[str]`, *optional*): the elements of the training crystals; a crystal with
            others is flagged (``unseen_element_share``).
        thermo_unseen_element_std (`float`): widening of every std per unseen-element share (× |value|).
        thermo_loss_per_crystal (`bool`): each crystal weighs as one in the C_v and S losses, however many
            temperatures it has labels at.
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
    multitask_loss_weight: float | int = 1.0
    debye_theta_scale: float | int = 300.0
    composition_features: bool = False
    element_property_embeddings: bool = False
    thermo_head: str = "dos"
    thermo_members: int = 1
    thermo_frequencies: list[float | int] | tuple[float | int, ...] = DEFAULT_FREQUENCIES
    thermo_dos_prior: list[float | int] | None = None
    thermo_num_einstein: int = 4
    thermo_std_scale: float | int = 1.0
    thermo_agl_trained: bool = False
    thermo_composition_features: bool = False
    thermo_dos_loss_weight: float | int = 1.0
    thermo_cumulative_dos_loss_weight: float | int = 0.0
    thermo_mass_scaling: bool = False
    thermo_reference_mass: float | int = 20.0
    thermo_reduced_frequency_step: float | int = 10.0
    thermo_reduced_frequency_max: float | int = 1200.0
    thermo_cell_features: bool = False
    thermo_cell_statistics: list[list[float | int]] | None = None
    thermo_sources: list[str] | None = None
    thermo_training_elements: list[str] | None = None
    thermo_unseen_element_std: float | int = 0.0
    thermo_loss_per_crystal: bool = False
    structure_features: list[str] | None = None
    structure_feature_statistics: dict[str, list[list[float | int]]] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.thermo_frequencies = list(self.thermo_frequencies)  # JSON's type, as a loaded checkpoint has it

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

    @property
    def thermo_reduced_frequencies(self) -> list[float]:
        """The mass-reduced DOS grid of ``thermo_mass_scaling``: 0, step, …, max (cm⁻¹ at m̄ = m_ref)."""
        step, top = float(self.thermo_reduced_frequency_step), float(self.thermo_reduced_frequency_max)
        steps = round(top / step) if step > 0 else 0
        if not 0.0 < step < top or not math.isclose(steps * step, top):
            raise CloudConfigError(f"thermo_reduced_frequency_max ({top}) must be a whole number of steps "
                                   f"thermo_reduced_frequency_step ({step} > 0)")
        return [step * index for index in range(steps + 1)]

    @property
    def thermo_dos_points(self) -> int:
        """Values of the dos head's spectrum: one per point of its grid (the reduced grid with mass scaling)."""
        return len(self.thermo_reduced_frequencies) if self.thermo_mass_scaling else len(self.thermo_frequencies)

    def thermo_settings(self) -> dict[str, Any]:
        """The ``thermo_*`` field group as a dict (name → value)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name.startswith("thermo_")}

    def check_thermo_settings(self) -> None:
        """The one check of the ``thermo_*`` settings (run by `thermo_config` and when a thermo model is built, so a
        setting changed in between is checked too); :class:`CloudConfigError` names the setting."""
        if self.thermo_head not in THERMO_HEADS:
            raise CloudConfigError(f"thermo_head must be one of {THERMO_HEADS}, got {self.thermo_head!r}")
        if not int(self.thermo_members) >= 1:
            raise CloudConfigError(f"thermo_members must be ≥ 1, got {self.thermo_members}")
        if self.thermo_mass_scaling and (self.thermo_head != "dos" or not self.thermo_composition_features):
            raise CloudConfigError("thermo_mass_scaling stretches the dos head's spectrum by the atoms' mean mass: it "
                                   "needs thermo_head 'dos' and thermo_composition_features true")
        if self.thermo_cell_features and not self.thermo_composition_features:
            raise CloudConfigError("thermo_cell_features joins the cell descriptors to the composition descriptors: "
                                   "it needs thermo_composition_features true")
        if self.structure_feature_names and not self.thermo_composition_features:
            raise CloudConfigError("structure_features join the composition descriptors: they need "
                                   "thermo_composition_features true")
        if self.thermo_cell_statistics is not None or self.structure_features:
            from cloud_hf.features import get_feature  # here: the built-in features import the structure code

            get_feature(CELL_DESCRIPTORS_FEATURE).check_statistics(self.thermo_cell_statistics, "thermo_cell_statistics")
            for name in self.structure_features or []:
                get_feature(name).check_statistics(self.feature_statistics(name),
                                                   f"the statistics of structure feature {name!r}")
        grid = [float(omega) for omega in self.thermo_frequencies]
        if not grid or grid[0] <= 0 or any(right <= left for left, right in itertools.pairwise(grid)):
            raise CloudConfigError("thermo_frequencies must be strictly increasing and > 0 cm⁻¹ (the onset is below)")
        prior = self.thermo_dos_prior
        if self.thermo_head == "dos" and prior is not None and len(prior) != self.thermo_dos_points:
            raise CloudConfigError(f"thermo_dos_prior has {len(prior)} values for a DOS grid of "
                                   f"{self.thermo_dos_points} points")

    def to_diff_dict(self) -> dict[str, Any]:
        """As every config, but for a model without a thermodynamics head the head settings (``thermo_*``,
        ``structure_feature*``) at their declared default are left out (it has none to save; loading fills them in).
        A thermo model saves every one, so that a default changed later cannot change what its checkpoint means."""
        diff = super().to_diff_dict()
        if "CloudThermoModel" in (self.architectures or []):
            return diff
        fields = self.__dataclass_fields__
        return {key: value for key, value in diff.items()
                if not (key.startswith(("thermo_", "structure_feature")) and key in fields
                        and _json_equal(value, fields[key].default))}

    @property
    def structure_feature_names(self) -> list[str]:
        """The registered structure features (:mod:`cloud_hf.features`) the head reads, in order: the cell
        descriptors of a thermo head with ``thermo_cell_features`` (how its checkpoints record them), then
        ``structure_features``. Its processor computes exactly these."""
        cells = [CELL_DESCRIPTORS_FEATURE] if self.thermo_cell_features else []
        return cells + list(self.structure_features or [])

    def feature_statistics(self, name: str) -> list[list[float]] | None:
        """``[means, stds]`` the head standardises feature ``name`` by, None to read it as computed: a thermo head
        records its cell descriptors' in ``thermo_cell_statistics``, every other feature's are in
        ``structure_feature_statistics``."""
        if name == CELL_DESCRIPTORS_FEATURE and self.thermo_cell_features:
            return self.thermo_cell_statistics
        return (self.structure_feature_statistics or {}).get(name)

    def set_feature_statistics(self, name: str, statistics: list[list[float]]) -> None:
        """Record the statistics of feature ``name`` where :meth:`feature_statistics` reads them."""
        if name not in self.structure_feature_names:
            raise ValueError(f"structure feature {name!r} is not one this head reads ({self.structure_feature_names})")
        if name == CELL_DESCRIPTORS_FEATURE and self.thermo_cell_features:
            self.thermo_cell_statistics = statistics
        else:
            self.structure_feature_statistics = {**(self.structure_feature_statistics or {}),
                                                 name: statistics}

    def validate_structure_features(self) -> None:
        """Part of ``@strict`` validation: feature names are distinct strings, statistics belong to one of them
        (their sizes are checked against the registered features where a head is built)."""
        names = self.structure_feature_names
        if any(not isinstance(name, str) or not name for name in names) or len(set(names)) != len(names):
            raise ValueError(f"structure features must be distinct names, got {names}")
        stray = set(self.structure_feature_statistics or {}) - set(names)
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


def _json_equal(value: Any, default: Any) -> bool:
    """Whether two settings are the same once written as JSON (a tuple default equals the list it is saved as)."""
    return (list(value) if isinstance(value, tuple) else value) == (list(default) if isinstance(default, tuple)
                                                                    else default)


__all__ = ["DEFAULT_FREQUENCIES", "THERMO_HEADS", "CloudConfig"]
