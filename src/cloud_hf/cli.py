"""The ``cloud-hf`` command line: one sub-command per job (``scope``, ``convert-reference``, ``predict``).

Each sub-command lives in ``cloud_hf.commands.<name>`` and exposes ``add_parser(subparsers)``, which
registers its arguments and sets ``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import sys

COMMAND_MODULES = ("scope", "convert", "predict")


def plain_text(docstring: str) -> str:
    """A docstring as ``--help`` shows it: reST roles (``:func:`x` ``) and literals (````x````) as plain ``x``."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", docstring)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


def package_version() -> str:
    """The installed cloud-hf version (``unknown`` when run from a source tree that is not installed)."""
    try:
        return importlib.metadata.version("cloud-hf")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command registered."""
    parser = argparse.ArgumentParser(prog="cloud-hf", description=plain_text(__doc__.splitlines()[0]))
    parser.add_argument("--version", action="version", version=f"cloud-hf {package_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cloud_hf.commands.{name}")
        except ModuleNotFoundError as error:  # a sub-command not built yet
            if error.name != f"cloud_hf.commands.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cloud-hf`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
