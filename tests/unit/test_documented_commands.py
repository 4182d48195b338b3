"""Every servingd / servingctl command line the docs show is accepted by the real parsers.

The command lines are read at test time from the code blocks of README.md, docs/*.md and
the man pages' sources (docs/man/*.md), and from the Exec lines of the systemd unit; the
man pages' COMMANDS and option names are checked against the parsers in both directions.
A doc that shows a command the tool refuses, or a tool that grew a command no man page
names, fails here.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from servingd.cli import main as servingctl
from servingd.config import flags as servingd_flags
from support.paths import REPO_ROOT

PROGRAMS = ("servingd", "servingctl")
# Shell syntax that ends the command itself.
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1", "<"}
MAN_PAGES = REPO_ROOT / "docs" / "man"
UNITS = (REPO_ROOT / "debian" / "servingd.service",)
# What systemd substitutes in an Exec line before the program sees it, with a sample value.
UNIT_VARIABLES = {"${MAINPID}": "4242", "$MAINPID": "4242"}


def documents() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def code_block_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) inside fenced code blocks, continuation lines joined."""
    fence = ""
    pending = ""
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not fence:
            if stripped.startswith(("```", "~~~")):
                fence = stripped[:3]
            continue
        if stripped.startswith(fence):
            fence = ""
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield start, pending + stripped
        pending = ""


def command_argv(line: str) -> tuple[str, list[str]] | None:
    """(program, its arguments) when `line` runs servingd or servingctl, else None. A
    synopsis's optional part ([--version N | --label L]) and shell syntax end the line."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    while words and words[0] in ("$", "#", "sudo"):
        words = words[1:]
    if not words or Path(words[0]).name not in PROGRAMS:
        return None
    argv: list[str] = []
    for word in words[1:]:
        if word in SHELL_OPERATORS or word.startswith(("[", "<(")) or word == "...":
            break
        argv.append(word)
    return Path(words[0]).name, argv


def documented_commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in documents():
        for number, line in code_block_lines(doc.read_text()):
            command = command_argv(line)
            if command:
                found.append((f"{doc.relative_to(REPO_ROOT)}:{number}", *command))
    for unit in UNITS:
        for number, line in enumerate(unit.read_text().splitlines(), 1):
            if line.startswith("Exec"):
                for variable, value in UNIT_VARIABLES.items():
                    line = line.replace(variable, value)
                command = command_argv(line.split("=", 1)[1].lstrip("-@+!"))
                if command:
                    found.append((f"{unit.relative_to(REPO_ROOT)}:{number}", *command))
    return found


def parse(program: str, argv: list[str]) -> str:
    """'' when the program's parser accepts argv, else what it said."""
    parse_args = servingd_flags.parse_flags if program == "servingd" else servingctl.parse_args
    try:
        parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help exits 0
            return f"exit {exc.code}"
    return ""


COMMANDS = documented_commands()


def test_the_docs_show_commands_of_both_programs() -> None:
    # The extraction itself: a change of format that finds nothing would pass everything.
    assert {program for _, program, _ in COMMANDS} == set(PROGRAMS), COMMANDS


@pytest.mark.parametrize(
    ("where", "program", "argv"), COMMANDS, ids=[f"{w} {p}" for w, p, _ in COMMANDS]
)
def test_a_documented_command_line_is_accepted(
    where: str, program: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    refused = parse(program, argv)
    assert not refused, (
        f"{where}: `{program} {shlex.join(argv)}` refused: {capsys.readouterr().err}"
    )


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    options = {o for action in parser._actions for o in action.option_strings}
    for sub in _subcommands(parser).values():
        options |= _option_strings(sub)
    return options


def _section(page: str, title: str) -> str:
    match = re.search(rf"^# {title}\n(.*?)(?=^# |\Z)", page, re.MULTILINE | re.DOTALL)
    assert match, f"no {title} section"
    return match.group(1)


def test_servingctls_man_page_names_every_command_and_no_other() -> None:
    page = (MAN_PAGES / "servingctl.1.md").read_text()
    named = set(re.findall(r"^\*\*([a-z][a-z-]*)\*\*", _section(page, "COMMANDS"), re.MULTILINE))
    assert named == set(_subcommands(servingctl.build_parser()))
    # and each command has an example, which the tests above run through the parser
    examples = [argv for where, _, argv in COMMANDS if where.startswith("docs/man/servingctl")]
    assert named <= {word for argv in examples for word in argv}


@pytest.mark.parametrize(
    ("page", "parser"),
    [
        ("servingctl.1.md", servingctl.build_parser),
        ("servingd.8.md", servingd_flags.build_parser),
    ],
)
def test_every_option_a_man_page_names_exists(
    page: str, parser: type[argparse.ArgumentParser]
) -> None:
    named = set(re.findall(r"\*\*(--[a-z][a-z_-]*)\*\*", (MAN_PAGES / page).read_text()))
    assert named, page
    assert named <= _option_strings(parser()), sorted(named - _option_strings(parser()))
