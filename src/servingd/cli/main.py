"""servingctl: a small admin CLI for the local servingd.

    servingctl status                         models, versions, states, errors, labels
    servingctl models                         the configured models (no daemon needed)
    servingctl reload [--timeout S]           SIGHUP the daemon, wait, report the outcome
    servingctl check-config                   validate the configuration (exit 0 or 1)
    servingctl predict MODEL '{...}'          POST /v1/models/MODEL:predict, print the reply
                                              (or --json '{...}')

The daemon's REST address comes from the same servingd.yaml (`--config`, default
/etc/servingd/servingd.yaml), or `--rest-url`. The options that apply to every command
(--config, --rest-url, --http-timeout) go before or after the command. Exit status: 0
success, 1 failure (a refused config, an error reply), 2 usage errors, 3 daemon not
reachable."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from servingd.config.errors import ConfigError
from servingd.sources.version_policy import Latest, ServableVersionPolicy, Specific

if TYPE_CHECKING:
    from servingd.config.settings import ServerSettings

log = logging.getLogger("servingctl")

DEFAULT_CONFIG = "/etc/servingd/servingd.yaml"
DEFAULT_REST_URL = "http://127.0.0.1:8501"
UNIT = "servingd"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class Unreachable(Exception):
    """The daemon's REST API did not answer."""


def _add_common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options of every command. The top-level parser holds the defaults; each
    subcommand accepts them too (`servingctl check-config --config FILE`) without
    resetting a value given before the command."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--config",
        default=default(DEFAULT_CONFIG),
        help=f"servingd.yaml (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--rest-url", default=default(""), help="the daemon's REST API, e.g. " + DEFAULT_REST_URL
    )
    parser.add_argument(
        "--http-timeout", type=float, default=default(30.0), help="per HTTP call, seconds"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="servingctl", description="Administer the local servingd.")
    _add_common_options(p, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, parents=[common])

    command("status", "models, versions, states, errors, labels")
    command("models", "the configured models, their base paths and version policies")
    reload = command("reload", "re-read the configuration (SIGHUP) and wait")
    reload.add_argument("--pid", type=int, default=0, help="the daemon's pid")
    reload.add_argument("--pid-file", default="", help="default: pid_file of servingd.yaml")
    reload.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
    command("check-config", "validate the configuration without serving")
    predict = command("predict", "POST a predict request (TF Serving REST body)")
    predict.add_argument("model")
    predict.add_argument(
        "body", nargs="?", default=None, help="the request body, e.g. '{\"instances\": [1.0]}'"
    )
    predict.add_argument("--json", default=None, help="the request body (instead of BODY)")
    predict.add_argument("--version", type=int, default=None)
    predict.add_argument("--label", default=None)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "predict":
        if (args.body is None) == (args.json is None):
            parser.error("predict: give the request body once, as BODY or as --json BODY")
        args.json = args.body if args.json is None else args.json
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from servingd.daemon.logging_setup import stderr_formatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(stderr_formatter(logging.Formatter("servingctl: %(message)s")))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    args = parse_args(argv)
    try:
        if args.command == "check-config":
            return check_config(args.config)
        if args.command == "models":
            return models(args.config, sys.stdout)
        rest_url = args.rest_url or rest_url_from_config(args.config)
        client = RestClient(rest_url, args.http_timeout)
        if args.command == "status":
            return status(client, sys.stdout)
        if args.command == "reload":
            return reload(client, args)
        return predict(client, args, sys.stdout)
    except Unreachable as exc:
        log.error("%s", exc)
        return EXIT_UNREACHABLE


# -- where the daemon is ------------------------------------------------------------------
def rest_url_from_config(config: str) -> str:
    """http://ADDRESS:PORT of the daemon's REST API from servingd.yaml (wildcard -> loopback)."""
    from servingd.config.load import load_settings

    if not os.path.exists(config):
        return DEFAULT_REST_URL
    try:
        settings = load_settings([f"--config={config}"])
    except ConfigError as exc:
        log.warning("cannot read %s (%s); trying %s", config, exc, DEFAULT_REST_URL)
        return DEFAULT_REST_URL
    if not settings.rest_port:
        raise Unreachable(f"the REST API is off in {config} (rest.port: 0); give --rest-url")
    host = settings.rest_bind_address
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.rest_port}"


class RestClient:
    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def call(self, path: str, body: bytes | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.base_url + path,
            data=body,
            headers={"Content-Type": "application/json"} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return int(reply.status), json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            try:
                return int(exc.code), json.loads(exc.read())
            except ValueError:
                return int(exc.code), {"error": exc.reason}
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(f"servingd does not answer at {self.base_url}: {exc}") from None


# -- commands -----------------------------------------------------------------------------
def _load(config: str) -> ServerSettings | None:
    from servingd.config.load import load_settings

    try:
        return load_settings([f"--config={config}"])
    except ConfigError as exc:
        log.error("configuration refused: %s", exc)
        return None


def check_config(config: str) -> int:
    settings = _load(config)
    if settings is None:
        return EXIT_FAILED
    from servingd.daemon.checks import missing_base_paths

    for warning in missing_base_paths(settings.models):
        log.warning("warning: %s", warning)
    log.info("configuration OK: %s, %d model(s)", config, len(settings.models))
    return EXIT_OK


def describe_policy(policy: ServableVersionPolicy) -> str:
    if isinstance(policy, Latest):
        return f"latest {policy.num_versions}"
    if isinstance(policy, Specific):
        return "specific " + ",".join(map(str, sorted(policy.versions)))
    return "all"


def models(config: str, out: TextIO) -> int:
    """The models the configuration declares (what the daemon serves after a reload)."""
    settings = _load(config)
    if settings is None:
        return EXIT_FAILED
    rows = [("MODEL", "VERSIONS", "BASE PATH")]
    rows += [(m.name, describe_policy(m.version_policy), m.base_path) for m in settings.models]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, policy, base_path in rows:
        out.write(f"{name.ljust(width[0])}  {policy.ljust(width[1])}  {base_path}\n")
    return EXIT_OK


def status(client: RestClient, out: TextIO) -> int:
    code, body = client.call("/v1/models")
    if code != 200:
        log.error("GET /v1/models: %s", body.get("error", code))
        return EXIT_FAILED
    rows = [("MODEL", "VERSION", "STATE", "LABELS", "ERROR")]
    summaries = []
    for model in body.get("models", []):
        labels = model.get("labels", {})
        versions = model.get("model_version_status", [])
        summaries.append(f"{model['name']}: {model_summary(model)}")
        if not versions:
            rows.append((model["name"], "-", "NO VERSIONS", "", model.get("error", "")))
        for version in versions:
            number = int(version["version"])
            names = ",".join(sorted(k for k, v in labels.items() if v == number))
            error = version.get("status", {}).get("error_message", "")
            rows.append((model["name"], str(number), version["state"], names, error))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
    sources = [(m["name"], m["source"]) for m in body.get("models", []) if "source" in m]
    if sources:
        out.write("\nMODEL SOURCE\n")
        for name, source in sources:
            state = source.get("state", "?")
            message = f": {source['message']}" if source.get("message") else ""
            out.write(f"{name}  {source.get('base_path', '')}  {state}{message}\n")
    if summaries:
        out.write("\n" + "\n".join(summaries) + "\n")
    code, reload_state = client.call("/v1/servingd/reload")
    if code == 200 and reload_state.get("generation"):
        out.write(
            f"\nlast reload: {reload_state['result']}"
            + (f": {reload_state['message']}" if reload_state.get("message") else "")
            + "\n"
        )
    return EXIT_OK


def model_summary(model: dict[str, Any]) -> str:
    """One line per model: "serving 123; 124 failed: <reason>" (newest versions first)."""
    versions = model.get("model_version_status", [])
    serving = [v["version"] for v in versions if v["state"] == "AVAILABLE"]
    parts = [f"serving {', '.join(serving)}" if serving else "serving nothing"]
    for version in versions:
        error = version.get("status", {}).get("error_message", "")
        if not error:
            continue
        what = "failed" if version["state"] == "END" else "failed, retrying"
        parts.append(f"{version['version']} {what}: {error}")
    if model.get("error"):
        parts.append(model["error"])
    return "; ".join(parts)


def find_pid(args: argparse.Namespace, reported: int) -> int:
    """--pid, --pid-file, the pid the daemon reports, servingd.yaml's pid_file, systemd's
    MainPID: the first one known. (The daemon's own report works when its config is broken.)"""
    if args.pid:
        return int(args.pid)
    if not args.pid_file and reported > 0 and _is_local_servingd(reported, args.rest_url):
        return reported
    pid_file = args.pid_file
    if not pid_file and os.path.exists(args.config):
        from servingd.config.load import load_settings

        try:
            pid_file = load_settings([f"--config={args.config}"]).pid_file
        except ConfigError:
            pid_file = ""  # the daemon will say what is wrong; try systemd below
    if pid_file:
        try:
            with open(pid_file, encoding="ascii") as f:
                return int(f.read().strip())
        except (OSError, ValueError) as exc:
            raise Unreachable(f"cannot read pid file {pid_file}: {exc}") from None
    if shutil.which("systemctl"):
        result = subprocess.run(
            ["systemctl", "show", "--property=MainPID", "--value", UNIT],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode == 0 and result.stdout.strip().isdigit():
            pid = int(result.stdout.strip())
            if pid > 0:
                return pid
    raise Unreachable("cannot find servingd's pid: give --pid or --pid-file (or set pid_file)")


def _is_local_servingd(pid: int, rest_url: str) -> bool:
    """A pid reported over REST is only ours to signal when the daemon is on this host."""
    host = urllib.parse.urlsplit(rest_url).hostname if rest_url else "127.0.0.1"
    if host not in ("localhost", "::1") and not (host or "").startswith("127."):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"servingd" in f.read()
    except OSError:
        return False


def reload(client: RestClient, args: argparse.Namespace) -> int:
    code, before = client.call("/v1/servingd/reload")
    if code != 200:
        raise Unreachable(f"GET /v1/servingd/reload answered {code}: {before}")
    # A reload already running may predate our change: wait for the one after it.
    target = int(before["generation"]) + (2 if before["state"] == "reloading" else 1)
    pid = find_pid(args, int(before.get("pid", 0)))
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise Unreachable(f"cannot signal pid {pid}: {exc.strerror}") from None
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        code, now = client.call("/v1/servingd/reload")
        if code == 200 and int(now["generation"]) >= target:
            if now["result"] == "ok":
                log.info("reloaded")
                return EXIT_OK
            log.error("reload %s: %s", now["result"].replace("_", " "), now["message"])
            return EXIT_FAILED
    log.error("no reload outcome after %.0f s (pid %d)", args.timeout, pid)
    return EXIT_FAILED


def predict(client: RestClient, args: argparse.Namespace, out: TextIO) -> int:
    try:
        body = json.loads(args.json)
    except ValueError as exc:
        log.error("the request body is not valid JSON: %s", exc)
        return EXIT_USAGE
    path = f"/v1/models/{args.model}"
    if args.version is not None:
        path += f"/versions/{args.version}"
    elif args.label:
        path += f"/labels/{args.label}"
    code, reply = client.call(path + ":predict", json.dumps(body).encode())
    out.write(json.dumps(reply) + "\n")
    return EXIT_OK if code == 200 else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
