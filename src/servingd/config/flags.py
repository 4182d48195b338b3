"""Command-line flags: tensorflow_model_server's, same names and defaults, plus servingd's own.

Every flag is declared in `config/schema.py` (a setting's, or an `Option`); this module
builds the parser from it. TF Serving's flag parser accepts `--name=value` and, for
booleans, a bare `--name`; argparse here accepts those and `--name value` too. Flags that
have no meaning here are accepted (so existing scripts keep working) and reported by
`not_applicable_flags`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from servingd.config.errors import ConfigError
from servingd.config.schema import OPTIONS, SETTINGS
from servingd.config.setting_kinds import Kind, parse_bool, parse_channel_arguments

__all__ = [
    "NOT_APPLICABLE",
    "build_parser",
    "explicit_flags",
    "flag_values",
    "not_applicable_flags",
    "parse_bool",
    "parse_channel_arguments",
    "parse_flags",
]

# Flags accepted for compatibility that change nothing here, and why.
NOT_APPLICABLE: dict[str, str] = {o.flag: o.not_applicable for o in OPTIONS if o.not_applicable}


def _add(
    parser: argparse.ArgumentParser,
    flag: str,
    aliases: tuple[str, ...],
    kind: Kind,
    default: Any,
    help_: str,
) -> None:
    names = (f"--{flag}", *(f"--{alias}" for alias in aliases))
    extra: dict[str, Any] = {"nargs": "?", "const": True} if kind.boolean else {}
    if kind.choices:
        extra["choices"] = kind.choices
    parser.add_argument(
        *names,
        dest=flag,
        type=kind.flag_type,
        default=default,
        help=help_ or None,
        **extra,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="servingd",
        description="A TensorFlow Serving-compatible model server. Accepts "
        "tensorflow_model_server's flags; see servingd(8).",
        allow_abbrev=False,
    )
    for s in SETTINGS:
        if s.flag:
            _add(p, s.flag, s.aliases, s.kind, s.flag_default, s.help)
    for o in OPTIONS:
        _add(p, o.flag, o.aliases, o.kind, o.default, o.help)
    return p


def parse_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def explicit_flags(argv: Sequence[str] | None = None) -> set[str]:
    """The flags (dest names) given on the command line, whatever their value.

    Settings precedence is command line > servingd.yaml > built-in defaults, so a flag
    only overrides the YAML when it was given, even if it was given its default value.
    """
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def not_applicable_flags(args: argparse.Namespace) -> dict[str, str]:
    """Flags set to a non-default value that do nothing here, with the reason."""
    defaults = build_parser().parse_args([])
    return {
        name: reason
        for name, reason in NOT_APPLICABLE.items()
        if getattr(args, name) != getattr(defaults, name)
    }


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """ServerSettings field -> value of every setting that has a flag: checked as the
    schema says (ConfigError naming the flag), then converted (files read)."""
    for s in SETTINGS:
        check = s.command_line_check
        message = check and s.flag and check.flag_error(s.flag, getattr(args, s.flag))
        if message:
            raise ConfigError("command line", None, message)
    values: dict[str, Any] = {}
    for s in SETTINGS:
        if s.flag:
            try:
                values[s.name] = s.kind.from_flag(getattr(args, s.flag))
            except ValueError as exc:  # --grpc_channel_arguments' syntax
                raise ConfigError("command line", None, str(exc)) from None
    return values
