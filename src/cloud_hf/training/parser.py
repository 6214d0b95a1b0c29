"""Read a recipe's typed options from a YAML file and the command line, with ``HfArgumentParser``.

``python recipes/NAME.py [CONFIG.yaml] [--option value ...]``: the YAML file (sections ``data``, ``model``
and ``training`` for the three dataclasses, other keys at the top level) sets the values, the command line
overrides them (``--option value``, or ``--section.option value``), and every option not given keeps its
dataclass default. An unknown key or flag is a :class:`~cloud_hf.errors.CloudConfigError` naming the key
and the closest valid one; ``--help`` lists every option with its type, value and help line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml
from transformers import HfArgumentParser

from cloud_hf.errors import CloudConfigError, CloudError

SECTIONS = ("data", "model", "training")
"""YAML section of each of a recipe's three dataclasses, in the order they are given."""

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
NONE_WORDS = ("null", "none", "None", "~")
"""Command-line values that clear an option whose default is None (``--checkpoint null``: from scratch)."""


def closest(key: str, valid: Sequence[str]) -> str:
    """`` (did you mean 'NAME'?)`` with the valid key closest to ``key`` (difflib), or '' when none is close."""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with the recipe's docstring as written and each option's value (default or YAML)."""


class RecipeArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` for a recipe's ``(data, model, training)`` dataclasses, YAML first, then flags.

    Errors are raised as :class:`CloudConfigError` (argparse would end the process); prefixes of flags are
    not accepted (``--max_fold`` is an error that suggests ``--max_folds``, not a silent match).
    """

    def __init__(self, dataclass_types: Sequence[type], **kwargs: Any) -> None:
        if len(dataclass_types) != len(SECTIONS):
            raise ValueError(f"a recipe has {len(SECTIONS)} option dataclasses {SECTIONS}, got {len(dataclass_types)}")
        kwargs.setdefault("usage", "%(prog)s [CONFIG.yaml] [--option value ...]")
        super().__init__(dataclass_types, allow_abbrev=False, **kwargs)
        self.section_fields = {section: [f.name for f in dataclasses.fields(cls) if f.init]
                               for section, cls in zip(SECTIONS, dataclass_types)}
        self.options = {name for names in self.section_fields.values() for name in names}
        defaults = {f.name: f.default for cls in dataclass_types for f in dataclasses.fields(cls)}
        self.nullable = {name for cls in dataclass_types for name, hint in get_type_hints(cls).items()
                         if get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
                         and not isinstance(defaults.get(name), str)}

    def error(self, message: str) -> None:  # argparse calls this instead of raising
        raise CloudConfigError(f"{self.prog}: {message}")

    def yaml_values(self, path: str | Path) -> dict[str, Any]:
        """The options of a YAML (or JSON) file as ``{option: value}``, every key checked against the dataclasses."""
        try:
            content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise CloudConfigError(f"cannot read the configuration file {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise CloudConfigError(f"{path}: not valid YAML: {error}") from None
        content = {} if content is None else content
        if not isinstance(content, dict):
            raise CloudConfigError(f"{path}: a configuration is a mapping of options, got {type(content).__name__}")
        values: dict[str, Any] = {}
        for key, value in content.items():
            if key in SECTIONS and isinstance(value, dict):
                for name, entry in value.items():
                    self.check_key(name, self.section_fields[key], f"{path}: unknown key {key}.{name}")
                    values[name] = entry
            else:
                self.check_key(key, sorted(self.options | set(SECTIONS)), f"{path}: unknown key {key}")
                values[key] = value
        return values

    def check_key(self, key: str, valid: Sequence[str], message: str) -> None:
        """Raise ``CloudConfigError(message + suggestion)`` unless ``key`` is one of ``valid``."""
        if key in valid:
            return
        section = next((s for s, names in self.section_fields.items() if key in names), None)
        hint = f" (it is an option of section {section!r})" if section else closest(key, valid)
        raise CloudConfigError(f"{message}{hint}")

    def flag_names(self, arguments: Sequence[str]) -> tuple[list[str], dict[str, None]]:
        """``arguments`` with ``--section.option`` written ``--option`` (checked against that section), and
        the options set to None by ``--option null`` (or ``none``, ``~``), taken out of the arguments.

        Only options that may be None and have no text default can be cleared so (``--checkpoint null``: train
        from scratch); ``--report_to none`` stays the string ``"none"``.
        """
        names: list[str] = []
        cleared: dict[str, None] = {}
        for argument in arguments:
            flag, equals, value = argument.partition("=")
            section, dot, name = flag[2:].partition(".")
            if flag.startswith("--") and dot and section in SECTIONS:
                self.check_key(name, self.section_fields[section], f"unknown option --{section}.{name}")
                flag, argument = f"--{name}", f"--{name}{equals}{value}"
            flag_action = self._option_string_actions.get(flag) if equals else None
            previous = self._option_string_actions.get(names[-1]) if names and not equals else None
            if flag_action is not None and flag_action.dest in self.nullable and value in NONE_WORDS:
                cleared[flag_action.dest] = None  # --option=null
                continue
            if previous is not None and previous.dest in self.nullable and argument in NONE_WORDS:
                cleared[previous.dest] = None  # --option null
                names.pop()
                continue
            names.append(argument)
        return names, cleared

    def parse_recipe(self, argv: Sequence[str]) -> tuple[Any, ...]:
        """``(data, model, training)`` options from ``[CONFIG.yaml] [--option value ...]``."""
        argv = list(argv)
        config_file = argv.pop(0) if argv and argv[0].lower().endswith(CONFIG_SUFFIXES) else None
        if config_file is not None:
            self.set_defaults(**self.typed_defaults(self.yaml_values(config_file)))
        arguments, cleared = self.flag_names(argv)
        self.set_defaults(**cleared)
        try:
            *outputs, remaining = self.parse_args_into_dataclasses(
                arguments, return_remaining_strings=True, look_for_args_file=False)
        except CloudConfigError:
            raise
        except (ValueError, TypeError) as error:  # a dataclass's own check (TrainingArguments.__post_init__)
            raise CloudConfigError(f"{config_file or 'options'}: {error}") from None
        if remaining:
            flag = remaining[0]
            valid = sorted({option for action in self._actions for option in action.option_strings})
            if flag.startswith("-"):
                raise CloudConfigError(f"unknown option {flag}{closest(flag.split('=')[0], valid)}")
            raise CloudConfigError(f"unexpected argument {flag!r}: a configuration file ends in .yaml/.yml/.json "
                                   "and comes first; options are --option value")
        return tuple(outputs)

    def typed_defaults(self, values: dict[str, Any]) -> dict[str, Any]:
        """YAML values checked against their option's type (numbers, lists), ready for ``set_defaults``."""
        actions = {action.dest: action for action in self._actions}
        typed = {}
        for key, value in values.items():
            action = actions[key]
            if action.nargs == "+" and not isinstance(value, list):
                value = [value]
            elements = value if isinstance(value, list) else [value]
            if action.type in (int, float) and value is not None:
                for element in elements:
                    if isinstance(element, bool) or not isinstance(element, (int, float, str)) or (
                            action.type is int and isinstance(element, float) and not element.is_integer()):
                        raise CloudConfigError(f"option {key} must be {action.type.__name__}, got {element!r}")
                value = [action.type(e) for e in elements] if isinstance(value, list) else action.type(value)
            typed[key] = value
        return typed


def parse_recipe_arguments(dataclass_types: Sequence[type], argv: Sequence[str] | None = None, *,
                           program: str = "recipe", description: str | None = None) -> tuple[Any, ...]:
    """Parse ``argv`` (``sys.argv[1:]`` by default: ``[CONFIG.yaml] [--option value ...]``) into the recipe's
    option dataclasses; ``description`` (the recipe's docstring) heads ``--help``."""
    parser = RecipeArgumentParser(dataclass_types, prog=program, description=description,
                                  formatter_class=HelpFormatter)
    return parser.parse_recipe(sys.argv[1:] if argv is None else argv)


def failure_status(error: Exception, program: str) -> int:
    """Print ``PROGRAM: error: MESSAGE`` (one line) on stderr and return the exit status 2, for ``main()``."""
    print(f"{program}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return 2


def resume_checkpoint(value: str | None) -> str | bool | None:
    """``Trainer.train``'s ``resume_from_checkpoint``: a path, True (newest ``checkpoint-*``) or None.

    ``true`` / ``last`` / ``latest`` mean the newest checkpoint of ``output_dir``; ``false`` / ``none``: none.
    """
    if value is None or str(value).lower() in ("false", "none", ""):
        return None
    if str(value).lower() in ("true", "last", "latest"):
        return True
    return str(value)


def recipe_main(dataclass_types: Sequence[type], run: Any, program: str, description: str | None,
                argv: Sequence[str] | None = None) -> None:
    """The command-line entry of a recipe: parse the options, ``run(*options)``; a :class:`CloudError` exits with
    status 2 and one line naming the program (the only place a recipe turns an error into an exit)."""
    try:
        run(*parse_recipe_arguments(dataclass_types, argv, program=program, description=description))
    except CloudError as error:
        sys.exit(failure_status(error, program))


__all__ = ["SECTIONS", "RecipeArgumentParser", "closest", "failure_status", "parse_recipe_arguments",
           "recipe_main", "resume_checkpoint"]
