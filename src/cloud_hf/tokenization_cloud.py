"""Fast tokenizer for SCOPE strings, backed by the ``tokenizers`` library.

Two backends share one class, [`CloudTokenizerFast`]:

- canonical SCOPE (the default for new models, built by [`CloudTokenizerFast.from_scope_vocabulary`]): a word-level
  model over the closed SCOPE vocabulary, split on whitespace only, so every SCOPE token is exactly one id;
- reference SCOPE (built by [`CloudTokenizerFast.from_reference_files`] from the released checkpoint's
  ``vocab.txt`` / ``added_tokens.json`` files): the reference BERT WordPiece pipeline, reproduced id for id.

Both add ``[CLS] ... [SEP]`` and record the SCOPE settings they were built for under ``scope`` in
``tokenizer_config.json`` (read back as [`CloudTokenizerFast.scope_config`]).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel, WordPiece
from transformers.tokenization_utils_tokenizers import TokenizersBackend

CLS_TOKEN = "[CLS]"
PAD_TOKEN = "[PAD]"
SEP_TOKEN = "[SEP]"
UNK_TOKEN = "[UNK]"
MASK_TOKEN = "[MASK]"
SPECIAL_TOKENS = (CLS_TOKEN, PAD_TOKEN, SEP_TOKEN, UNK_TOKEN, MASK_TOKEN)
"""Special tokens in id order: [CLS]=0 [PAD]=1 [SEP]=2 [UNK]=3 [MASK]=4, as in the reference tokenizer."""

REFERENCE_MAX_LENGTH = 64
"""The reference model has 64 positions and the reference pipeline pads/truncates to 64 tokens."""
CANONICAL_MAX_LENGTH = 128
"""Positions of the default canonical model (``CloudConfig.max_position_embeddings``): [CLS], 3 symmetry tokens,
2 tokens per Wyckoff orbit and [SEP], so crystals with up to 61 orbits fit."""


def _cls_sep_post_processor(cls_id: int, sep_id: int) -> processors.TemplateProcessing:
    """``[CLS] A [SEP]`` for one string, ``[CLS] A [SEP] B [SEP]`` for a pair."""
    return processors.TemplateProcessing(
        single=f"{CLS_TOKEN} $A {SEP_TOKEN}",
        pair=f"{CLS_TOKEN} $A {SEP_TOKEN} $B:1 {SEP_TOKEN}:1",
        special_tokens=[(CLS_TOKEN, cls_id), (SEP_TOKEN, sep_id)],
    )


class CloudTokenizerFast(TokenizersBackend):
    """
    Fast SCOPE tokenizer: every whitespace-separated SCOPE token is one id; ``[CLS]``/``[SEP]`` are added around
    each string. Returns ``input_ids`` and ``attention_mask`` (no ``token_type_ids``).

    Load with ``AutoTokenizer.from_pretrained(folder)`` (after ``import cloud_hf``); build with
    [`from_scope_vocabulary`] (canonical SCOPE) or [`from_reference_files`] (the released reference tokenizer).

    Args:
        tokenizer_file (`str`, *optional*): path of a ``tokenizer.json`` serialization.
        tokenizer_object (`tokenizers.Tokenizer`, *optional*): a backend tokenizer to wrap.
        scope (`dict`, *optional*): the ``ScopeEncoder.to_dict()`` settings the strings must be encoded with.
    """

    vocab_files_names: ClassVar[dict[str, str]] = {"tokenizer_file": "tokenizer.json"}
    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]

    def __init__(
        self,
        tokenizer_file: str | None = None,
        scope: dict[str, Any] | None = None,
        cls_token: str = CLS_TOKEN,
        sep_token: str = SEP_TOKEN,
        pad_token: str = PAD_TOKEN,
        unk_token: str = UNK_TOKEN,
        mask_token: str = MASK_TOKEN,
        **kwargs: Any,
    ):
        # ``tokenizer_object`` (a backend to wrap) travels in kwargs, as for every TokenizersBackend: it is not a
        # setting that save_pretrained could store.
        if kwargs.get("tokenizer_object") is None and (tokenizer_file is None or not os.path.isfile(tokenizer_file)):
            raise ValueError(
                f"CloudTokenizerFast needs a tokenizer.json (got tokenizer_file={tokenizer_file!r}); build one with "
                "CloudTokenizerFast.from_scope_vocabulary or CloudTokenizerFast.from_reference_files"
            )
        if scope is not None and not (isinstance(scope, dict) and "mode" in scope):
            raise ValueError(f"scope must be a ScopeEncoder.to_dict() mapping with a 'mode' key, got {scope!r}")
        kwargs.pop("vocab", None)  # a tokenizer.json is the single source of truth
        super().__init__(
            tokenizer_file=tokenizer_file,
            scope=scope,
            cls_token=cls_token,
            sep_token=sep_token,
            pad_token=pad_token,
            unk_token=unk_token,
            mask_token=mask_token,
            **kwargs,
        )

    @classmethod
    def convert_to_native_format(cls, trust_remote_code: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Keep the saved ``tokenizer.json`` as is (it fully describes both backends)."""
        return kwargs

    @property
    def can_save_slow_tokenizer(self) -> bool:
        """There is no slow twin: the class name is saved as ``CloudTokenizerFast``."""
        return False

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` (the post-processor's format) from ids without specials."""
        output = [self.cls_token_id, *token_ids_0, self.sep_token_id]
        if token_ids_1 is not None:
            output += [*token_ids_1, self.sep_token_id]
        return output

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        """1 where [`build_inputs_with_special_tokens`] puts a special token, 0 on SCOPE tokens."""
        if already_has_special_tokens:
            return super().get_special_tokens_mask(token_ids_0, token_ids_1, already_has_special_tokens=True)
        mask = [1] + [0] * len(token_ids_0) + [1]
        if token_ids_1 is not None:
            mask += [0] * len(token_ids_1) + [1]
        return mask

    @property
    def scope_config(self) -> dict[str, Any] | None:
        """The SCOPE encoder settings (``ScopeEncoder.to_dict()``) the tokenizer was built for, or None."""
        return copy.deepcopy(self.init_kwargs.get("scope"))

    @classmethod
    def from_scope_vocabulary(
        cls,
        tokens: Iterable[str],
        scope_config: dict[str, Any],
        model_max_length: int = CANONICAL_MAX_LENGTH,
    ) -> CloudTokenizerFast:
        """Word-level tokenizer over a closed SCOPE vocabulary.

        Args:
            tokens: every token the SCOPE encoder can emit (e.g. ``cloud_hf.scope.canonical_vocabulary()``); ids
                follow the special tokens in the given order.
            scope_config: the ``ScopeEncoder.to_dict()`` settings recorded in the tokenizer config.
            model_max_length: longest sequence in tokens, [CLS] and [SEP] included.
        """
        vocabulary = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
        for position, token in enumerate(tokens):
            if not isinstance(token, str) or not token or token.split() != [token]:
                raise ValueError(f"SCOPE token #{position} ({token!r}) must be a non-empty string without whitespace")
            if token in vocabulary:
                raise ValueError(f"SCOPE token #{position} ({token!r}) appears twice or is a special token")
            vocabulary[token] = len(vocabulary)
        backend = Tokenizer(WordLevel(vocabulary, unk_token=UNK_TOKEN))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
        backend.post_processor = _cls_sep_post_processor(vocabulary[CLS_TOKEN], vocabulary[SEP_TOKEN])
        return cls(tokenizer_object=backend, scope=dict(scope_config), model_max_length=model_max_length)

    @classmethod
    def from_reference_files(
        cls,
        folder: str | os.PathLike,
        scope_config: dict[str, Any] | None = None,
        model_max_length: int = REFERENCE_MAX_LENGTH,
    ) -> CloudTokenizerFast:
        """The released reference tokenizer (BERT WordPiece over SCOPE) as a `CloudTokenizerFast`.

        Reads ``vocab.txt``, ``added_tokens.json``, ``special_tokens_map.json`` and ``tokenizer_config.json`` from
        `folder` and rebuilds the reference ``BertTokenizer`` pipeline (BERT normalizer and pre-tokenizer,
        WordPiece, fraction tokens ``0.0``..``1.0`` as added tokens), so ``input_ids`` equal
        ``BertTokenizer.from_pretrained(folder)``'s on any string, minus ``token_type_ids``.

        Args:
            folder: the reference tokenizer folder (e.g. the ``ckpt`` folder of ``ChangwenXu/CLOUD``).
            scope_config: SCOPE settings to record; defaults to ``ScopeEncoder(mode="reference").to_dict()``.
            model_max_length: longest sequence (the reference model has 64 positions).
        """
        folder = Path(folder)
        vocab_path = folder / "vocab.txt"
        if not vocab_path.is_file():
            raise FileNotFoundError(f"{folder}: no vocab.txt, not a reference (BERT WordPiece) tokenizer folder")
        lines = vocab_path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        vocabulary: dict[str, int] = {}
        for index, token in enumerate(lines):
            vocabulary.setdefault(token.rstrip("\r"), index)
        settings = _read_json(folder / "tokenizer_config.json")
        special_tokens = {**settings, **_read_json(folder / "special_tokens_map.json")}
        names = {name: str(special_tokens.get(name, default)) for name, default in
                 (("cls_token", CLS_TOKEN), ("sep_token", SEP_TOKEN), ("pad_token", PAD_TOKEN),
                  ("unk_token", UNK_TOKEN), ("mask_token", MASK_TOKEN))}
        for name, token in names.items():
            if token not in vocabulary:
                raise ValueError(f"{vocab_path}: the {name} {token!r} is not in the vocabulary")

        backend = Tokenizer(WordPiece(vocabulary, unk_token=names["unk_token"], continuing_subword_prefix="##",
                                      max_input_chars_per_word=100))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
            strip_accents=settings.get("strip_accents"),
            lowercase=settings.get("do_lower_case", True),
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in names.values()])

        added_tokens = _read_json(folder / "added_tokens.json")
        flags = settings.get("added_tokens_decoder", {})
        for token, token_id in sorted(added_tokens.items(), key=lambda item: item[1]):
            if token in vocabulary:
                continue
            if token_id != backend.get_vocab_size(with_added_tokens=True):
                raise ValueError(
                    f"{folder / 'added_tokens.json'}: token {token!r} has id {token_id}, but added tokens must follow "
                    f"the vocabulary contiguously (next free id {backend.get_vocab_size(with_added_tokens=True)})"
                )
            token_flags = flags.get(str(token_id), {})
            backend.add_tokens([AddedToken(
                token,
                single_word=token_flags.get("single_word", False),
                lstrip=token_flags.get("lstrip", False),
                rstrip=token_flags.get("rstrip", False),
                normalized=token_flags.get("normalized", True),
                special=token_flags.get("special", False),
            )])
        backend.post_processor = _cls_sep_post_processor(vocabulary[names["cls_token"]], vocabulary[names["sep_token"]])
        if scope_config is None:
            scope_config = reference_scope_config()
        return cls(tokenizer_object=backend, scope=dict(scope_config), model_max_length=model_max_length, **names)


def reference_scope_config() -> dict[str, Any]:
    """``ScopeEncoder(mode="reference").to_dict()``: the SCOPE settings of the released reference checkpoint."""
    from cloud_hf.scope import ScopeEncoder  # the encoder (pymatgen, moyopy) loads only where it is needed

    return ScopeEncoder(mode="reference").to_dict()


def build_canonical_tokenizer(model_max_length: int = CANONICAL_MAX_LENGTH) -> CloudTokenizerFast:
    """The canonical-SCOPE tokenizer of the repository's ``tokenizer/`` folder.

    Its vocabulary is [`SPECIAL_TOKENS`] followed by ``cloud_hf.scope.canonical_vocabulary()`` (every token the
    canonical encoder can emit, so no valid crystal gives [UNK]); its ``scope`` is the default
    ``ScopeEncoder(mode="canonical").to_dict()``.
    """
    from cloud_hf.scope import ScopeEncoder, canonical_vocabulary

    return CloudTokenizerFast.from_scope_vocabulary(
        canonical_vocabulary(), ScopeEncoder(mode="canonical").to_dict(), model_max_length=model_max_length
    )


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, ``{}`` where the file is absent; a clear error where it is malformed."""
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: malformed JSON ({error})") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(content).__name__}")
    return content


__all__ = ["SPECIAL_TOKENS", "CloudTokenizerFast", "build_canonical_tokenizer", "reference_scope_config"]
