"""Reference checkpoint conversion: BertForMaskedLM + BERT tokenizer -> CloudForMaskedLM + CloudTokenizerFast."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM, BertTokenizer

from cloud_hf import CloudForMaskedLM, CloudTokenizerFast, ScopeEncoder, convert_reference_checkpoint
from cloud_hf.cli import main as cli_main

REFERENCE_VOCAB_SIZE = 564  # 463 WordPiece entries + 101 fraction tokens


def write_reference_checkpoint(folder: Path, reference_data: Path, num_layers: int = 2) -> BertForMaskedLM:
    """A random BertForMaskedLM of the reference config (64 × heads hidden, 4× intermediate, 64 positions, one token
    type, vocab 30522), every weight perturbed so that a swapped or dropped tensor changes the logits."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=128, num_hidden_layers=num_layers, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=64, type_vocab_size=1)
    model = BertForMaskedLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    model.eval().save_pretrained(folder)
    for path in (reference_data / "tokenizer").iterdir():
        shutil.copy(path, folder / path.name)
    return model


@pytest.fixture(scope="module")
def converted(reference_data, tmp_path_factory) -> tuple[Path, Path, BertForMaskedLM]:
    root = tmp_path_factory.mktemp("conversion")
    source, destination = root / "reference", root / "converted"
    reference = write_reference_checkpoint(source, reference_data)
    assert convert_reference_checkpoint(source, destination) == destination
    return source, destination, reference


def test_converted_folder_is_a_safetensors_cloud_checkpoint(converted):
    _, destination, _ = converted
    assert sorted(p.name for p in destination.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"
    ]
    config = json.loads((destination / "config.json").read_text())
    assert config["model_type"] == "cloud" and config["architectures"] == ["CloudForMaskedLM"]
    assert config["vocab_size"] == REFERENCE_VOCAB_SIZE and config["pad_token_id"] == 1
    assert config["scope"] == ScopeEncoder(mode="reference").to_dict()
    assert "token_type" not in " ".join(load_file(destination / "model.safetensors"))


def test_converted_logits_equal_the_reference_model(converted, reference_scope_strings):
    source, destination, _ = converted
    reference = BertForMaskedLM.from_pretrained(source).eval()
    model = AutoModelForMaskedLM.from_pretrained(destination).eval()
    assert type(model) is CloudForMaskedLM
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in reference.parameters())
    strings = reference_scope_strings[::200]
    reference_inputs = BertTokenizer.from_pretrained(source)(strings, padding="max_length", max_length=64,
                                                            return_tensors="pt")
    ours = AutoTokenizer.from_pretrained(destination)(strings, padding=True, return_tensors="pt")
    with torch.no_grad():
        unpadded_string = reference_inputs["input_ids"][:1, : int(reference_inputs["attention_mask"][0].sum())]
        torch.testing.assert_close(model(input_ids=unpadded_string).logits,
                                   reference(input_ids=unpadded_string).logits[..., :REFERENCE_VOCAB_SIZE],
                                   atol=1e-5, rtol=0)
        expected = reference(**reference_inputs).logits[..., :REFERENCE_VOCAB_SIZE]
        same_padding = model(input_ids=reference_inputs["input_ids"],
                             attention_mask=reference_inputs["attention_mask"]).logits
        dynamic_padding = model(**ours).logits
    reference_real = reference_inputs["attention_mask"].bool()  # padding positions are not computed by cloud-hf
    assert (same_padding[reference_real] - expected[reference_real]).abs().max().item() <= 1e-5
    length = ours["input_ids"].shape[1]
    real = ours["attention_mask"].bool()
    assert (dynamic_padding[real] - expected[:, :length][real]).abs().max().item() <= 1e-5


def test_converted_tokenizer_equals_the_reference_tokenizer_on_every_reference_string(converted, reference_scope_strings):
    source, destination, _ = converted
    tokenizer = AutoTokenizer.from_pretrained(destination)
    assert type(tokenizer) is CloudTokenizerFast and len(tokenizer) == REFERENCE_VOCAB_SIZE
    assert tokenizer.scope_config["mode"] == "reference" and tokenizer.model_max_length == 64
    strings = reference_scope_strings
    expected = BertTokenizer.from_pretrained(source)(strings)["input_ids"]
    actual = tokenizer(strings)["input_ids"]
    mismatches = sum(a != b for a, b in zip(expected, actual))
    assert (mismatches, len(strings)) == (0, 16276)


def test_pickled_weights_need_explicit_permission(converted, tmp_path):
    source, destination, _ = converted
    pickled = tmp_path / "pickled"
    shutil.copytree(source, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="allow_pickle"):
        convert_reference_checkpoint(pickled, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    convert_reference_checkpoint(pickled, tmp_path / "allowed", allow_pickle=True)
    expected = load_file(destination / "model.safetensors")
    actual = load_file(tmp_path / "allowed" / "model.safetensors")
    assert expected.keys() == actual.keys() and all(torch.equal(expected[k], actual[k]) for k in expected)


def test_unexpected_weights_are_an_error_not_silently_dropped(converted, tmp_path):
    source, _, _ = converted
    tampered = tmp_path / "tampered"
    shutil.copytree(source, tampered)
    weights = load_file(tampered / "model.safetensors")
    weights["bert.encoder.layer.7.output.dense.weight"] = torch.zeros(1)
    save_file(weights, tampered / "model.safetensors")
    with pytest.raises(ValueError, match=r"unexpected weights.*layer\.7"):
        convert_reference_checkpoint(tampered, tmp_path / "out")


def test_non_bert_source_is_a_clear_error(converted, tmp_path):
    source, _, _ = converted
    other = tmp_path / "other"
    shutil.copytree(source, other)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "roberta"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type is 'roberta'"):
        convert_reference_checkpoint(other, tmp_path / "out")


def test_cli_converts_and_reports_failures(converted, tmp_path, capsys):
    source, destination, _ = converted
    assert cli_main(["convert-reference", str(source), str(tmp_path / "cli")]) == 0
    assert "converted" in capsys.readouterr().out
    assert (tmp_path / "cli" / "model.safetensors").read_bytes() == (destination / "model.safetensors").read_bytes()
    assert cli_main(["convert-reference", str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_converted_reference_gets_a_processor_rebuilt_from_its_config(converted):
    """The converted folder has no processor_config.json: its processor comes from config.json's SCOPE settings."""
    from transformers import AutoProcessor

    from cloud_hf.processing_cloud import CloudProcessor

    destination = converted[1]
    assert not (destination / "processor_config.json").exists()
    processor = AutoProcessor.from_pretrained(destination)
    assert isinstance(processor, CloudProcessor)
    assert processor.scope["mode"] == "reference" and processor.max_length == 64
    batch = processor(scopes=["1 6 a O D D a D O D b O O O c O O O d O O O e O O O 0 | 4a 4b | Na 0.5 Cl 0.5"])
    assert batch.errors == [None] and batch["input_ids"][0][0] == processor.tokenizer.cls_token_id
