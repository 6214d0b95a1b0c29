"""transformers' own ``TokenizerTesterMixin`` and ``TokenizersBackendTesterMixin`` on ``CloudTokenizerFast`` (the
repository's canonical-SCOPE tokenizer). Every skip below carries its reason."""

from __future__ import annotations

import unittest
from pathlib import Path
from typing import ClassVar

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
    # Skipped (TokenizersExtractor rebuilds a tokenizer from a bare vocabulary): one class serves two backends, the
    # canonical WordLevel and the reference BERT WordPiece pipeline, which a vocabulary alone cannot tell apart, so
    # CloudTokenizerFast is built from a full tokenizer.json only (and says so in its error).
    test_tokenizer_from_extractor = False
    # integration oracle: rock salt, one id per SCOPE token in the committed tokenizer/ vocabulary
    integration_test_input_string = "cF m-3m SG225 Na 4a Cl 4b"
    integration_expected_tokens: ClassVar[list[str]] = ["cF", "m-3m", "SG225", "Na", "4a", "Cl", "4b"]
    integration_expected_token_ids: ClassVar[list[int]] = [17, 50, 275, 291, 402, 297, 410]
    integration_expected_decoded_text = "cF m-3m SG225 Na 4a Cl 4b"


class CloudTokenizersBackendTest(backend_common.TokenizersBackendTesterMixin, unittest.TestCase):
    tokenizer_class = CloudTokenizerFast
    rust_tokenizer_class = CloudTokenizerFast
    from_pretrained_id = CANONICAL_TOKENIZER
