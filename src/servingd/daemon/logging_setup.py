"""Logging: journald with structured fields, or plain stderr lines with the level.

Fields for journald are passed as `extra={"MODEL_NAME": ..., "MODEL_VERSION": ...}`: upper
case keys become journal fields (systemd-python's JournalHandler sends record attributes;
journald keeps only valid upper-case field names). On stderr they are appended as key=value.

When stderr is itself a journal stream (JOURNAL_STREAM names it: ExecStartPre=
--check-config, servingctl run by ExecReload=), each stderr line starts with its syslog
priority, `<3>` for errors, which journald reads as the line's PRIORITY (SyslogLevelPrefix=,
on by default) and strips: `journalctl -p err` shows why a start or reload was refused.
"""

from __future__ import annotations

import logging
import os
import sys

SYSLOG_IDENTIFIER = "servingd"
FIELDS = ("MODEL_NAME", "MODEL_VERSION", "SERVABLE_STATE", "CONFIG_FILE")
TARGETS = ("auto", "journald", "stderr")


class _FieldsFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [f"{k.lower()}={getattr(record, k)}" for k in FIELDS if hasattr(record, k)]
        return f"{text} [{' '.join(fields)}]" if fields else text


def syslog_priority(levelno: int) -> int:
    """A logging level as a syslog priority (as systemd-python's JournalHandler maps it)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class PriorityPrefixFormatter(logging.Formatter):
    """Prefixes each line with `<priority>` (journald's SyslogLevelPrefix)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self._inner.format(record).splitlines())


def stderr_is_journal() -> bool:
    """True when fd 2 is the journal stream systemd named in JOURNAL_STREAM (dev:inode)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(2)
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def stderr_formatter(inner: logging.Formatter) -> logging.Formatter:
    """`inner`, with syslog priority prefixes when stderr goes to the journal."""
    return PriorityPrefixFormatter(inner) if stderr_is_journal() else inner


def use_journald(target: str) -> bool:
    """auto: journald when systemd connected our stderr to the journal (JOURNAL_STREAM)."""
    if target == "journald":
        return True
    if target == "stderr":
        return False
    return bool(os.environ.get("JOURNAL_STREAM"))


def configure_logging(level: str, target: str = "auto", *, replace: bool = False) -> None:
    """Installs the one root handler; safe to call again (on reload) to change the level.

    `replace`: install a new handler for `target` even when one is installed already
    (once the configuration is read, the startup stderr handler gives way to it).
    """
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        if getattr(handler, "_servingd", False) and not replace:
            handler.setLevel(level.upper())
            return
        root.removeHandler(handler)
    new_handler: logging.Handler
    if use_journald(target):
        from systemd.journal import JournalHandler

        new_handler = JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
        new_handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        new_handler = logging.StreamHandler(sys.stderr)
        new_handler.setFormatter(
            stderr_formatter(_FieldsFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        )
    setattr(new_handler, "_servingd", True)  # noqa: B010 - marks the handler we own
    new_handler.setLevel(level.upper())
    root.addHandler(new_handler)


def set_level(level: str) -> None:
    configure_logging(level)
