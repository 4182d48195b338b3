"""Each server setting is declared once, in config/schema.py, and everything else follows.

Fails when a setting, flag or servingd.yaml key is declared twice; when a default is
written outside the schema (a ServerSettings field, a flag or a key declared by hand, a
literal default in the front ends); when --help, servingd(8)'s option list,
etc/servingd.yaml's keys or docs/configuration.md's tables and the schema disagree.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import operator
import re
from collections import Counter
from pathlib import Path

import yaml

from servingd.apis.admission import AdmissionOptions
from servingd.apis.grpc.server import GrpcOptions
from servingd.apis.rest.server import RestFrontEnd, RestOptions
from servingd.config import flags, schema, servingd_yaml
from servingd.config.schema import (
    BY_NAME,
    OBSOLETE_YAML_KEYS,
    OPTIONS,
    SETTINGS,
    YAML_KEYS_READ_BY_NAME,
    Reload,
)
from servingd.config.settings import ServerSettings
from servingd.daemon.model_server import RESTART_ONLY_SETTINGS, SECRET_SETTINGS
from support import schema_docs
from support.paths import REPO_ROOT

SRC = REPO_ROOT / "src" / "servingd"
# The front ends' parameters that are server settings: field -> setting.
FRONT_END_PARAMETERS = {
    GrpcOptions: {
        "port": "grpc_port",
        "bind_address": "grpc_bind_address",
        "socket_path": "grpc_socket_path",
        "max_receive_message_bytes": "grpc_max_receive_bytes",
        "channel_arguments": "grpc_channel_arguments",
        "tls": "grpc_tls",
        "check_method_name": "enable_signature_method_name_check",
    },
    RestOptions: {
        "port": "rest_port",
        "bind_address": "rest_bind_address",
        "timeout_ms": "rest_timeout_ms",
        "enable_cors": "rest_enable_cors",
        "max_body_bytes": "rest_max_body_bytes",
        "prometheus_path": "prometheus_path",
        "check_method_name": "enable_signature_method_name_check",
        "tls": "rest_tls",
    },
    AdmissionOptions: {
        "max_in_flight": "max_in_flight",
        "max_in_flight_per_model": "max_in_flight_per_model",
        "max_tensor_elements": "max_tensor_elements",
    },
}
FRONT_END_MODULES = ("apis/admission.py", "apis/grpc/server.py", "apis/rest/server.py")
# Modules whose range checks moved into the schema: no wording of one may come back.
CHECKED_ONCE = ("config/settings.py", "config/servingd_yaml.py", "config/flags.py")
RANGE_WORDS = re.compile(r"must be (within|between|at least|0 or more|>=|<=)")


def _duplicates(items: list[object]) -> list[object]:
    return [item for item, count in Counter(items).items() if count > 1]


# -- declared once ----------------------------------------------------------------------


def test_no_setting_flag_or_key_is_declared_twice() -> None:
    assert not _duplicates([s.name for s in SETTINGS])
    every_flag = [f for s in SETTINGS if s.flag for f in (s.flag, *s.aliases)]
    every_flag += [f for o in OPTIONS for f in (o.flag, *o.aliases)]
    assert not _duplicates(every_flag)
    paths = [s.yaml for s in SETTINGS if s.yaml]
    paths += [(key,) for key in (*YAML_KEYS_READ_BY_NAME, *OBSOLETE_YAML_KEYS)]
    assert not _duplicates(paths)
    sections = {p[0] for p in paths if len(p) > 1}
    assert not sections & {p[0] for p in paths if len(p) == 1}, "a key is also a section"


def test_the_duplicate_check_would_catch_a_second_declaration() -> None:
    names = [s.name for s in SETTINGS]
    assert _duplicates([*names, names[3]]) == [names[3]]


def test_every_setting_is_complete() -> None:
    for s in SETTINGS:
        assert s.help, s.name
        assert s.flag or s.yaml or s.kind.name == "derived", f"{s.name}: nothing sets it"
        if s.secret:
            assert s.reload is Reload.RESTART, f"{s.name}: a secret is never logged on reload"


# -- generated from the schema ------------------------------------------------------------


def test_server_settings_fields_are_the_schema_settings_with_its_defaults() -> None:
    fields = {f.name: f for f in dataclasses.fields(ServerSettings)}
    assert list(fields) == [s.name for s in SETTINGS], "ServerSettings and the schema differ"
    for s in SETTINGS:
        assert fields[s.name].default == s.default, s.name
        assert fields[s.name].repr is not s.secret, s.name


def test_server_settings_write_no_default_of_their_own() -> None:
    source = (SRC / "config" / "settings.py").read_text()
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ServerSettings")
    for node in cls.body:
        if not isinstance(node, ast.AnnAssign):
            continue
        name = ast.unparse(node.target)
        assert ast.unparse(node.value or ast.Constant(None)) == f"default_of({name!r})", (
            f"config/settings.py: {name} must take its default from the schema: "
            f"= default_of({name!r})"
        )


def test_the_flag_parser_is_the_schema() -> None:
    parser = flags.build_parser()
    options = {o for a in parser._actions for o in a.option_strings} - {"-h", "--help"}
    declared = {f"--{f}" for s in SETTINGS if s.flag for f in (s.flag, *s.aliases)}
    declared |= {f"--{f}" for o in OPTIONS for f in (o.flag, *o.aliases)}
    assert options == declared, "a flag declared by hand, outside config/schema.py"
    defaults = vars(flags.parse_flags([]))
    for s in SETTINGS:
        if s.flag:
            assert defaults[s.flag] == s.flag_default, s.flag
    for o in OPTIONS:
        assert defaults[o.flag] == o.default, o.flag


def test_help_shows_every_flag_but_the_obsolete_one() -> None:
    text = " ".join(flags.build_parser().format_help().split())
    for s in SETTINGS:
        if s.flag:
            assert f"--{s.flag}" in text and " ".join(s.help.split()) in text, s.flag
    assert "--inline_run_max_ms" not in text


def test_servingd_yaml_keys_are_the_schema() -> None:
    assert [(e.path, e.setting, e.flag) for e in servingd_yaml.ENTRIES] == [
        (s.yaml, s.name, s.flag) for s in SETTINGS if s.yaml
    ]
    calls = [
        n
        for n in ast.walk(ast.parse((SRC / "config" / "servingd_yaml.py").read_text()))
        if isinstance(n, ast.Call) and ast.unparse(n.func) == "Entry"
    ]
    assert len(calls) == 1, "servingd_yaml.py declares a key by hand"


def test_restart_only_and_secret_lists_are_the_schema() -> None:
    assert set(RESTART_ONLY_SETTINGS) == {s.name for s in SETTINGS if s.reload is Reload.RESTART}
    assert {s.name for s in SETTINGS if s.secret} == SECRET_SETTINGS
    assert set(RESTART_ONLY_SETTINGS) >= SECRET_SETTINGS


# -- no defaults or checks elsewhere ------------------------------------------------------


def test_front_ends_take_the_settings_as_required_parameters() -> None:
    for cls, parameters in FRONT_END_PARAMETERS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, setting in parameters.items():
            assert setting in BY_NAME
            f = fields[name]
            assert f.default is dataclasses.MISSING, f"{cls.__name__}.{name} has a default"
            assert f.default_factory is dataclasses.MISSING, f"{cls.__name__}.{name}"
    drain = inspect.signature(RestFrontEnd.__init__).parameters["drain_grace_s"]
    assert drain.default is inspect.Parameter.empty


_FOLD = {ast.Mult: operator.mul, ast.Pow: operator.pow, ast.Add: operator.add}


def _fold(node: ast.AST) -> object:
    """A literal number, products, powers and sums of literals folded; None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
        left, right = _fold(node.left), _fold(node.right)
        if isinstance(left, int | float) and isinstance(right, int | float):
            return _FOLD[type(node.op)](left, right)
    return None


def _constants(path: Path) -> set[object]:
    """Every literal number in a module (256 * 1024 * 1024 folded to one)."""
    return {_fold(node) for node in ast.walk(ast.parse(path.read_text()))} - {None}


def test_no_front_end_module_writes_a_settings_default() -> None:
    # 0, 1 and booleans are everywhere; the schema's other numbers are its alone.
    defaults = {
        s.flag_default
        for s in SETTINGS
        if isinstance(s.flag_default, int | float)
        and not isinstance(s.flag_default, bool)
        and s.flag_default not in (0, 1)
    }
    for module in FRONT_END_MODULES:
        written = _constants(SRC / module) & defaults
        assert not written, f"{module} writes the schema's default(s) {written}"
    assert 256 * 1024 * 1024 in defaults and 1024 in defaults  # what this looks for


def test_range_checks_live_in_the_schema_only() -> None:
    for module in CHECKED_ONCE:
        text = (SRC / module).read_text()
        assert not RANGE_WORDS.search(text), f"{module} words a range check of its own"
        assert "MAX_NICE" not in text, module


# -- the documents ------------------------------------------------------------------------


def test_the_man_page_lists_every_option() -> None:
    page = schema_docs.MAN_PAGE.read_text()
    assert page == schema_docs.render(page), (
        "docs/man/servingd.8.md's option list differs from config/schema.py: rewrite it "
        "with `PYTHONPATH=src:tests python -m support.schema_docs`"
    )
    named = set(re.findall(r"\*\*--([a-z][a-z_-]*)\*\*", page))
    every = {s.flag for s in SETTINGS if s.flag} | {o.flag for o in OPTIONS}
    missing = every - {n.replace("-", "_") for n in named} - {"inline_run_max_ms"}
    assert not missing, f"servingd(8) does not name {sorted(missing)}"


def _conffile_keys(text: str) -> set[tuple[str, ...]]:
    """Every key of etc/servingd.yaml, set or shown commented out (`#  region: ...`)."""
    keys: set[tuple[str, ...]] = set()
    section = ""
    for line in text.splitlines():
        top = re.match(r"^#?([a-z_0-9]+):", line)
        if top:
            section = top.group(1)
            keys.add((section,))
            continue
        if line and not line.startswith(("#", " ")):
            section = ""
        inner = re.match(r"^(?:#?  |  # )([a-z_0-9]+):( |$)", line)
        if inner and section:
            keys.add((section, inner.group(1)))
    return keys


def test_the_packaged_conffile_shows_every_key() -> None:
    text = (REPO_ROOT / "etc" / "servingd.yaml").read_text()
    shown = _conffile_keys(text)
    for s in SETTINGS:
        if s.yaml:
            assert s.yaml in shown, f"etc/servingd.yaml does not show {'.'.join(s.yaml)}"
    for key in YAML_KEYS_READ_BY_NAME:
        assert (key,) in shown, key
    # and sets no key the schema does not know (the batching: parameters are batching's)
    set_keys = {(k,) for k in yaml.safe_load(text)} | {
        (k, inner)
        for k, v in yaml.safe_load(text).items()
        if isinstance(v, dict) and k != "batching"
        for inner in v
    }
    known = {s.yaml for s in SETTINGS if s.yaml} | {(k,) for k in YAML_KEYS_READ_BY_NAME}
    known |= {(s.yaml[0],) for s in SETTINGS if len(s.yaml) > 1}
    assert set_keys <= known, sorted(set_keys - known)


def test_the_conffile_key_reader_sees_commented_keys() -> None:
    text = (
        "#s3:\n#  endpoint: x   # c\ngrpc:\n  # bind_address: a\n  port: 1\nlogging:\n  # auto: b\n"
    )
    assert _conffile_keys(text) == {
        ("s3",),
        ("s3", "endpoint"),
        ("grpc",),
        ("grpc", "bind_address"),
        ("grpc", "port"),
        ("logging",),
        ("logging", "auto"),
    }


RELOAD_WORDS = {"restart": Reload.RESTART, "live": Reload.LIVE}
RELOAD_WORDS["next version load"] = Reload.NEXT_LOAD


def _table_rows(page: str, header: str) -> list[list[str]]:
    start = page.index(header)
    rows = []
    for line in page[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _row_keys(cell: str) -> list[tuple[str, ...]]:
    """The keys a table cell names: `a.b`, then `c` for a.c; parentheses are prose."""
    depth, text = 0, ""
    for char in cell:
        depth += char == "("
        text += char if depth == 0 else ""
        depth -= char == ")" and depth > 0
    keys: list[tuple[str, ...]] = []
    section: tuple[str, ...] = ()
    for name in re.findall(r"`([a-z_0-9.]+):?`", text):
        path = tuple(name.split("."))
        if len(path) > 1:
            section = path[:-1]
        elif section:
            path = (*section, *path)
        keys.append(path)
    return keys


def test_configuration_md_tables_name_every_key_with_its_reload() -> None:
    page = (REPO_ROOT / "docs" / "configuration.md").read_text()
    reload_of = {s.yaml: s.reload for s in SETTINGS if s.yaml}
    reload_of |= {(k,): r for k, r in YAML_KEYS_READ_BY_NAME.items()}
    flags_of = {s.yaml: {s.flag} for s in SETTINGS if s.yaml and s.flag}
    flags_of[("bind_address",)] = {
        BY_NAME[n].flag for n in ("grpc_bind_address", "rest_bind_address")
    }
    flags_of[("enable_batching",)] = {"enable_batching"}
    named: list[tuple[str, ...]] = []
    for key_cell, _default, flag_cell, reload_cell in _table_rows(
        page, "| key | default | flag | on reload |"
    ):
        keys = _row_keys(key_cell)
        assert keys, key_cell
        named += keys
        for key in keys:
            assert key in reload_of, f"configuration.md names {'.'.join(key)}: no such key"
            assert reload_of[key] is RELOAD_WORDS[reload_cell], (key, reload_cell)
        row_flags = set().union(*(flags_of.get(k, set()) for k in keys))
        for flag in re.findall(r"--([a-z_]+[a-z])(?![a-z_*])", flag_cell):
            assert flag in row_flags, f"configuration.md: --{flag} is no flag of {key_cell}"
    # The s3: section's own table: applied on restart, no flags.
    for key_cell, *_ in _table_rows(page, "| key | default | also read from"):
        for key in _row_keys(key_cell):
            assert reload_of.get(key) is Reload.RESTART, key
            named.append(key)
    assert not _duplicates(named)
    assert set(named) == set(reload_of), sorted(set(reload_of) ^ set(named))
    assert schema.OBSOLETE_YAML_KEYS  # documented in the prose, not in the tables
