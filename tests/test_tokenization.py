"""CloudTokenizerFast: the canonical tokenizer folder, the AutoTokenizer behaviour suite, the reference tokenizer."""

from __future__ import annotations

import ast
import csv
import filecmp
import gzip
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from transformers import (
    AutoTokenizer,
    BertTokenizer,
    DataCollatorForLanguageModeling,
    DataCollatorWithPadding,
)

import cloud_hf  # noqa: F401  (registers the auto classes)
from cloud_hf import CloudConfig, CloudTokenizerFast, ScopeEncoder
from cloud_hf.scope import canonical_vocabulary
from cloud_hf.tokenization_cloud import SPECIAL_TOKENS

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO_ROOT / "tokenizer"
NACL = "cF m-3m SG225 Na 4a Cl 4b"
PEROVSKITE = "cP m-3m SG221 Ti 1a Sr 1b O 3c"
STRINGS = [NACL, PEROVSKITE, "aP -1 SG2 O 2i O 2i Si 2i", "hP 6/mmm SG191 Mg 1a B 2d"]


@pytest.fixture(scope="module")
def tokenizer() -> CloudTokenizerFast:
    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


# --- the repository's canonical tokenizer folder -------------------------------------------------------------


def test_auto_tokenizer_loads_the_canonical_tokenizer(tokenizer):
    assert type(tokenizer) is CloudTokenizerFast
    assert tokenizer.model_input_names == ["input_ids", "attention_mask"]
    assert tokenizer.scope_config == ScopeEncoder(mode="canonical").to_dict()
    assert tokenizer.scope_config["mode"] == "canonical"
    assert len(tokenizer) == len(SPECIAL_TOKENS) + len(canonical_vocabulary())
    assert len(tokenizer) == CloudConfig().vocab_size, "CloudConfig's default vocab_size must match tokenizer/"
    assert [tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id,
            tokenizer.mask_token_id] == [0, 1, 2, 3, 4]


def test_build_script_regenerates_the_committed_folder_byte_for_byte(tmp_path):
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "build_tokenizer.py"), "--output", str(tmp_path)],
                   check=True, capture_output=True)
    committed = sorted(p.name for p in TOKENIZER_DIR.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == committed
    _, mismatch, errors = filecmp.cmpfiles(TOKENIZER_DIR, tmp_path, committed, shallow=False)
    assert mismatch == [] and errors == [], f"tokenizer/ is stale; rerun scripts/build_tokenizer.py ({mismatch})"


def test_every_vocabulary_token_is_one_id_in_order(tokenizer):
    vocabulary = canonical_vocabulary()
    ids = tokenizer(" ".join(vocabulary))["input_ids"]
    assert ids == [tokenizer.cls_token_id, *range(len(SPECIAL_TOKENS), len(tokenizer)), tokenizer.sep_token_id]


def test_canonical_strings_of_built_crystals_have_no_unknown_tokens(tokenizer):
    lattice = Lattice.cubic(4.0)
    crystals = [
        Structure.from_spacegroup(225, Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure.from_spacegroup(221, lattice, ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
        Structure.from_spacegroup(194, Lattice.hexagonal(3.2, 5.2), ["Mg"], [[1 / 3, 2 / 3, 0.25]]),
        Structure(Lattice.from_parameters(3, 4, 5, 80, 85, 95), ["Si", "O", "O"],
                  [[0.1, 0.2, 0.3], [0.4, 0.15, 0.7], [0.8, 0.6, 0.05]]),
    ]
    encoder = ScopeEncoder(mode="canonical")
    for crystal in crystals:
        scope = encoder.encode(crystal)
        ids = tokenizer(scope)["input_ids"]
        assert tokenizer.unk_token_id not in ids, scope
        assert len(ids) == len(scope.split()) + 2


def test_canonical_strings_of_real_crystals_have_no_unknown_tokens(tokenizer, shared_data):
    path = shared_data / "structures" / "mp_20" / "pilot_test.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with gzip.open(path, "rt") as handle:
        rows = [row for _, row in zip(range(150), csv.DictReader(handle))]
    encoder = ScopeEncoder(mode="canonical")
    strings = [encoder.encode(Structure.from_str(row["cif"], fmt="cif")) for row in rows]
    encodings = tokenizer(strings)["input_ids"]
    unknown = [s for s, ids in zip(strings, encodings) if tokenizer.unk_token_id in ids]
    assert unknown == []
    assert max(map(len, encodings)) <= tokenizer.model_max_length


def test_unknown_token_maps_to_unk(tokenizer):
    ids = tokenizer("cF m-3m SG225 Xx 4a")["input_ids"]
    assert ids[4] == tokenizer.unk_token_id and ids.count(tokenizer.unk_token_id) == 1


# --- AutoTokenizer behaviour suite -----------------------------------------------------------------------


def test_save_and_reload_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded) is CloudTokenizerFast
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded.scope_config == tokenizer.scope_config
    assert reloaded.model_max_length == tokenizer.model_max_length
    assert reloaded.all_special_tokens == tokenizer.all_special_tokens
    assert reloaded(STRINGS)["input_ids"] == tokenizer(STRINGS)["input_ids"]
    assert (tmp_path / "tokenizer.json").is_file() and not (tmp_path / "vocab.txt").exists()


def test_pickle_round_trip(tokenizer):
    restored = pickle.loads(pickle.dumps(tokenizer))
    assert restored(STRINGS, padding=True)["input_ids"] == tokenizer(STRINGS, padding=True)["input_ids"]
    assert restored.scope_config == tokenizer.scope_config


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_side(tokenizer, side):
    tokenizer.padding_side = side
    try:
        batch = tokenizer([NACL, PEROVSKITE], padding=True)
    finally:
        tokenizer.padding_side = "right"
    short_ids, long_ids = batch["input_ids"]
    short_mask = batch["attention_mask"][0]
    pad = tokenizer.pad_token_id
    assert len(short_ids) == len(long_ids) == 11
    expected = [pad, pad] + tokenizer(NACL)["input_ids"] if side == "left" else tokenizer(NACL)["input_ids"] + [pad, pad]
    assert short_ids == expected
    assert short_mask == ([0, 0] + [1] * 9 if side == "left" else [1] * 9 + [0, 0])


def test_pad_to_multiple_of_and_max_length(tokenizer):
    batch = tokenizer(STRINGS, padding=True, pad_to_multiple_of=8)
    assert {len(ids) for ids in batch["input_ids"]} == {16}
    fixed = tokenizer(NACL, padding="max_length", max_length=20)
    assert len(fixed["input_ids"]) == 20 and sum(fixed["attention_mask"]) == 9


def test_truncation_keeps_cls_and_sep(tokenizer):
    ids = tokenizer(PEROVSKITE, truncation=True, max_length=5)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "cP", "m-3m", "SG221", "[SEP]"]
    tokenizer.truncation_side = "left"
    try:
        left = tokenizer(PEROVSKITE, truncation=True, max_length=5)["input_ids"]
    finally:
        tokenizer.truncation_side = "right"
    assert tokenizer.convert_ids_to_tokens(left) == ["[CLS]", "1b", "O", "3c", "[SEP]"]


def test_truncation_defaults_to_model_max_length(tokenizer):
    long_string = " ".join(["aP", "1", "SG1"] + ["O 1a"] * 100)
    ids = tokenizer(long_string, truncation=True)["input_ids"]
    assert len(ids) == tokenizer.model_max_length == 128
    assert ids[-1] == tokenizer.sep_token_id


def test_special_tokens_mask(tokenizer):
    encoding = tokenizer(NACL, return_special_tokens_mask=True)
    assert encoding["special_tokens_mask"] == [1] + [0] * 7 + [1]
    ids = encoding["input_ids"]
    assert tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True) == [1] + [0] * 7 + [1]
    assert tokenizer.get_special_tokens_mask(ids[1:-1]) == [1] + [0] * 7 + [1]
    assert tokenizer.build_inputs_with_special_tokens(ids[1:-1]) == ids


def test_return_tensors(tokenizer):
    pt = tokenizer(STRINGS, padding=True, return_tensors="pt")
    np_batch = tokenizer(STRINGS, padding=True, return_tensors="np")
    assert set(pt.keys()) == {"input_ids", "attention_mask"}
    assert isinstance(pt["input_ids"], torch.Tensor) and pt["input_ids"].dtype == torch.long
    assert isinstance(np_batch["input_ids"], np.ndarray) and np_batch["input_ids"].shape == (4, 11)
    assert np.array_equal(pt["input_ids"].numpy(), np_batch["input_ids"])
    assert np.array_equal(pt["attention_mask"].numpy(), np_batch["attention_mask"])


def test_ids_and_tokens_are_reversible(tokenizer):
    vocabulary = list(SPECIAL_TOKENS) + canonical_vocabulary()
    ids = tokenizer.convert_tokens_to_ids(vocabulary)
    assert ids == list(range(len(vocabulary)))
    assert tokenizer.convert_ids_to_tokens(ids) == vocabulary
    for string in STRINGS:
        encoded = tokenizer(string)["input_ids"]
        assert tokenizer.decode(encoded, skip_special_tokens=True) == string
        assert tokenizer.tokenize(string) == string.split()


def test_batch_equals_single(tokenizer):
    batch = tokenizer(STRINGS)
    for index, string in enumerate(STRINGS):
        single = tokenizer(string)
        assert batch["input_ids"][index] == single["input_ids"]
        assert batch["attention_mask"][index] == single["attention_mask"]


def test_whitespace_variants_give_the_same_ids(tokenizer):
    assert tokenizer("  cF  m-3m\tSG225 Na 4a\nCl 4b ")["input_ids"] == tokenizer(NACL)["input_ids"]


def test_data_collators(tokenizer):
    features = [tokenizer(s) for s in STRINGS]
    padded = DataCollatorWithPadding(tokenizer)(features)
    assert padded["input_ids"].shape == (4, 11)
    torch.manual_seed(0)
    masked = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.5)(features)
    labels, inputs = masked["labels"], masked["input_ids"]
    assert (labels[padded["attention_mask"] == 0] == -100).all()
    assert (labels[:, 0] == -100).all(), "special tokens are never masked"
    assert (inputs == tokenizer.mask_token_id).any()


# --- construction errors -----------------------------------------------------------------------------------


def test_constructor_without_a_tokenizer_file_is_a_clear_error():
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        CloudTokenizerFast()


@pytest.mark.parametrize(
    ("tokens", "reason"),
    [(["Na", "Na"], "appears twice"), (["Na", "[CLS]"], "special token"), (["Na Cl"], "without whitespace"),
     ([""], "non-empty")],
)
def test_from_scope_vocabulary_rejects_bad_vocabularies(tokens, reason):
    with pytest.raises(ValueError, match=reason):
        CloudTokenizerFast.from_scope_vocabulary(tokens, {"mode": "canonical"})


def test_scope_config_must_name_a_mode():
    with pytest.raises(ValueError, match="mode"):
        CloudTokenizerFast.from_scope_vocabulary(["Na"], {"version": "x"})


# --- the reference (BERT WordPiece) tokenizer --------------------------------------------------------------


def test_reference_tokenizer_matches_bert_tokenizer_on_every_reference_string(reference_data, reference_scope_strings, tmp_path):
    folder = reference_data / "tokenizer"
    reference = BertTokenizer.from_pretrained(folder)
    ours = CloudTokenizerFast.from_reference_files(folder)
    ours.save_pretrained(tmp_path)
    ours = AutoTokenizer.from_pretrained(tmp_path)
    assert type(ours) is CloudTokenizerFast and len(ours) == 564
    assert ours.scope_config == ScopeEncoder(mode="reference").to_dict()
    assert ours.model_max_length == 64
    strings = reference_scope_strings
    assert len(strings) == 16276
    expected, actual = reference(strings)["input_ids"], ours(strings)["input_ids"]
    mismatches = [s for s, a, b in zip(strings, expected, actual) if a != b]
    assert mismatches == []
    assert reference.unk_token_id not in {i for ids in actual for i in ids}
    odd = ["Og 0.123 |Na", "  1 2  a ", "1.0 0.5 x", "[MASK] Na [PAD]", "ÄÖ 0.5"]
    assert reference(odd)["input_ids"] == ours(odd)["input_ids"]
    padded_reference = reference(strings[:32], padding="max_length", max_length=64)
    padded_ours = ours(strings[:32], padding="max_length", max_length=64)
    assert padded_reference["input_ids"] == padded_ours["input_ids"]
    assert padded_reference["attention_mask"] == padded_ours["attention_mask"]


def test_reference_tokenizer_needs_a_vocab_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"vocab\.txt"):
        CloudTokenizerFast.from_reference_files(tmp_path)


HEAVY_MODULES = ("pymatgen", "moyopy", "spglib", "datasets", "pandas", "ase", "matplotlib")


def loaded_heavy_modules(code: str, argv0: str | None = None) -> list[str]:
    """The heavy modules (and torch) in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    setup = f"import sys; sys.argv[0] = {argv0!r}; " if argv0 else ""
    probe = f"print([m for m in {(*HEAVY_MODULES, 'torch')!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", f"{setup}import sys; {code}; {probe}"], capture_output=True,
                            text=True, check=True, cwd=Path(__file__).resolve().parents[1],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def test_importing_the_package_or_the_tokenizer_loads_no_heavy_dependency():
    assert loaded_heavy_modules("import cloud_hf") == ["torch"]
    assert loaded_heavy_modules("from cloud_hf.tokenization_cloud import CloudTokenizerFast") == ["torch"]
    assert loaded_heavy_modules("import cloud_hf; cloud_hf.CloudTokenizerFast.from_pretrained('tokenizer')") == ["torch"]


def test_the_command_line_defers_torch_to_the_commands_that_load_models():
    assert loaded_heavy_modules("import cloud_hf.cli; cloud_hf.cli.build_parser()", argv0="/usr/bin/cloud-hf") == []
