"""Convert the released CLOUD checkpoint (a ``BertForMaskedLM`` + BERT WordPiece tokenizer) into a cloud-hf one.

The conversion is a deterministic rename/fuse of the weights:

- ``query``/``key``/``value`` are concatenated into the fused ``qkv`` projection;
- the reference uses a single token type (id 0), so ``token_type_embeddings[0]`` is added to every row of the
  position embeddings (BERT adds all three embeddings; the sum is unchanged);
- the vocabulary is trimmed to the tokenizer's ids (564 of the 30,522 rows of the reference: ids beyond the
  tokenizer are never fed and never the target of a masked token). Logits over the kept ids are unchanged; the
  trimmed rows and their logits are dropped, which removes ~23M of the ~110M parameters of the 12 × 768 model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.modeling_cloud import CloudForMaskedLM
from cloud_hf.tokenization_cloud import CloudTokenizerFast

SAFETENSORS_WEIGHTS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLED_WEIGHTS = "pytorch_model.bin"

# Reference (``BertForMaskedLM``) parameter names per encoder layer -> cloud-hf names (all but q/k/v, fused).
_LAYER_RENAMES = {
    "attention.output.dense": "attention_output",
    "attention.output.LayerNorm": "attention_LayerNorm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_LayerNorm",
}
# Keys of a BERT checkpoint that carry nothing the masked-LM model uses.
_UNUSED_KEY_SUFFIXES = ("position_ids", "token_type_ids")
_UNUSED_KEY_PREFIXES = ("bert.pooler.", "cls.seq_relationship.")


def convert_reference_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    allow_pickle: bool = False,
) -> Path:
    """Convert a reference CLOUD checkpoint folder into a cloud-hf checkpoint folder.

    Args:
        src: folder in the released checkpoint's layout: ``config.json`` of a ``BertForMaskedLM``,
            ``model.safetensors`` (or a sharded safetensors index) and the reference tokenizer files
            ``vocab.txt``, ``added_tokens.json``, ``special_tokens_map.json``, ``tokenizer_config.json``.
        dst: output folder (created): ``config.json`` + ``model.safetensors`` of a [`CloudForMaskedLM`] and a
            [`CloudTokenizerFast`] (``tokenizer.json``, ``tokenizer_config.json``) recording SCOPE mode
            ``reference``.
        allow_pickle: also read ``pytorch_model.bin`` when no safetensors weights exist. Pickled weights can run
            arbitrary code on load; leave False unless the source is trusted.

    Returns:
        the output folder. ``AutoModelForMaskedLM.from_pretrained(dst)`` then gives logits equal to the reference
        model's over the tokenizer's ids, and ``AutoTokenizer.from_pretrained(dst)`` the reference ``input_ids``.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"reference checkpoint folder {src} does not exist")
    bert_config = _read_bert_config(src / "config.json")
    tokenizer = CloudTokenizerFast.from_reference_files(
        src, model_max_length=bert_config["max_position_embeddings"]
    )
    vocab_size = len(tokenizer)
    if vocab_size > bert_config["vocab_size"]:
        raise ValueError(
            f"{src}: the tokenizer has {vocab_size} ids but the model only {bert_config['vocab_size']} embeddings"
        )
    config = cloud_config_from_bert(bert_config, vocab_size=vocab_size, pad_token_id=tokenizer.pad_token_id,
                                    scope=tokenizer.scope_config)
    state_dict = reference_to_cloud_state_dict(_load_weights(src, allow_pickle), config, source=str(src))

    model = CloudForMaskedLM(config)
    model.load_state_dict(state_dict, strict=True)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    return dst


def cloud_config_from_bert(
    bert_config: dict[str, Any],
    vocab_size: int,
    pad_token_id: int,
    scope: dict[str, Any] | None,
) -> CloudConfig:
    """The [`CloudConfig`] equivalent to a reference ``BertConfig`` dict, with the vocabulary trimmed."""
    return CloudConfig(
        vocab_size=vocab_size,
        hidden_size=bert_config["hidden_size"],
        num_hidden_layers=bert_config["num_hidden_layers"],
        num_attention_heads=bert_config["num_attention_heads"],
        intermediate_size=bert_config["intermediate_size"],
        hidden_act=bert_config.get("hidden_act", "gelu"),
        hidden_dropout_prob=bert_config.get("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=bert_config.get("attention_probs_dropout_prob", 0.1),
        max_position_embeddings=bert_config["max_position_embeddings"],
        initializer_range=bert_config.get("initializer_range", 0.02),
        layer_norm_eps=bert_config.get("layer_norm_eps", 1e-12),
        pad_token_id=pad_token_id,
        tie_word_embeddings=bert_config.get("tie_word_embeddings", True),
        scope=scope,
        architectures=["CloudForMaskedLM"],
    )


def reference_to_cloud_state_dict(
    bert_state_dict: dict[str, torch.Tensor],
    config: CloudConfig,
    source: str = "reference checkpoint",
) -> dict[str, torch.Tensor]:
    """Rename/fuse a ``BertForMaskedLM`` state dict into a [`CloudForMaskedLM`] one (see the module docstring).

    Every reference key must be consumed (or be a known unused buffer/pooler weight): an unexpected key raises,
    naming `source`, instead of being silently dropped.
    """
    weights = {_modern_layer_norm_name(key): value for key, value in bert_state_dict.items()}
    consumed: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in weights:
            raise KeyError(f"{source}: weight {key!r} is missing; is this a BertForMaskedLM checkpoint?")
        consumed.add(key)
        return weights[key]

    vocab_size = config.vocab_size
    word_embeddings = take("bert.embeddings.word_embeddings.weight")
    token_type_embeddings = take("bert.embeddings.token_type_embeddings.weight")
    converted = {
        "cloud.embeddings.word_embeddings.weight": word_embeddings[:vocab_size],
        "cloud.embeddings.position_embeddings.weight": take("bert.embeddings.position_embeddings.weight")
        + token_type_embeddings[0],
        "cloud.embeddings.LayerNorm.weight": take("bert.embeddings.LayerNorm.weight"),
        "cloud.embeddings.LayerNorm.bias": take("bert.embeddings.LayerNorm.bias"),
    }
    for index in range(config.num_hidden_layers):
        old, new = f"bert.encoder.layer.{index}.", f"cloud.layers.{index}."
        for kind in ("weight", "bias"):
            converted[f"{new}attention.qkv.{kind}"] = torch.cat(
                [take(f"{old}attention.self.{part}.{kind}") for part in ("query", "key", "value")]
            )
            for old_name, new_name in _LAYER_RENAMES.items():
                converted[f"{new}{new_name}.{kind}"] = take(f"{old}{old_name}.{kind}")
    for kind in ("weight", "bias"):
        converted[f"lm_head.dense.{kind}"] = take(f"cls.predictions.transform.dense.{kind}")
        converted[f"lm_head.LayerNorm.{kind}"] = take(f"cls.predictions.transform.LayerNorm.{kind}")
    bias_key = "cls.predictions.bias" if "cls.predictions.bias" in weights else "cls.predictions.decoder.bias"
    converted["lm_head.decoder.bias"] = take(bias_key)[:vocab_size]
    if "cls.predictions.decoder.bias" in weights:
        take("cls.predictions.decoder.bias")  # BERT ties it to cls.predictions.bias
    decoder_weight = weights.get("cls.predictions.decoder.weight")
    if decoder_weight is not None:
        take("cls.predictions.decoder.weight")
    if config.tie_word_embeddings:
        if decoder_weight is not None and not torch.equal(decoder_weight, word_embeddings):
            raise ValueError(f"{source}: tie_word_embeddings is set but the decoder differs from the word embeddings")
        converted["lm_head.decoder.weight"] = converted["cloud.embeddings.word_embeddings.weight"]
    else:
        if decoder_weight is None:
            raise KeyError(f"{source}: untied checkpoint without 'cls.predictions.decoder.weight'")
        converted["lm_head.decoder.weight"] = decoder_weight[:vocab_size]

    leftover = [
        key for key in weights
        if key not in consumed and not key.endswith(_UNUSED_KEY_SUFFIXES) and not key.startswith(_UNUSED_KEY_PREFIXES)
    ]
    if leftover:
        raise ValueError(f"{source}: unexpected weights for a BertForMaskedLM with "
                         f"{config.num_hidden_layers} layers: {sorted(leftover)[:10]}")
    return {key: value.contiguous() for key, value in converted.items()}


def _modern_layer_norm_name(key: str) -> str:
    """TF-era BERT checkpoints call LayerNorm parameters gamma/beta."""
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def _read_bert_config(path: Path) -> dict[str, Any]:
    """The reference ``config.json``, checked to describe a BERT encoder cloud-hf can represent."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the source folder is not a transformers checkpoint")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: malformed JSON ({error})") from error
    if config.get("model_type") != "bert":
        raise ValueError(f"{path}: model_type is {config.get('model_type')!r}, expected 'bert' (a BertForMaskedLM)")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{path}: position_embedding_type {config['position_embedding_type']!r} is not supported")
    if config.get("is_decoder", False):
        raise ValueError(f"{path}: a decoder BERT is not a CLOUD encoder")
    defaults = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                "intermediate_size": 3072, "max_position_embeddings": 512}
    return {**defaults, **config}


def _load_weights(src: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """The reference weights: safetensors (single file or sharded); pickled only when `allow_pickle`."""
    if (src / SAFETENSORS_WEIGHTS).is_file():
        return load_file(src / SAFETENSORS_WEIGHTS, device="cpu")
    if (src / SAFETENSORS_INDEX).is_file():
        shards = sorted(set(json.loads((src / SAFETENSORS_INDEX).read_text())["weight_map"].values()))
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            weights.update(load_file(src / shard, device="cpu"))
        return weights
    if (src / PICKLED_WEIGHTS).is_file():
        if not allow_pickle:
            raise ValueError(
                f"{src} holds only pickled weights ({PICKLED_WEIGHTS}); pickles can run code when loaded. "
                "Pass allow_pickle=True (CLI: --allow-pickle) if you trust the source."
            )
        return torch.load(src / PICKLED_WEIGHTS, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{src}: no {SAFETENSORS_WEIGHTS}, {SAFETENSORS_INDEX} or {PICKLED_WEIGHTS}")


__all__ = ["cloud_config_from_bert", "convert_reference_checkpoint", "reference_to_cloud_state_dict"]
