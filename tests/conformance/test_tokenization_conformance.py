"""transformers' own ``TokenizerTesterMixin`` and ``TokenizersBackendTesterMixin`` on ``CloudTokenizerFast`` (the
repository's canonical-SCOPE tokenizer). Every skip below carries its reason."""

from __future__ import annotations

import unittest
from pathlib import Path

from _suites import suite

import cloud_hf  # noqa: F401  (registers the tokenizer with AutoTokenizer)
from cloud_hf import CloudTokenizerFast

tokenization_common = suite("test_tokenization_common")
backend_common = suite("test_tokenizers_backend_mixin")

CANONICAL_TOKENIZER = str(Path(__file__).resolve().parents[2] / "tokenizer")


class CloudTokenizerTest(tokenization_common.TokenizerTesterMixin, unittest.TestCase):
    tokenizer_class = CloudTokenizerFast
    rust_tokenizer_class = CloudTokenizerFast
    from_pretrained_id = CANONICAL_TOKENIZER
    test_seq2seq = False  # no encoder-decoder use: SCOPE strings are single sequences
    test_sentencepiece = False


class CloudTokenizersBackendTest(backend_common.TokenizersBackendTesterMixin, unittest.TestCase):
    tokenizer_class = CloudTokenizerFast
    rust_tokenizer_class = CloudTokenizerFast
    from_pretrained_id = CANONICAL_TOKENIZER
