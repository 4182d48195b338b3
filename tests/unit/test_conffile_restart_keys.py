"""The packaged servingd.yaml names exactly the keys that only a restart applies.

Its header lists them for the sysadmin; the daemon's own list is RESTART_ONLY_SETTINGS (in
settings' names). A setting made restart-only, or made live, without the header following
fails here.
"""

from __future__ import annotations

from pathlib import Path

from servingd.config.servingd_yaml import ENTRIES
from servingd.daemon.model_server import RESTART_ONLY_SETTINGS

CONFFILE = Path(__file__).resolve().parents[2] / "etc" / "servingd.yaml"
HEADER_START = "#   Only a restart"
LIST_INDENT = "#     "
# Keys read by name rather than through ENTRIES, with the settings they set.
NAMED_KEYS = {"bind_address": ("grpc_bind_address", "rest_bind_address"), "pid_file": ("pid_file",)}
# Restart-only settings with no servingd.yaml key (command-line flags only).
FLAG_ONLY = {"enable_signature_method_name_check"}


def listed_keys(text: str) -> set[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER_START))
    listed: list[str] = []
    for line in lines[start + 2 :]:
        if not line.startswith(LIST_INDENT):
            break
        listed += [k.strip() for k in line.removeprefix(LIST_INDENT).split(",") if k.strip()]
    return set(listed)


def settings_of(key: str) -> set[str]:
    """The settings a listed key (`a.b`, `section.*` or a top-level name) stands for."""
    if key in NAMED_KEYS:
        return set(NAMED_KEYS[key])
    path = tuple(key.split("."))
    if path[-1] == "*":
        found = {e.setting for e in ENTRIES if e.path[: len(path) - 1] == path[:-1]}
    else:
        found = {e.setting for e in ENTRIES if e.path == path}
    assert found, f"etc/servingd.yaml lists {key!r}, which is no key of servingd.yaml"
    return found


def test_the_header_lists_every_restart_only_key_and_no_live_one() -> None:
    covered: set[str] = set()
    for key in listed_keys(CONFFILE.read_text()):
        settings = settings_of(key)
        live = settings - set(RESTART_ONLY_SETTINGS)
        assert not live, f"etc/servingd.yaml lists {key!r} as restart-only; live: {live}"
        covered |= settings
    missing = set(RESTART_ONLY_SETTINGS) - covered - FLAG_ONLY
    keys = sorted(".".join(e.path) for e in ENTRIES if e.setting in missing)
    assert not missing, f"restart-only but not in etc/servingd.yaml's header: {keys or missing}"


def test_a_wrongly_listed_key_is_caught() -> None:
    header = f"{HEADER_START} applies these keys:\n#   running values ...\n{LIST_INDENT}"
    assert listed_keys(header + "logging.level, pid_file\n# end\n") == {"logging.level", "pid_file"}
    assert settings_of("logging.level") - set(RESTART_ONLY_SETTINGS) == {"log_level"}
