"""Fetch the common test suites of the installed ``transformers`` release into a cache, for ``tests/conformance/``.

    python tests/conformance/fetch_transformers_tests.py      # prints the folder; exit code 1 if impossible

Runs ``pip download --no-deps --no-binary :all: transformers==<installed version>`` and extracts the sdist's
``tests/`` folder into ``$CLOUD_HF_CONFORMANCE_CACHE`` (default ``~/.cache/cloud-hf/conformance``) as the package
``transformers_<version>_tests``. The sdist ships the top-level ``tests/test_*_common.py`` mixins but not three helper
modules they import; those are written as small stand-ins (see ``STAND_INS``), each saying what it replaces.
Needs the network once; the tests themselves never download anything and skip, with the reason, without the cache.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

STAND_INS = {
    # test_modeling_common imports ExportTesterMixin from tests/exporters (not in the sdist); the export checks
    # with a padded mask live in tests/test_modeling_export.py instead.
    "exporters/test_export.py": "class ExportTesterMixin:\n    \"\"\"Stand-in: tests/exporters is not in the sdist.\"\"\"\n",
    # GenerationTesterMixin (tests/generation, not in the sdist): CLOUD models do not generate.
    "generation/test_utils.py": "class GenerationTesterMixin:\n    \"\"\"Stand-in: tests/generation is not in the sdist.\"\"\"\n",
    # ConfigTester.check_config_arguments_init reads config_common_kwargs from tests/utils (not in the sdist):
    # a few of PreTrainedConfig's common fields, each set away from its default.
    "utils/test_configuration_utils.py": (
        "config_common_kwargs = {\n"
        "    'return_dict': False, 'output_hidden_states': True, 'output_attentions': True, 'dtype': 'float16',\n"
        "    'tie_word_embeddings': False, 'chunk_size_feed_forward': 5, 'architectures': ['BertModel'],\n"
        "    'id2label': {0: 'label'}, 'label2id': {'label': '0'}, 'problem_type': 'regression',\n"
        "}\n"
    ),
    # TokenizerTesterMixin.setUpClass reads tests/fixtures/sample_text.txt (not in the sdist): SCOPE strings.
    "fixtures/sample_text.txt": "cF m-3m SG225 Na 4a Cl 4b\n\ncP m-3m SG221 Ti 1a Sr 1b O 3d\n\nhP 6mm SG186 N 2b Ga 2b\n",
}


def transformers_version() -> str:
    return importlib.metadata.version("transformers")


def cache_root() -> Path:
    return Path(os.environ.get("CLOUD_HF_CONFORMANCE_CACHE", Path.home() / ".cache" / "cloud-hf" / "conformance"))


def package_name(version: str | None = None) -> str:
    """``transformers_<version>_tests``: transformers' ``get_tests_dir()`` looks for a folder ending in ``tests``."""
    return "transformers_" + (version or transformers_version()).replace(".", "_") + "_tests"


def suites_folder() -> Path:
    """``<cache>/<package>``: where the extracted suites live (present only after a successful fetch)."""
    return cache_root() / package_name()


def fetch() -> Path:
    version = transformers_version()
    target = suites_folder()
    if (target / "test_modeling_common.py").is_file():
        return target
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"transformers=={version}", "-d", download],
            check=True,
        )
        (sdist,) = Path(download).glob("transformers-*.tar.gz")
        prefix = f"transformers-{version}/tests/"
        with tarfile.open(sdist) as archive:
            members = [member for member in archive.getmembers() if member.name.startswith(prefix) and member.isfile()]
            staging = Path(download) / "staging"
            for member in members:
                member.name = member.name[len(prefix):]
                archive.extract(member, staging, filter="data")
        for relative, text in STAND_INS.items():
            path = staging / relative
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        for folder in [staging, *[p for p in staging.rglob("*") if p.is_dir()]]:
            (folder / "__init__.py").touch()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging, target)
    return target


if __name__ == "__main__":
    try:
        print(fetch())
    except (subprocess.CalledProcessError, OSError, ValueError) as error:
        # not fatal: without the suites tests/conformance skips, saying why (e.g. on a machine without PyPI access)
        print(f"could not fetch the transformers {transformers_version()} test suites ({error}); "
              "tests/conformance will skip", file=sys.stderr)
