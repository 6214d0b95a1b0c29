"""Module attributes that load their defining module on first access (PEP 562), so heavy imports wait for use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    module_name: str, namespace: dict[str, Any], sources: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for module ``module_name`` whose globals are ``namespace``: attribute ``name`` of
    ``sources`` is imported from module ``sources[name]`` when first read, then cached in ``namespace``."""

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(sources[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(sources))

    return __getattr__, __dir__
