"""The ``cloud-hf`` command line itself: ``--version``, plain ``--help``, one-line argument errors with exit code 2."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from cloud_hf.cli import build_parser, main, plain_text


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"cloud-hf {importlib.metadata.version('cloud-hf')}"


@pytest.mark.parametrize("command", ["scope", "predict", "convert-reference"])
def test_help_has_no_restructured_text_markup(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    shown = capsys.readouterr().out
    assert "``" not in shown and ":func:" not in shown and ":class:" not in shown
    assert f"cloud-hf {command}" in shown


def test_plain_text_keeps_the_words():
    assert plain_text("see :func:`cloud_hf.inputs.collect_crystals` and ``scope``::") == (
        "see cloud_hf.inputs.collect_crystals and scope:"
    )


@pytest.fixture()
def rocksalt_cif(tmp_path) -> Path:
    path = tmp_path / "NaCl.cif"
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(path))
    return path


def run_cli(capsys, *args: str) -> tuple[int, list[str]]:
    """``cloud-hf ARGS`` in this process: the exit code and the lines on stderr (an exception fails the test)."""
    code = main(list(args))
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("temperature", ["0", "-5", "nan"])
def test_bad_temperatures_are_a_one_line_error(rocksalt_cif, temperature, capsys):
    code, errors = run_cli(capsys, "predict", str(rocksalt_cif), "--temperatures", "300", temperature)
    assert code == 2
    assert errors == [f"error: --temperatures must be finite and > 0 K, got [{float(temperature)}]"]


def test_a_missing_model_folder_says_the_folder_does_not_exist(rocksalt_cif, tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    code, errors = run_cli(capsys, "predict", str(rocksalt_cif), "--model", str(missing))
    assert code == 2
    assert errors == [f"error: cannot load the model {missing}: the folder does not exist"]


@pytest.mark.parametrize("content", [{"config.json": "{not json"}, {"config.json": '{"model_type": "cloud"}'},
                                     {"pytorch_model.bin": "not a pickle"}])
def test_a_bad_model_folder_is_a_one_line_error(rocksalt_cif, tmp_path, content, capsys):
    folder = tmp_path / "bad_model"
    folder.mkdir()
    for name, text in content.items():
        (folder / name).write_text(text)
    code, errors = run_cli(capsys, "predict", str(rocksalt_cif), "--model", str(folder))
    assert code == 2
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot load the model {folder}: "), errors
