"""PyTorch CLOUD model: a BERT-style (post-LN) encoder over SCOPE tokens, with masked-LM, regression and
classification heads.

The parameter layout follows BERT's, except that query/key/value are fused into one projection and the single
token-type embedding row of the reference is folded into the position embeddings, so a reference
``BertForMaskedLM`` converts by a deterministic rename/fuse (see ``cloud_hf.conversion``).

Attention goes through ``transformers``' ``ALL_ATTENTION_FUNCTIONS`` (``eager``, ``sdpa``, ``flex_attention``,
``flash_attention_2`` where installed), so ``attn_implementation=`` and ``model.set_attn_implementation(...)`` work
as for any transformers model. The encoder has two execution paths that give the same real-token states:

* **dense** (masked dense attention; padding positions are kept at zero after every layer): no operation depends on
  the values of the mask, so ``torch.export``, ONNX export and ``torch.compile(fullgraph=True)`` work with a padded
  ``attention_mask``, and the ``hidden_states`` returned are the very tensors the next layer computes from;
* **packed** (eager execution of a padded batch when no hidden states are requested): projections, feed-forward and
  LayerNorms run on the real tokens only (see [`TokenUnpadding`]); only attention sees the padded layout. It is the
  faster path on padded CPU batches (``benchmarks/bench_model.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.import_utils import is_torchdynamo_compiling
from transformers.utils.output_capturing import capture_outputs

from cloud_hf.composition import (
    ELEMENT_PROPERTIES,
    NUM_COMPOSITION_FEATURES,
    element_token_table,
    pooled_composition_features,
)
from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.features import StructureFeature, get_features


@dataclass
class CloudRegressionOutput(ModelOutput):
    """
    Output of [`CloudForRegression`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): L1 or MSE loss on standardized targets, averaged over
            the labels that are not NaN; returned when `labels` is given.
        predictions (`torch.FloatTensor` of shape `(batch_size, num_targets)`): predictions in the physical units of
            each target (``logits * target_std + target_mean``).
        logits (`torch.FloatTensor` of shape `(batch_size, num_targets)`): standardized predictions.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): embeddings output and every layer's output.
        attentions (`tuple(torch.FloatTensor)`, *optional*): attention probabilities of every layer.
    """

    loss: torch.Tensor | None = None
    predictions: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class TokenUnpadding:
    """Where the real (non-padding) tokens of a padded ``(batch, seq)`` batch sit once packed into ``(tokens,)``.

    The encoder runs every per-token operation (projections, feed-forward, LayerNorm) on the packed real tokens
    only, and re-pads just for attention; the cost then scales with the real token count, not the padded one.
    """

    indices: torch.Tensor
    batch_size: int
    sequence_length: int

    @classmethod
    def from_attention_mask(cls, attention_mask: torch.Tensor) -> TokenUnpadding:
        indices = attention_mask.flatten().nonzero().squeeze(-1)
        return cls(indices, attention_mask.shape[0], attention_mask.shape[1])

    def first_token_rows(self) -> torch.Tensor:
        """``(batch,)``: where each sequence's position 0 ([CLS]) sits among the packed tokens."""
        return (self.indices % self.sequence_length == 0).nonzero().squeeze(-1)

    # index_select and an in-place index_put_ rather than ``padded[indices]`` and an out-of-place index_copy: the
    # same copies, measured on a 64-crystal batch of the bundled model (825 of 1280 positions real, 384 channels,
    # one CPU thread) 87 µs against 706 µs to unpad and 328 µs against 670 µs to pad; the encoder does both in
    # every layer of every member.

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """``(batch, seq, ...)`` -> ``(tokens, ...)``."""
        return padded.flatten(0, 1).index_select(0, self.indices)

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """``(tokens, ...)`` -> ``(batch, seq, ...)``, zeros at padding positions."""
        flat = packed.new_zeros((self.batch_size * self.sequence_length, *packed.shape[1:]))
        flat.index_put_((self.indices,), packed)
        return flat.view(self.batch_size, self.sequence_length, *packed.shape[1:])


class CloudEmbeddings(nn.Module):
    """Word + learned absolute position embeddings, then LayerNorm and dropout (BERT without token types).

    With ``config.element_property_embeddings`` an element token's embedding is joined by a learned linear map of
    its element properties (:data:`cloud_hf.composition.ELEMENT_PROPERTIES`, standardised; a buffer over the token
    ids, filled by :meth:`set_element_tables` and saved with the weights), so a rare element starts near the
    elements it resembles instead of at a random vector.
    """

    def __init__(self, config: CloudConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.element_projection = None
        if config.element_property_embeddings:
            self.register_buffer("element_properties", torch.zeros(config.vocab_size, len(ELEMENT_PROPERTIES)))
            self.element_projection = nn.Linear(len(ELEMENT_PROPERTIES), config.hidden_size, bias=False)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.register_buffer(
            "position_ids", torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False
        )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
            if self.element_projection is not None:
                inputs_embeds = inputs_embeds + self.element_projection(self.element_properties[input_ids]).to(
                    inputs_embeds.dtype)
        sequence_length = inputs_embeds.shape[1]
        if sequence_length > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"input sequence has {sequence_length} tokens but the model has only "
                f"{self.position_embeddings.num_embeddings} positions (max_position_embeddings); "
                "tokenize with truncation=True or use a model with more positions"
            )
        if position_ids is None:
            position_ids = self.position_ids[:, :sequence_length]
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))

    @torch.no_grad()
    def set_element_tables(self, tokenizer: Any) -> None:
        """Fill the element-property table from ``tokenizer``'s vocabulary (pymatgen element data; 0 on tokens that
        are not elements); a no-op without ``element_property_embeddings``."""
        if self.element_projection is None:
            return
        properties = element_token_table(tokenizer.get_vocab(), self.element_properties.shape[0])[1]
        self.element_properties.copy_(properties.to(self.element_properties))

    @property
    def has_element_tables(self) -> bool:
        """Whether the element-property table is filled (a fresh model's is zeros)."""
        return self.element_projection is None or bool(self.element_properties.any())


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention written out (returns the probabilities); ``query``/``key``/``value`` are
    ``(batch, heads, seq, head_dim)``, `attention_mask` an additive float or boolean (True = attend) mask broadcastable
    to ``(batch, heads, seq, seq)``. Returns ``(batch, seq, heads, head_dim)`` and the probabilities."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probabilities = F.dropout(scores.softmax(dim=-1), p=dropout, training=module.training)
    return torch.matmul(probabilities, value).transpose(1, 2).contiguous(), probabilities


class CloudSelfAttention(nn.Module):
    """Multi-head self-attention with a fused query/key/value projection; the kernel comes from
    ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``.

    ``output_attentions=True`` under ``sdpa`` (which cannot return probabilities) runs the eager kernel for that call.
    """

    is_causal = False

    def __init__(self, config: CloudConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        unpadding: TokenUnpadding | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``hidden_states``: ``(batch, seq, hidden)``, or packed ``(tokens, hidden)`` with `unpadding`;
        ``attention_mask``: the mask built by ``create_bidirectional_mask`` for the attention implementation."""
        qkv = self.qkv(hidden_states)
        if unpadding is not None:
            qkv = unpadding.pad(qkv)
        batch_size, sequence_length, _ = qkv.shape
        query, key, value = (
            qkv.view(batch_size, sequence_length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        )
        implementation = self.config._attn_implementation
        if kwargs.get("output_attentions") and implementation == "sdpa":
            implementation = "eager"
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        context, attention_probs = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        context = context.reshape(batch_size, sequence_length, -1)
        if unpadding is not None:
            context = unpadding.unpad(context)
        return context, attention_probs


class CloudLayer(GradientCheckpointingLayer):
    """One post-LN transformer block: x = LN(x + Attn(x)); x = LN(x + FFN(x)).

    With `token_mask` (``(batch, seq, 1)``, 1 at real tokens) the output is zero at padding positions, so the dense
    path returns what the packed path does. With `output_rows` (indices into packed ``(tokens, hidden)`` states)
    attention reads every token but only those rows go through the rest of the block: the output is
    ``(len(output_rows), hidden)``.
    """

    def __init__(self, config: CloudConfig):
        super().__init__()
        self.attention = CloudSelfAttention(config)
        self.attention_output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        unpadding: TokenUnpadding | None = None,
        token_mask: torch.Tensor | None = None,
        output_rows: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        context, _ = self.attention(hidden_states, attention_mask, unpadding=unpadding, **kwargs)
        if output_rows is not None:
            hidden_states, context = hidden_states.index_select(0, output_rows), context.index_select(0, output_rows)
        hidden_states = self.attention_LayerNorm(hidden_states + self.dropout(self.attention_output(context)))
        feed_forward = self.output(self.activation(self.intermediate(hidden_states)))
        hidden_states = self.output_LayerNorm(hidden_states + self.dropout(feed_forward))
        if token_mask is not None:
            hidden_states = hidden_states * token_mask
        return hidden_states


def standardised_feature(feature: StructureFeature, values: Any, like: torch.Tensor,
                         statistics: list[list[float]] | None) -> torch.Tensor:
    """One structure feature's model input `(batch, feature.size)`, checked (present, shaped, finite) and
    standardised by ``statistics`` (``[means, stds]``, None: as given), in ``like``'s dtype and device
    (``like`` `(batch, …)`)."""
    name = feature.input_name
    if values is None:
        raise CloudDataError(f"this model reads the crystals' {feature.description}: pass {name} (batch, "
                             f"{feature.size}) = {', '.join(feature.value_names)}; a CloudProcessor makes them "
                             "from structures (a SCOPE string alone has no cell)")
    values = torch.as_tensor(values).to(like)
    if values.shape != (like.shape[0], feature.size):
        raise CloudDataError(f"{name} has shape {tuple(values.shape)}; expected ({like.shape[0]}, {feature.size})")
    if not bool(torch.isfinite(values).all()):
        raise CloudDataError(f"{name} has NaN or infinite values in row(s) "
                             f"{torch.nonzero(~torch.isfinite(values).all(1)).flatten().tolist()}")
    if statistics is not None:
        mean, std = values.new_tensor(statistics)
        values = (values - mean) / std
    return values


class CloudDescriptorEncoder(nn.Module):
    """What a regression or classification head reads beside the [CLS] state: the composition descriptors pooled
    from the token ids (``config.composition_features``, :mod:`cloud_hf.composition`) joined by the structure
    features the config names (``config.structure_feature_names``, :mod:`cloud_hf.features`, standardised by
    ``config.feature_statistics``), through Linear → SiLU → Linear to the hidden size; the head adds it to [CLS].

    The composition token tables are buffers saved with the weights (zeros until
    :meth:`set_composition_tables` fills them from a tokenizer), so loading needs neither pymatgen nor the tokenizer.
    """

    def __init__(self, config: CloudConfig):
        super().__init__()
        self.config = config
        self.uses_composition = bool(config.composition_features)
        self.features = get_features(config.structure_feature_names)
        size = NUM_COMPOSITION_FEATURES * self.uses_composition + sum(feature.size for feature in self.features)
        vocab_size = config.vocab_size if self.uses_composition else 0
        self.register_buffer("is_element", torch.zeros(vocab_size))
        self.register_buffer("element_properties", torch.zeros(vocab_size, len(ELEMENT_PROPERTIES)))
        self.register_buffer("atom_counts", torch.zeros(vocab_size))
        self.mlp = nn.Sequential(nn.Linear(size, config.hidden_size), nn.SiLU(),
                                 nn.Linear(config.hidden_size, config.hidden_size))

    @property
    def input_names(self) -> list[str]:
        """The model inputs of the structure features read (e.g. ``["cell_features"]``)."""
        return [feature.input_name for feature in self.features]

    @torch.no_grad()
    def set_composition_tables(self, tokenizer: Any) -> None:
        """Fill the composition token tables from ``tokenizer``'s vocabulary (pymatgen element data)."""
        if not self.uses_composition:
            return
        tables = element_token_table(tokenizer.get_vocab(), self.config.vocab_size)
        if not bool(tables[0].any()):
            raise CloudConfigError("the tokenizer has no element-symbol tokens: no composition to read")
        for buffer, table in zip((self.is_element, self.element_properties, self.atom_counts), tables):
            buffer.copy_(table.to(buffer))

    def forward(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                feature_inputs: Mapping[str, Any], like: torch.Tensor) -> torch.Tensor:
        """The [CLS] offset `(batch, hidden_size)` in ``like``'s dtype (``like``: the [CLS] states)."""
        parts = []
        if self.uses_composition:
            if input_ids is None:
                raise CloudDataError("this model pools composition descriptors from input_ids: pass input_ids, "
                                     "not inputs_embeds")
            parts.append(pooled_composition_features(input_ids, attention_mask, self.is_element,
                                                     self.element_properties, self.atom_counts).to(like))
        parts += [standardised_feature(feature, feature_inputs.get(feature.input_name), like,
                                       self.config.feature_statistics(feature.name)) for feature in self.features]
        return self.mlp(torch.cat(parts, dim=-1).to(like))


def descriptor_encoder(config: CloudConfig) -> CloudDescriptorEncoder | None:
    """A head's [`CloudDescriptorEncoder`], or None where its config reads no descriptors."""
    return CloudDescriptorEncoder(config) if config.composition_features or config.structure_feature_names else None


def pop_feature_inputs(descriptors: CloudDescriptorEncoder | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the structure-feature inputs (by input name) out of a head's ``**kwargs`` before they reach the
    encoder."""
    return {name: kwargs.pop(name, None) for name in (descriptors.input_names if descriptors is not None else [])}


def crystal_summary(descriptors: CloudDescriptorEncoder | None, outputs: BaseModelOutput,
                    input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                    feature_inputs: Mapping[str, Any]) -> torch.Tensor:
    """What a head reads `(batch, hidden_size)`: the [CLS] state, plus the descriptor offset where the head reads
    descriptors."""
    summary = outputs.last_hidden_state[:, 0]
    if descriptors is None:
        return summary
    return summary + descriptors(input_ids, attention_mask, feature_inputs, summary)


class CloudPreTrainedModel(PreTrainedModel):
    """Base class of the CLOUD models: configuration, weight initialisation and checkpoint conventions. Heads return
    tensors; what the ``crystal-property-prediction`` pipeline reports from them is :mod:`cloud_hf.property_heads`'.
    """

    config_class = CloudConfig
    config: CloudConfig
    base_model_prefix = "cloud"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _no_split_modules: ClassVar[list[str]] = ["CloudLayer"]
    _can_record_outputs: ClassVar[dict[str, type[nn.Module]]] = {
        "hidden_states": CloudLayer,
        "attentions": CloudSelfAttention,
    }
    accepts_loss_kwargs = False
    """The losses are means over the batch's labels: ``Trainer`` must not pass ``num_items_in_batch``."""

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, allow_pickle: bool = False, **kwargs
    ):
        """``PreTrainedModel.from_pretrained`` reading safetensors weights only, unless ``allow_pickle=True``.

        A pickle checkpoint (``pytorch_model.bin``) can run code when unpickled, so, as for ``cloud-hf
        convert-reference``, reading one needs the explicit opt-in (for a file you trust); a folder holding only
        pickle weights is a ``CloudConfigError`` that says so.
        """
        if not allow_pickle:
            if kwargs.get("use_safetensors") is False:
                raise CloudConfigError("use_safetensors=False reads pickle checkpoints: pass allow_pickle=True as well")
            folder = Path(os.fspath(pretrained_model_name_or_path or "")) / kwargs.get("subfolder", "")
            if folder.is_dir() and not any(folder.glob("*.safetensors*")) and any(folder.glob("*.bin*")):
                raise CloudConfigError(
                    f"{folder}: holds only pickle weights ({', '.join(sorted(p.name for p in folder.glob('*.bin*')))}); "
                    "cloud-hf reads safetensors checkpoints, and a pickle only with allow_pickle=True, for a file you "
                    "trust (or convert it once: load with allow_pickle=True, then save_pretrained)"
                )
            kwargs["use_safetensors"] = True
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) for Linear/Embedding weights, zero biases, unit LayerNorms (as BERT)."""
        super()._init_weights(module)
        if isinstance(module, CloudEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
            if module.element_projection is not None:  # empty until set_element_tables or a checkpoint fills it
                init.zeros_(module.element_properties)
        if isinstance(module, CloudDescriptorEncoder):  # empty until set_composition_tables or a checkpoint fills it
            for buffer in (module.is_element, module.element_properties, module.atom_counts):
                init.zeros_(buffer)

    def run_encoder(
        self,
        input_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        position_ids: torch.LongTensor | None,
        inputs_embeds: torch.FloatTensor | None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        """The encoder ``self.cloud`` on a head's inputs, always as a [`BaseModelOutput`]."""
        return self.cloud(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )


class CloudModel(CloudPreTrainedModel):
    """The bare CLOUD encoder; ``last_hidden_state[:, 0]`` is the [CLS] representation of the crystal.

    Hidden states at padding positions are zeros (BERT computes throw-away values there); real positions do not depend
    on the padding. Left padding is refused: the crystal is read from [CLS] at position 0.
    """

    def __init__(self, config: CloudConfig):
        super().__init__(config)
        self.embeddings = CloudEmbeddings(config)
        self.layers = nn.ModuleList([CloudLayer(config) for _ in range(config.num_hidden_layers)])
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        first_token_only: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): token ids from
                [`CloudTokenizerFast`]; position 0 must be [CLS].
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*): 1 for real
                tokens, 0 for padding (right padding only).
            position_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): defaults to
                ``0 .. sequence_length - 1``.
            inputs_embeds (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`, *optional*):
                word embeddings to use instead of `input_ids`.
            first_token_only (`bool`, *optional*, defaults to `False`): return position 0 ([CLS]) only,
                `last_hidden_state` of shape `(batch_size, 1, hidden_size)`, for a head that reads nothing else.
                On the packed path in eval mode the last layer then runs its feed-forward on the [CLS] tokens alone
                (its attention still reads every token): the same values, for 17 % fewer multiply-adds in the bundled
                4-layer encoders (13 tokens per crystal on average).
            kwargs: `output_hidden_states`, `output_attentions` (and `return_dict`), as for any transformers model.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise CloudConfigError("pass exactly one of input_ids and inputs_embeds")
        hidden_states = self.embeddings(input_ids=input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        padding_mask = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
        if padding_mask is not None and not is_torchdynamo_compiling() and not bool(padding_mask[:, 0].all()):
            raise CloudDataError(
                "attention_mask is 0 at position 0 of some rows: CLOUD reads the crystal from [CLS] at position 0, "
                "so pad on the right (tokenizer.padding_side = 'right')"
            )
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        unpadding = self._packed_layout(padding_mask, kwargs)
        token_mask = None
        if unpadding is not None:
            hidden_states = unpadding.unpad(hidden_states)
        elif padding_mask is not None:
            token_mask = padding_mask[..., None].to(hidden_states.dtype)
            hidden_states = hidden_states * token_mask
        # The last layer on the [CLS] rows only: not in training, where the dropout draws must stay those of the full
        # stack (runs stay reproducible), nor for fewer than 4 rows, where MKL's matrix products round differently
        # from the same rows within a larger product (measured), so the values would change in the last bit.
        first_rows = None
        if first_token_only and unpadding is not None and not self.training and unpadding.batch_size >= 4:
            first_rows = unpadding.first_token_rows()
        for index, layer in enumerate(self.layers):
            rows = first_rows if index == len(self.layers) - 1 else None
            hidden_states = layer(hidden_states, attention_mask, unpadding=unpadding, token_mask=token_mask,
                                  output_rows=rows, **kwargs)
        if first_rows is not None:
            return BaseModelOutput(last_hidden_state=hidden_states[:, None])
        if unpadding is not None:
            hidden_states = unpadding.pad(hidden_states)
        return BaseModelOutput(last_hidden_state=hidden_states[:, :1] if first_token_only else hidden_states)

    def _packed_layout(self, padding_mask: torch.Tensor | None, kwargs: dict) -> TokenUnpadding | None:
        """The packed layout of a padded batch where the packed path applies, else None (dense path).

        The packed path needs eager execution (it reads the mask's values) and is skipped when hidden states are
        requested, so that those are the tensors each layer computes from.
        """
        if padding_mask is None or is_torchdynamo_compiling():
            return None
        if kwargs.get("output_hidden_states", self.config.output_hidden_states):
            return None
        if bool(padding_mask.all()):
            return None
        return TokenUnpadding.from_attention_mask(padding_mask)


class CloudLMHead(nn.Module):
    """Masked-LM head (as BERT): dense + activation + LayerNorm, then a decoder tied to the word embeddings."""

    def __init__(self, config: CloudConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.LayerNorm(self.activation(self.dense(hidden_states))))


class CloudPredictionHead(nn.Module):
    """The reference fine-tuning head on the [CLS] state: Dropout → k × (Linear(h, h) + SiLU) → Linear(h, n).

    ``k = config.head_num_layers``, dropout ``config.head_dropout``. Input ``(batch, hidden_size)``, output
    ``(batch, num_outputs)``.
    """

    def __init__(self, config: CloudConfig, num_outputs: int):
        super().__init__()
        self.dropout = nn.Dropout(config.head_dropout)
        self.hidden_layers = nn.ModuleList(
            [nn.Linear(config.hidden_size, config.hidden_size) for _ in range(config.head_num_layers)]
        )
        self.activation = nn.SiLU()
        self.out_proj = nn.Linear(config.hidden_size, num_outputs)

    def forward(self, cls_hidden_state: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(cls_hidden_state)
        for layer in self.hidden_layers:
            hidden = self.activation(layer(hidden))
        return self.out_proj(hidden)


class CloudMaskedLMHeadMixin:
    """The output embeddings of a model with ``self.lm_head`` ([`CloudLMHead`]), whose decoder is tied to the word
    embeddings, and its masked-LM loss."""

    lm_head: CloudLMHead

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings

    @staticmethod
    def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the token scores ``logits`` against ``labels`` (-100: not masked, ignored)."""
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1).to(logits.device))


class CloudForMaskedLM(CloudMaskedLMHeadMixin, CloudPreTrainedModel):
    """CLOUD encoder with the masked-language-modelling head used for pretraining."""

    _tied_weights_keys: ClassVar[dict[str, str]] = {"lm_head.decoder.weight": "cloud.embeddings.word_embeddings.weight"}

    def __init__(self, config: CloudConfig):
        super().__init__(config)
        self.cloud = CloudModel(config)
        self.lm_head = CloudLMHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): target token ids of the
            masked positions; -100 elsewhere (ignored by the cross-entropy loss).
        """
        outputs = self.run_encoder(input_ids, attention_mask, position_ids, inputs_embeds, **kwargs)
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = self.masked_lm_loss(logits, labels)
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class CloudForRegression(CloudPreTrainedModel):
    """CLOUD encoder + [`CloudPredictionHead`] regressing one or many crystal properties.

    The head predicts standardized targets; ``config.target_mean`` / ``config.target_std`` (physical units) map them
    back, so `labels` and `predictions` are in physical units. NaN labels (missing values of a multi-target data set)
    are left out of the loss.
    """

    def __init__(self, config: CloudConfig):
        super().__init__(config)
        self.cloud = CloudModel(config)
        self.build_heads(config)
        self.post_init()

    def build_heads(self, config: CloudConfig) -> None:
        """The modules on top of the encoder (a subclass adds its own after these, before ``post_init``)."""
        num_targets = config.num_targets
        self.head = CloudPredictionHead(config, num_targets)
        self.descriptors = descriptor_encoder(config)
        mean = config.target_mean if config.target_mean is not None else [0.0] * num_targets
        std = config.target_std if config.target_std is not None else [1.0] * num_targets
        self.register_buffer("target_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("target_std", torch.tensor(std, dtype=torch.float32), persistent=False)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self:
            num_targets = self.config.num_targets
            init.copy_(self.target_mean, torch.tensor(self.config.target_mean or [0.0] * num_targets))
            init.copy_(self.target_std, torch.tensor(self.config.target_std or [1.0] * num_targets))

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CloudRegressionOutput:
        r"""
        labels (`torch.FloatTensor` of shape `(batch_size,)` or `(batch_size, num_targets)`, *optional*): targets in
            physical units (``config.target_units``); NaN marks a missing value.
        """
        feature_inputs = pop_feature_inputs(self.descriptors, kwargs)
        outputs = self.run_encoder(input_ids, attention_mask, position_ids, inputs_embeds, **kwargs)
        logits = self.head(crystal_summary(self.descriptors, outputs, input_ids, attention_mask, feature_inputs))
        predictions = logits * self.target_std.to(logits.dtype) + self.target_mean.to(logits.dtype)
        loss = self.regression_loss(logits, labels) if labels is not None else None
        return CloudRegressionOutput(
            loss=loss,
            predictions=predictions,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def regression_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L1 or MSE between standardized `logits` and `labels` (physical units), averaged over non-NaN labels.

        A batch whose labels are all NaN gives a zero loss that still carries the graph.
        """
        num_targets = logits.shape[-1]
        labels = labels.to(device=logits.device, dtype=logits.dtype)
        if labels.dim() == 1 and num_targets == 1:
            labels = labels.unsqueeze(-1)
        if labels.shape != logits.shape:
            raise ValueError(
                f"labels have shape {tuple(labels.shape)}; expected ({logits.shape[0]},) or "
                f"({logits.shape[0]}, {num_targets}) for {num_targets} target(s) {self.config.target_names}"
            )
        standardized = (labels - self.target_mean.to(logits.dtype)) / self.target_std.to(logits.dtype)
        present = ~torch.isnan(standardized)
        if self.config.regression_loss == "l1":
            elementwise = F.l1_loss(logits, standardized.nan_to_num(), reduction="none")
        else:
            elementwise = F.mse_loss(logits, standardized.nan_to_num(), reduction="none")
        return (elementwise * present).sum() / present.sum().clamp(min=1)


@dataclass
class CloudMultiTaskOutput(ModelOutput):
    """
    Output of [`CloudForMultiTaskPretraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): ``mlm_loss + config.multitask_loss_weight *
            property_loss`` (the terms that have labels).
        mlm_loss (`torch.FloatTensor` of shape `()`, *optional*): masked-LM cross-entropy over the masked tokens.
        property_loss (`torch.FloatTensor` of shape `()`, *optional*): L1 or MSE on standardized properties, averaged
            over the labels that are not NaN (a crystal trains on the properties it has).
        predictions (`torch.FloatTensor` of shape `(batch_size, num_targets)`): each property in its units
            (``config.target_units``).
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`): masked-LM scores.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): embeddings output and every layer's output.
        attentions (`tuple(torch.FloatTensor)`, *optional*): attention probabilities of every layer.
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    property_loss: torch.Tensor | None = None
    predictions: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class CloudForMultiTaskPretraining(CloudMaskedLMHeadMixin, CloudForRegression):
    """CLOUD encoder pre-trained on two objectives at once: the masked-LM head of [`CloudForMaskedLM`] and one
    regression output per labelled property (``config.target_names``, standardized by ``target_mean`` /
    ``target_std`` as in [`CloudForRegression`], whose head and loss it reuses).

    A crystal carries the labels it has and NaN for the others; each property's loss counts only its labels, and a
    batch with no property label trains the masked-LM loss alone. The encoder (``cloud.*``) and masked-LM head
    (``lm_head.*``) have the names of [`CloudForMaskedLM`], so the encoder loads into any CLOUD head with
    ``from_pretrained`` (``recipes/pretrain_multitask.py`` saves it as a ``CloudForMaskedLM`` backbone).
    """

    _tied_weights_keys: ClassVar[dict[str, str]] = {"lm_head.decoder.weight": "cloud.embeddings.word_embeddings.weight"}

    def build_heads(self, config: CloudConfig) -> None:
        super().build_heads(config)
        self.lm_head = CloudLMHead(config)

    def backbone(self) -> CloudForMaskedLM:
        """The encoder and masked-LM head as a [`CloudForMaskedLM`] (a copy): the checkpoint other heads start from.

        Its config drops the property head's settings (targets, descriptors), which belong to this pre-training.
        """
        settings = self.config.to_dict()
        for name in ("target_names", "target_mean", "target_std", "target_units", "structure_features",
                     "structure_feature_statistics", "architectures"):
            settings.pop(name, None)
        settings["composition_features"] = False
        masked = CloudForMaskedLM(CloudConfig.from_dict(settings))
        kept = {key: value for key, value in self.state_dict().items() if key.startswith(("cloud.", "lm_head."))}
        masked.load_state_dict(kept, strict=True)
        return masked

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        property_labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CloudMultiTaskOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): target token ids of the
            masked positions; -100 elsewhere.
        property_labels (`torch.FloatTensor` of shape `(batch_size, num_targets)`, *optional*): properties in their
            units (``config.target_units``); NaN where a crystal has no label.
        """
        feature_inputs = pop_feature_inputs(self.descriptors, kwargs)
        outputs = self.run_encoder(input_ids, attention_mask, position_ids, inputs_embeds, **kwargs)
        token_logits = self.lm_head(outputs.last_hidden_state)
        property_logits = self.head(crystal_summary(self.descriptors, outputs, input_ids, attention_mask,
                                                    feature_inputs))
        predictions = property_logits * self.target_std.to(property_logits.dtype) + self.target_mean.to(
            property_logits.dtype)
        mlm_loss = property_loss = loss = None
        if labels is not None:
            mlm_loss = self.masked_lm_loss(token_logits, labels)
            loss = mlm_loss
        if property_labels is not None:
            property_loss = self.regression_loss(property_logits, property_labels)
            weighted = self.config.multitask_loss_weight * property_loss
            loss = weighted if loss is None else loss + weighted
        return CloudMultiTaskOutput(
            loss=loss,
            mlm_loss=mlm_loss,
            property_loss=property_loss,
            predictions=predictions,
            logits=token_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class CloudForClassification(CloudPreTrainedModel):
    """CLOUD encoder + [`CloudPredictionHead`] classifying crystals.

    ``num_labels == 1``: binary with one logit (BCE-with-logits, labels 0/1). ``num_labels >= 2``: multi-class
    cross-entropy on integer labels, or, with ``problem_type="multi_label_classification"``, independent binary
    labels (float multi-hot).
    """

    def __init__(self, config: CloudConfig):
        super().__init__(config)
        if config.problem_type == "regression":
            raise ValueError("problem_type='regression' is served by CloudForRegression, not CloudForClassification")
        self.num_labels = config.num_labels
        self.cloud = CloudModel(config)
        self.head = CloudPredictionHead(config, config.num_labels)
        self.descriptors = descriptor_encoder(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        labels (`torch.Tensor` of shape `(batch_size,)` or `(batch_size, num_labels)`, *optional*): class ids in
            ``[0, num_labels)``, 0/1 for a single-logit binary model, multi-hot for multi-label.
        """
        feature_inputs = pop_feature_inputs(self.descriptors, kwargs)
        outputs = self.run_encoder(input_ids, attention_mask, position_ids, inputs_embeds, **kwargs)
        logits = self.head(crystal_summary(self.descriptors, outputs, input_ids, attention_mask, feature_inputs))
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if self.num_labels == 1:
                loss = F.binary_cross_entropy_with_logits(logits.view(-1), labels.view(-1).to(logits.dtype))
            elif self.config.problem_type == "multi_label_classification":
                loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1).long())
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def class_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities from the logits: sigmoid per label for multi-label, ``[1 − p, p]`` for one logit,
        softmax otherwise; ``(batch, max(2, num_labels))``."""
        if self.config.problem_type == "multi_label_classification":
            return logits.sigmoid()
        if logits.shape[-1] == 1:
            positive = logits.sigmoid()
            return torch.cat([1 - positive, positive], dim=-1)
        return logits.softmax(dim=-1)


__all__ = [
    "CloudDescriptorEncoder",
    "CloudForClassification",
    "CloudForMaskedLM",
    "CloudForMultiTaskPretraining",
    "CloudForRegression",
    "CloudModel",
    "CloudMultiTaskOutput",
    "CloudPreTrainedModel",
    "CloudPredictionHead",
    "CloudRegressionOutput",
    "TokenUnpadding",
]
