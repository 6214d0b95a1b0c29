"""Import the transformers common test suites fetched by ``fetch_transformers_tests.py``, or skip with the reason."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest
from fetch_transformers_tests import cache_root, package_name, suites_folder, transformers_version


def suite(name: str) -> ModuleType:
    """``<package>.<name>`` from the cache (e.g. ``test_modeling_common``); a module-level skip where absent."""
    if not (suites_folder() / f"{name}.py").is_file():
        pytest.skip(
            f"transformers {transformers_version()} test suites not found in {suites_folder()}: run "
            "`python tests/conformance/fetch_transformers_tests.py` (needs the network once)",
            allow_module_level=True,
        )
    if str(cache_root()) not in sys.path:
        sys.path.insert(0, str(cache_root()))
    return importlib.import_module(f"{package_name()}.{name}")
