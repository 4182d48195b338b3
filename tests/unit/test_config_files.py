"""servingd.yaml + models.d: validation with file:line, precedence, the packaged conffile."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from servingd.cli.main import main as servingctl
from servingd.cli.main import parse_args as servingctl_args
from servingd.config.errors import ConfigError
from servingd.config.load import load_settings
from servingd.config.settings import ServerSettings
from servingd.daemon.main import main as servingd_main
from servingd.sources.version_policy import All, Latest, Specific
from support.paths import REPO_ROOT


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    write(
        tmp_path / "servingd.yaml",
        """
        grpc: {port: 8600, bind_address: 127.0.0.1}
        rest: {port: 8601}
        models_dir: models.d
        model_root: /srv/models
        logging: {level: warning}
        """,
    )
    write(tmp_path / "models.d/a.yaml", "base_path: /srv/a\n")
    return tmp_path


def load(etc: Path, *flags: str) -> ServerSettings:
    return load_settings([f"--config={etc / 'servingd.yaml'}", *flags])


def refused(etc: Path, *flags: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(etc, *flags)
    return info.value


def test_packaged_conffile_is_valid_and_listens_on_loopback(tmp_path: Path) -> None:
    packaged = REPO_ROOT / "etc/servingd.yaml"
    settings = load_settings([f"--config={packaged}", f"--models_dir={tmp_path}"])
    assert (settings.grpc_bind_address, settings.grpc_port) == ("127.0.0.1", 8500)
    assert (settings.rest_bind_address, settings.rest_port) == ("127.0.0.1", 8501)
    assert settings.drain_grace_s == 30 and settings.file_system_poll_wait_s == 1
    assert settings.model_root == "/var/lib/servingd/models"
    assert settings.batching is None and settings.models == ()


def test_packaged_example_model_is_valid(tmp_path: Path) -> None:
    example = (REPO_ROOT / "etc/models.d/example.yaml.disabled").read_text()
    write(tmp_path / "servingd.yaml", "models_dir: models.d\n")
    write(tmp_path / "models.d/half_plus_two.yaml", example)
    (model,) = load_settings([f"--config={tmp_path / 'servingd.yaml'}"]).models
    assert model.name == "half_plus_two"
    assert model.version_policy == Latest(2)


def test_example_disabled_and_dpkg_files_are_ignored(etc: Path) -> None:
    write(etc / "models.d/b.yaml.disabled", "nonsense: [")
    write(etc / "models.d/c.yaml.dpkg-dist", "nonsense: [")
    assert [m.name for m in load(etc).models] == ["a"]


def test_yaml_values_and_relative_paths(etc: Path) -> None:
    settings = load(etc)
    assert settings.grpc_port == 8600 and settings.rest_port == 8601
    assert settings.log_level == "warning"
    assert settings.models_dir == str(etc / "models.d")
    (model,) = settings.models
    assert model.base_path == "/srv/a" and model.origin == f"{etc / 'models.d/a.yaml'}:1"


def test_command_line_beats_yaml_beats_defaults(etc: Path) -> None:
    settings = load(etc, "--port=8500", "--log_level=debug")
    assert settings.grpc_port == 8500  # given, though the default
    assert settings.log_level == "debug"
    assert settings.rest_port == 8601  # from the yaml
    assert settings.rest_bind_address == "0.0.0.0"  # default
    assert settings.drain_grace_s == 30.0


def test_unknown_top_level_key_names_its_line(etc: Path) -> None:
    config = etc / "servingd.yaml"
    config.write_text(config.read_text() + "drain_grace_secnds: 5\n")
    error = refused(etc)
    assert (error.path, error.line) == (str(config), 6)
    assert "unknown key 'drain_grace_secnds'" in error.message


def test_unknown_section_key_names_its_line(etc: Path) -> None:
    write(etc / "servingd.yaml", "models_dir: models.d\nrest:\n  port: 1\n  prot: 2\n")
    error = refused(etc)
    assert error.line == 4 and "unknown key 'prot'" in error.message


def test_wrong_type_names_the_value_line(etc: Path) -> None:
    write(etc / "servingd.yaml", "models_dir: models.d\ngrpc:\n  port: eighty\n")
    error = refused(etc)
    assert error.line == 3 and "grpc.port must be an integer" in error.message


def test_yaml_syntax_error_names_line_and_column(etc: Path) -> None:
    write(etc / "models.d/b.yaml", "name: b\nbase_path: [unclosed\n")
    error = refused(etc)
    assert error.path == str(etc / "models.d/b.yaml") and error.line == 3
    assert "invalid YAML" in error.message


def test_drop_in_errors_name_file_and_line(etc: Path) -> None:
    path = write(
        etc / "models.d/b.yaml",
        """
        name: b
        base_path: /srv/b
        version_labels:
          stable: one
        """,
    )
    error = refused(etc)
    assert (error.path, error.line) == (str(path), 4)
    assert str(error).startswith(f"{path}:4: version label 'stable' must be an integer")


def test_drop_in_needs_base_path(etc: Path) -> None:
    write(etc / "models.d/b.yaml", "name: b\n")
    assert "base_path is required" in refused(etc).message


def test_unknown_batching_key_is_refused(etc: Path) -> None:
    write(etc / "models.d/b.yaml", "base_path: b\nbatching:\n  max_batch_sise: 8\n")
    error = refused(etc)
    assert error.line == 3 and "unknown key 'max_batch_sise'" in error.message


def test_drop_in_fields(etc: Path) -> None:
    write(
        etc / "models.d/b.yaml",
        """
        name: bee
        base_path: b
        version_policy: {specific: [1, 3]}
        version_labels: {stable: 1, canary: 3}
        batching: {max_batch_size: 8, allowed_batch_sizes: [4, 8]}
        device: CPU
        """,
    )
    models = {m.name: m for m in load(etc).models}
    bee = models["bee"]
    assert bee.base_path == "/srv/models/b"
    assert bee.version_policy == Specific(frozenset({1, 3}))
    assert bee.version_labels == {"stable": 1, "canary": 3}
    assert bee.batching is not None and bee.batching.allowed_batch_sizes == (4, 8)
    assert bee.device == "CPU"


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("all", All()),
        ("latest", Latest(1)),
        ("{latest: {num_versions: 3}}", Latest(3)),
        ("{specific: {versions: [7]}}", Specific(frozenset({7}))),
    ],
)
def test_version_policy_forms(etc: Path, text: str, policy: object) -> None:
    write(etc / "models.d/a.yaml", f"base_path: a\nversion_policy: {text}\n")
    (model,) = load(etc).models
    assert model.version_policy == policy


def test_bad_version_policy(etc: Path) -> None:
    write(etc / "models.d/a.yaml", "base_path: a\nversion_policy:\n  latest: {num_versions: 0}\n")
    error = refused(etc)
    assert error.line == 3 and "num_versions must be >= 1" in error.message


def test_model_defined_in_models_config_and_drop_in(etc: Path) -> None:
    models_config = write(
        etc / "models.config",
        'model_config_list { config { name: "a" base_path: "/srv/x" } }\n',
    )
    config = etc / "servingd.yaml"
    config.write_text(config.read_text() + "model_config_file: models.config\n")
    error = refused(etc)
    assert "model 'a' is defined twice" in error.message
    assert str(models_config) in error.message


def test_models_config_beside_models_dir(etc: Path) -> None:
    write(etc / "models.config", 'model_config_list { config { name: "x" base_path: "/x" } }\n')
    config = etc / "servingd.yaml"
    config.write_text(config.read_text() + "model_config_file: models.config\n")
    assert sorted(m.name for m in load(etc).models) == ["a", "x"]


def test_check_config_exit_codes(etc: Path) -> None:
    config = f"--config={etc / 'servingd.yaml'}"
    assert servingd_main(["--check-config", config]) == 0
    assert servingd_main(["--check_config", config]) == 0
    write(etc / "models.d/b.yaml", "base_path: b\nlabels: {}\n")
    assert servingd_main(["--check-config", config]) == 1


def test_servingctl_check_config(etc: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = f"--config={etc / 'servingd.yaml'}"
    assert servingctl([config, "check-config"]) == 0
    bad = write(etc / "models.d/b.yaml", "base_path: b\ndevice: [GPU]\n")
    assert servingctl([config, "check-config"]) == 1
    assert f"{bad}:2: device must be a single value, got a list" in caplog.text


def test_servingctl_options_go_before_or_after_the_command(etc: Path) -> None:
    config = str(etc / "servingd.yaml")
    assert servingctl(["check-config", "--config", config]) == 0
    assert servingctl(["check-config", f"--config={config}"]) == 0
    assert servingctl_args([f"--config={config}", "check-config"]).config == config
    assert servingctl_args(["status"]).config == "/etc/servingd/servingd.yaml"
    after = servingctl_args(["--http-timeout=5", "status", "--rest-url", "http://h:1"])
    assert (after.http_timeout, after.rest_url) == (5.0, "http://h:1")


def test_servingctl_models_lists_the_configured_models(
    etc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(etc / "models.d/b.yaml", "base_path: /srv/b\nversion_policy: {specific: [1, 3]}\n")
    assert servingctl(["models", f"--config={etc / 'servingd.yaml'}"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        ["MODEL", "VERSIONS", "BASE", "PATH"],
        ["a", "latest", "1", "/srv/a"],
        ["b", "specific", "1,3", "/srv/b"],
    ]


def test_servingctl_predict_takes_the_body_once() -> None:
    body = '{"instances": [1.0]}'
    assert servingctl_args(["predict", "m", body]).json == body
    assert servingctl_args(["predict", "m", "--json", body]).json == body
    for twice_or_never in (["predict", "m", body, "--json", body], ["predict", "m"]):
        with pytest.raises(SystemExit) as exited:
            servingctl_args(twice_or_never)
        assert exited.value.code == 2


def test_batching_value_error_names_the_key_line(etc: Path) -> None:
    write(
        etc / "models.d/b.yaml",
        "base_path: b\nbatching:\n  max_batch_size: 8\n  num_batch_threads: many\n",
    )
    error = refused(etc)
    assert error.line == 4 and "num_batch_threads" in error.message


def test_model_batching_inherits_the_server_wide_parameters(etc: Path) -> None:
    config = etc / "servingd.yaml"
    config.write_text(
        config.read_text()
        + "enable_batching: true\nbatching: {max_batch_size: 64, batch_timeout_micros: 100}\n"
    )
    write(etc / "models.d/b.yaml", "base_path: b\nbatching: {batch_timeout_micros: 5}\n")
    settings = load(etc)
    assert settings.batching is not None and settings.batching.max_batch_size == 64
    model = {m.name: m for m in settings.models}["b"]
    assert model.batching is not None
    assert (model.batching.max_batch_size, model.batching.batch_timeout_micros) == (64, 5)
    assert load(etc, "--enable_batching=false").batching is None  # the command line wins


PEM_SSL_CONFIG = (
    'server_key: "-----BEGIN PRIVATE KEY-----\\nx\\n-----END PRIVATE KEY-----\\n"\n'
    'server_cert: "-----BEGIN CERTIFICATE-----\\nx\\n-----END CERTIFICATE-----\\n"\n'
)


def test_limits_tls_token_and_monitoring_keys(etc: Path) -> None:
    write(etc / "tls.pbtxt", PEM_SSL_CONFIG)
    write(etc / "token", "s3cret\n").chmod(0o600)
    write(etc / "monitoring.config", 'prometheus_config { enable: true path: "/m" }\n')
    write(
        etc / "servingd.yaml",
        """
        models_dir: models.d
        grpc: {ssl_config_file: tls.pbtxt, max_receive_message_bytes: 1000}
        rest: {port: 8601, ssl_config_file: tls.pbtxt, max_body_bytes: 0}
        limits:
          max_in_flight_requests: 7
          max_in_flight_requests_per_model: 3
          max_tensor_elements: 99
        admin_token_file: token
        monitoring_config_file: monitoring.config
        """,
    )
    settings = load(etc)
    assert settings.grpc_tls is not None and settings.rest_tls == settings.grpc_tls
    assert settings.grpc_tls.server_cert.startswith(b"-----BEGIN CERTIFICATE")
    assert settings.grpc_max_receive_bytes == 1000
    assert settings.rest_max_body_bytes == 2**62  # 0: no limit, as the flag
    assert (settings.max_in_flight, settings.max_in_flight_per_model) == (7, 3)
    assert settings.max_tensor_elements == 99
    assert settings.admin_token == "s3cret"
    assert settings.prometheus_path == "/m"


def test_limit_flags_beat_yaml_beats_defaults(etc: Path) -> None:
    config = etc / "servingd.yaml"
    config.write_text(
        config.read_text() + "limits: {max_in_flight_requests: 7, max_tensor_elements: 99}\n"
    )
    settings = load(etc, "--max_in_flight_requests=1024", "--rest_api_max_body_bytes=10")
    assert settings.max_in_flight == 1024  # given on the command line, though the default
    assert settings.max_tensor_elements == 99  # from the yaml
    assert settings.rest_max_body_bytes == 10
    assert settings.max_in_flight_per_model == 0 and settings.grpc_tls is None  # defaults
    assert settings.admin_token is None and settings.prometheus_path is None


def test_flag_file_beats_yaml_file(etc: Path) -> None:
    write(etc / "a.token", "from-yaml\n").chmod(0o600)
    write(etc / "b.token", "from-flag\n").chmod(0o600)
    config = etc / "servingd.yaml"
    config.write_text(config.read_text() + "admin_token_file: a.token\n")
    assert load(etc).admin_token == "from-yaml"
    assert load(etc, f"--admin_token_file={etc / 'b.token'}").admin_token == "from-flag"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("limits:\n  max_in_flight_requests: -1\n", 3, "max_in_flight_requests must be >= 0"),
        ("limits:\n  max_tensor_elements: lots\n", 3, "must be an integer"),
        ("limits:\n  max_inflight: 3\n", 3, "unknown key 'max_inflight'"),
        ("rest:\n  max_body_bytes: 1.5\n", 3, "rest.max_body_bytes must be an integer"),
        ("grpc:\n  ssl_config_file: [a]\n", 3, "must be a single value"),
        ("admin_token_file: 5\n", 2, "admin_token_file must be a string"),
    ],
)
def test_bad_limit_and_file_values_name_their_line(
    etc: Path, text: str, line: int, message: str
) -> None:
    write(etc / "servingd.yaml", "models_dir: models.d\n" + text)
    error = refused(etc)
    assert (error.path, error.line) == (str(etc / "servingd.yaml"), line)
    assert message in error.message


def test_broken_files_named_by_yaml_are_refused_with_their_own_name(etc: Path) -> None:
    config = etc / "servingd.yaml"
    base = "models_dir: models.d\n"
    config.write_text(base + "admin_token_file: missing.token\n")
    error = refused(etc)
    assert error.path == str(etc / "missing.token") and "cannot be read" in error.message
    write(etc / "tls.pbtxt", 'server_key: "/etc/key.pem"\nserver_cert: "/etc/cert.pem"\n')
    config.write_text(base + "rest: {ssl_config_file: tls.pbtxt}\n")
    error = refused(etc)
    assert error.path == str(etc / "tls.pbtxt") and "PEM text" in error.message
    write(etc / "monitoring.config", "prometheus_config { enabel: true }\n")
    config.write_text(base + "monitoring_config_file: monitoring.config\n")
    error = refused(etc)
    assert (error.path, error.line) == (str(etc / "monitoring.config"), 1)


def test_one_bind_address_line_for_both_listeners(etc: Path) -> None:
    write(
        etc / "servingd.yaml",
        "models_dir: models.d\nbind_address: 192.0.2.1\nrest: {port: 8601}\n",
    )
    settings = load(etc)
    assert (settings.grpc_bind_address, settings.rest_bind_address) == ("192.0.2.1", "192.0.2.1")
    write(
        etc / "servingd.yaml",
        "models_dir: models.d\nbind_address: 192.0.2.1\ngrpc: {bind_address: 192.0.2.2}\n",
    )
    settings = load(etc, "--rest_api_bind_address=192.0.2.3")
    assert settings.grpc_bind_address == "192.0.2.2"  # the section's own wins
    assert settings.rest_bind_address == "192.0.2.3"  # the command line wins
    write(etc / "servingd.yaml", "models_dir: models.d\nbind_address: [a]\n")
    assert refused(etc).line == 2


def test_packaged_conffile_opens_up_with_one_line(tmp_path: Path) -> None:
    text = (REPO_ROOT / "etc/servingd.yaml").read_text()
    assert text.count("\nbind_address: 127.0.0.1") == 1
    opened = write(
        tmp_path / "servingd.yaml",
        text.replace("\nbind_address: 127.0.0.1", "\nbind_address: 0.0.0.0"),
    )
    (tmp_path / "models.d").mkdir()
    settings = load_settings([f"--config={opened}", f"--models_dir={tmp_path / 'models.d'}"])
    assert (settings.grpc_bind_address, settings.rest_bind_address) == ("0.0.0.0", "0.0.0.0")


def test_per_model_batching_files_from_yaml_or_flag(etc: Path) -> None:
    assert load(etc).per_model_batching_parameters is False
    config = etc / "servingd.yaml"
    config.write_text(config.read_text() + "enable_per_model_batching_parameters: true\n")
    assert load(etc).per_model_batching_parameters is True
    flag = "--enable_per_model_batching_parameters=false"
    assert load(etc, flag).per_model_batching_parameters is False  # the command line wins


def test_compute_thread_nice_from_yaml_and_flag(etc: Path) -> None:
    assert load(etc).compute_thread_nice == 0
    config = etc / "servingd.yaml"
    config.write_text(config.read_text() + "compute_thread_nice: 12\n")
    assert load(etc).compute_thread_nice == 12
    assert load(etc, "--compute_thread_nice=3").compute_thread_nice == 3


@pytest.mark.parametrize("value", ["20", "-1", "high"])
def test_compute_thread_nice_out_of_range_names_its_line(etc: Path, value: str) -> None:
    config = etc / "servingd.yaml"
    config.write_text(config.read_text() + f"compute_thread_nice: {value}\n")
    error = refused(etc)
    assert (error.path, error.line) == (str(config), 6)
    assert "compute_thread_nice" in error.message


@pytest.mark.parametrize("value", ["20", "-1"])
def test_compute_thread_nice_flag_out_of_range_is_refused(etc: Path, value: str) -> None:
    error = refused(etc, f"--compute_thread_nice={value}")
    assert "--compute_thread_nice must be within [0, 19]" in error.message


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deeply_nested_yaml_is_refused_with_its_position(etc: Path, opening: str) -> None:
    # 5,000 levels: PyYAML's composer would recurse past Python's limit.
    (etc / "servingd.yaml").write_text("logging: {level: info}\nmodels_dir: " + opening * 5000)
    error = refused(etc)
    assert f"{etc / 'servingd.yaml'}:2:" in str(error)
    assert "nested more than 100 deep" in str(error)


def test_the_obsolete_inline_run_setting_is_accepted_and_ignored(
    etc: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # It was in the packaged servingd.yaml: an upgrade may keep an edited copy.
    text = (etc / "servingd.yaml").read_text()
    (etc / "servingd.yaml").write_text(text + "inline_run_max_ms: 2\n")
    settings = load(etc, "--inline_run_max_ms=0")
    assert not hasattr(settings, "inline_run_max_ms")
    assert "inline_run_max_ms is obsolete and ignored" in caplog.text


def test_unparsable_model_config_file_has_tf_servings_text_and_file_line(etc: Path) -> None:
    bad = write(etc / "models.config", 'model_config_list {\n  config { nme: "x" }\n}\n')
    error = refused(etc, f"--model_config_file={bad}")
    assert str(error).startswith(
        f"{bad}:2:12: Error parsing text-format tensorflow.serving.ModelServerConfig: 2:12: "
    ), str(error)


def test_check_config_warns_about_a_missing_base_path(
    etc: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = f"--config={etc / 'servingd.yaml'}"
    assert servingd_main(["--check-config", config]) == 0  # a warning, not a refusal
    assert "model a: base path /srv/a does not exist" in caplog.text
    assert servingctl([config, "check-config"]) == 0
    assert caplog.text.count("model a: base path /srv/a does not exist") == 2


def test_fall_back_to_loadable_version_setting(etc: Path) -> None:
    assert load(etc).fall_back_to_loadable_version is True
    assert load(etc, "--fall_back_to_loadable_version=false").fall_back_to_loadable_version is False
    config = etc / "servingd.yaml"
    config.write_text(config.read_text() + "loading: {fall_back_to_loadable_version: false}\n")
    assert load(etc).fall_back_to_loadable_version is False
