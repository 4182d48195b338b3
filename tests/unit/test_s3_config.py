"""s3:// base paths in the configuration: servingd.yaml's s3: keys, TF Serving's S3
variables, credentials files (root-only, or systemd's LoadCredential=), URL checks, and
boto3 staying out of a daemon that serves no s3:// path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from servingd.cli.main import main as servingctl
from servingd.config.errors import ConfigError
from servingd.config.load import load_settings
from servingd.config.settings import ServerSettings
from servingd.daemon.main import main as servingd_main
from servingd.sources.s3.manifest import manifest_mismatches, parse_manifest
from servingd.sources.s3.options import S3Credentials, S3Options, parse_s3_url
from support.paths import REPO_ROOT

CREDENTIALS = "[default]\naws_access_key_id = AKID\naws_secret_access_key = SECRET\n"


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    path.chmod(mode)
    return path


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    write(
        tmp_path / "servingd.yaml",
        """
        models_dir: models.d
        s3:
          endpoint: http://127.0.0.1:9000
          region: eu-west-3
          path_style: false
          ca_bundle: ca.pem
          poll_interval_seconds: 15
          settle_seconds: 5
          cache_dir: cache
          credentials_file: s3-credentials
        """,
    )
    write(tmp_path / "s3-credentials", CREDENTIALS, 0o600)
    write(tmp_path / "models.d/hp2.yaml", "base_path: s3://models/fleet/hp2\n")
    return tmp_path


def load(etc: Path) -> ServerSettings:
    return load_settings([f"--config={etc / 'servingd.yaml'}"])


def test_servingd_yaml_s3_section(etc: Path) -> None:
    s = load(etc)
    assert s.models[0].base_path == "s3://models/fleet/hp2"  # not joined to model_root
    assert (s.s3_endpoint, s.s3_region, s.s3_path_style) == (
        "http://127.0.0.1:9000",
        "eu-west-3",
        False,
    )
    assert s.s3_ca_bundle == str(etc / "ca.pem") and s.s3_cache_dir == str(etc / "cache")
    assert (s.s3_poll_interval_s, s.s3_settle_s) == (15.0, 5.0)
    assert s.s3_credentials == S3Credentials("AKID", "SECRET")
    assert "SECRET" not in repr(s)


def test_world_readable_credentials_file_is_refused_by_check_config(
    etc: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (etc / "s3-credentials").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by every user"):
        load(etc)
    assert servingctl([f"--config={etc / 'servingd.yaml'}", "check-config"]) == 1
    assert "s3-credentials: S3 credentials file is readable by every user" in caplog.text
    assert servingd_main(["--check-config", f"--config={etc / 'servingd.yaml'}"]) == 1
    (etc / "s3-credentials").chmod(0o640)  # root:servingd 640 is fine
    assert servingd_main(["--check-config", f"--config={etc / 'servingd.yaml'}"]) == 0


def test_incomplete_credentials_file_is_refused(etc: Path) -> None:
    write(etc / "s3-credentials", "[default]\naws_access_key_id = AKID\n", 0o600)
    with pytest.raises(ConfigError, match="needs aws_access_key_id and aws_secret_access_key"):
        load(etc)


def test_systemd_credential_is_used_without_a_credentials_file(
    etc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (etc / "servingd.yaml").read_text().replace("  credentials_file: s3-credentials\n", "")
    write(etc / "servingd.yaml", text)
    assert load(etc).s3_credentials is None
    credentials = tmp_path / "credentials"
    write(credentials / "s3", CREDENTIALS.replace("AKID", "FROM-SYSTEMD"), 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = load(etc)
    assert settings.s3_credentials is not None
    assert settings.s3_credentials.access_key_id == "FROM-SYSTEMD"
    # Read with no s3:// model too: one added by a later reload uses the keys of the start.
    (etc / "models.d/hp2.yaml").write_text("base_path: /srv/hp2\n")
    assert load(etc).s3_credentials == settings.s3_credentials


@pytest.mark.parametrize(
    ("base_path", "message"),
    [("s3:///hp2", "names no bucket"), ("s3://models/../etc", "'..' are not allowed")],
)
def test_malformed_s3_base_path_is_refused_at_its_line(
    etc: Path, base_path: str, message: str
) -> None:
    write(etc / "models.d/hp2.yaml", f"name: hp2\nbase_path: {base_path}\n")
    with pytest.raises(ConfigError, match=message) as info:
        load(etc)
    assert info.value.path == str(etc / "models.d/hp2.yaml") and info.value.line == 2


def test_model_base_path_flag_and_models_config_take_s3_urls(tmp_path: Path) -> None:
    flags = load_settings(["--model_name=hp2", "--model_base_path=s3://models/hp2"])
    assert flags.models[0].base_path == "s3://models/hp2"
    config = write(
        tmp_path / "models.config",
        'model_config_list { config { name: "hp2" base_path: "s3://models/hp2" '
        'model_platform: "tensorflow" } }\n',
    )
    settings = load_settings([f"--model_config_file={config}"])
    assert settings.models[0].base_path == "s3://models/hp2"
    with pytest.raises(ConfigError, match="names no bucket"):
        load_settings(["--model_name=hp2", "--model_base_path=s3://"])


def test_tf_serving_s3_variables_fill_what_servingd_yaml_leaves_out() -> None:
    environ = {
        "S3_ENDPOINT": "minio.internal:9000",
        "S3_USE_HTTPS": "0",
        "S3_VERIFY_SSL": "0",
        "AWS_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "ENVKEY",
        "AWS_SECRET_ACCESS_KEY": "ENVSECRET",
        "AWS_SESSION_TOKEN": "TOKEN",
        "CACHE_DIRECTORY": "/var/cache/servingd",
    }
    defaults = {
        "endpoint": "",
        "region": "",
        "path_style": None,
        "ca_bundle": "",
        "poll_interval_s": 30.0,
        "settle_s": 10.0,
        "cache_dir": "",
        "credentials": None,
    }
    o = S3Options.from_settings(**defaults, environ=environ)  # type: ignore[arg-type]
    assert o.endpoint_url == "http://minio.internal:9000"
    assert o.path_style is True and o.verify is False and o.region == "eu-central-1"
    assert o.credentials == S3Credentials("ENVKEY", "ENVSECRET", "TOKEN")
    assert o.cache_dir == "/var/cache/servingd/s3"
    aws = S3Options.from_settings(**defaults, environ={})  # type: ignore[arg-type]
    assert aws.endpoint_url is None and aws.path_style is False and aws.verify is True
    assert aws.credentials is None and aws.cache_dir == "/var/cache/servingd/s3"
    yaml_wins = dict(defaults, endpoint="https://s3.example.net", ca_bundle="/ca.pem")
    o = S3Options.from_settings(**yaml_wins, environ=environ)  # type: ignore[arg-type]
    assert o.endpoint_url == "https://s3.example.net" and o.verify == "/ca.pem"


def test_s3_url_parts() -> None:
    assert parse_s3_url("s3://models/fleet//hp2/") == ("models", "fleet/hp2")
    assert parse_s3_url("s3://models") == ("models", "")


def test_sha256sums_format() -> None:
    digest = "ab" * 32
    manifest = parse_manifest(f"# made by sha256sum\n{digest}  ./saved_model.pb\n{digest} *v/x\n")
    assert manifest == {"saved_model.pb": digest, "v/x": digest}
    assert manifest_mismatches(manifest, {"saved_model.pb": digest, "v/x": digest}) == []
    problems = manifest_mismatches(manifest, {"saved_model.pb": "cd" * 32, "extra": digest})
    assert problems == [
        "extra is not in SHA256SUMS",
        f"saved_model.pb has sha256 {'cd' * 32}, SHA256SUMS says {digest}",
        "v/x is in SHA256SUMS but not in the store",
    ]
    with pytest.raises(ValueError, match="line 1"):
        parse_manifest("not a digest  file\n")


def test_boto3_is_imported_only_for_s3_base_paths(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    code = textwrap.dedent(
        f"""
        import sys
        from servingd.config.load import load_settings
        from servingd.sources.polling import PollingSource, SourceModelConfig
        from servingd.sources.router import StoreRouter
        from servingd.sources.version_store import LocalStore
        settings = load_settings(["--model_name=m", "--model_base_path={tmp_path}"])
        def s3():
            raise AssertionError("S3 store built")
        source = PollingSource(
            [SourceModelConfig("m", "{tmp_path}")], lambda i, p: None, poll_wait_s=-1,
            store_for=StoreRouter(LocalStore(1, 1), s3),
        )
        source.poll_once()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore")))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
