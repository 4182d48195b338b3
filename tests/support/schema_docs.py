"""servingd(8)'s list of options, written from the settings schema (config/schema.py).

The list sits between two markers in docs/man/servingd.8.md; the prose around it is
written by hand. tests/unit/test_settings_schema.py fails when the list and the schema
differ; rewrite it with:

    PYTHONPATH=src:tests python -m support.schema_docs
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from servingd.config.schema import OPTIONS, SETTINGS, Setting
from servingd.config.setting_kinds import Kind
from support.paths import REPO_ROOT

MAN_PAGE = REPO_ROOT / "docs" / "man" / "servingd.8.md"
BEGIN = "<!-- options: generated from src/servingd/config/schema.py by support.schema_docs -->"
END = "<!-- end of the generated options -->"
# A flag written by hand above the list, with its prose: not repeated in the list.
_HAND_WRITTEN = re.compile(r"^\*\*--([a-z][a-z_-]*)\*\*(?:=\*[A-Z]+\*)?$", re.MULTILINE)


def _placeholder(kind: Kind) -> str:
    if kind.boolean:
        return "[=*BOOL*]"
    if kind.choices:
        return "=" + "|".join(f"*{c}*" for c in kind.choices)
    if kind.name in ("path", "file"):
        return "=*FILE*"
    if kind.flag_type in (int, float):
        return "=*N*"
    return "=*VALUE*"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value in ("", None) else str(value)


def _sentence(text: str) -> str:
    """Capitalized (not "gRPC ..."), with pandoc's emphasis character escaped."""
    if not text[1:2].isupper():
        text = text[0].upper() + text[1:]
    return text.replace("*", "\\*")


def _entry(flag: str, kind: Kind, text: str) -> str:
    body = textwrap.fill(text, 92, initial_indent=":   ", subsequent_indent="    ")
    return f"**--{flag}**{_placeholder(kind)}\n{body}\n"


def _setting_text(s: Setting) -> str:
    text = f"{_sentence(s.help)}. Default {_value(s.flag_default)}"
    if s.yaml:
        text += f"; servingd.yaml: **{'.'.join(s.yaml)}**"
    return text + f"; on reload: {s.reload.value}."


def options_list(hand_written: set[str]) -> str:
    """The generated part of OPTIONS: every flag not described by hand above it."""
    parts = [BEGIN, ""]
    for s in SETTINGS:
        if s.flag and s.flag not in hand_written:
            parts.append(_entry(s.flag, s.kind, _setting_text(s)))
    for o in OPTIONS:
        if o.flag in hand_written or o.not_applicable or o.help.startswith("=="):
            continue
        parts.append(_entry(o.flag, o.kind, f"{_sentence(o.help)}."))
    ignored = ", ".join(f"**--{o.flag}**" for o in OPTIONS if o.not_applicable)
    parts.append(
        f"Accepted for compatibility with **tensorflow_model_server**, without effect (the "
        f"log says why when one is set): {ignored}.\n"
    )
    parts.append(END)
    return "\n".join(parts)


def render(page: str) -> str:
    """`page` with its generated list rewritten from the schema."""
    start, end = page.index(BEGIN), page.index(END) + len(END)
    hand = {m.replace("-", "_") for m in _HAND_WRITTEN.findall(page[:start])}
    return page[:start] + options_list(hand) + page[end:]


if __name__ == "__main__":
    MAN_PAGE.write_text(render(MAN_PAGE.read_text()))
