"""Unbatched Predict runs on the event-loop thread only for signatures known to be fast.

One daemon for the module, from a servingd.yaml: half_plus_two (the TF1 export, fast), the
same model batched, and the project's sleepy model twice (each call sleeps as long as it
asks; `sleepy` is asked for slow runs, `sleepy_short` for short ones), Prometheus on. What
the policy decided shows in `servingd_inline_runs_total`.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc, regression_pb2

from servingd.cli.main import main as servingctl
from support.proc_threads import TF_INTER_OP, cpu_ticks
from support.servingd_process import ServingdProcess
from support.slow_model import export_sleepy

METRICS_PATH = "/metrics"
INLINE_MAX_MS = 50  # generous: a loaded test machine must not push half_plus_two past it
WARM_RUNS = 8  # InlinePolicy's default min_runs: the first runs always go to a worker


@pytest.fixture(scope="module")
def etc(tmp_path_factory: pytest.TempPathFactory, testdata: Path) -> Path:
    etc = tmp_path_factory.mktemp("etc")
    sleepy = etc / "sleepy"
    export_sleepy(sleepy / "1")
    (etc / "monitoring.config").write_text(
        f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n'
    )
    (etc / "models.d").mkdir()
    (etc / "models.d/hp2.yaml").write_text(
        f"base_path: {testdata / 'saved_model_half_plus_two_cpu'}\n"
    )
    (etc / "models.d/sleepy.yaml").write_text(f"base_path: {sleepy}\n")
    (etc / "models.d/sleepy_short.yaml").write_text(f"base_path: {sleepy}\n")
    (etc / "models.d/hp2_batched.yaml").write_text(
        f"base_path: {testdata / 'saved_model_half_plus_two_cpu'}\n"
        "batching: {max_batch_size: 8, batch_timeout_micros: 0}\n"
    )
    (etc / "servingd.yaml").write_text(
        "monitoring_config_file: monitoring.config\n"
        f"inline_run_max_ms: {INLINE_MAX_MS}\n"
        "models_dir: models.d\n"
        "logging: {level: info, target: stderr}\n"
    )
    return etc


@pytest.fixture(scope="module")
def server(etc: Path) -> Iterator[ServingdProcess]:
    with ServingdProcess([f"--config={etc / 'servingd.yaml'}"]) as process:
        process.wait_healthy()
        yield process


@pytest.fixture(scope="module")
def stub(server: ServingdProcess) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(server.channel())


def inline_runs(server: ServingdProcess, model: str) -> float:
    url = f"http://127.0.0.1:{server.rest_port}{METRICS_PATH}"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf'^servingd_inline_runs_total{{model_name="{model}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def hp2(
    stub: prediction_service_pb2_grpc.PredictionServiceStub, xs: list[float], model: str = "hp2"
) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].dtype = 1  # DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = len(xs)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    request.inputs["x"].float_val.extend(xs)
    return list(stub.Predict(request, timeout=30).outputs["y"].float_val)


def sleepy(
    stub: prediction_service_pb2_grpc.PredictionServiceStub, micros: int, model: str = "sleepy"
) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["micros"].dtype = 9  # DT_INT64
    request.inputs["micros"].tensor_shape.dim.add().size = 1
    request.inputs["micros"].int64_val.append(micros)
    stub.Predict(request, timeout=60)


def test_a_fast_signature_runs_inline_once_it_has_a_record(
    server: ServingdProcess, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    before = inline_runs(server, "hp2")
    for i in range(WARM_RUNS + 12):
        assert hp2(stub, [float(i)]) == [i / 2 + 2]
    assert inline_runs(server, "hp2") - before >= 12


def test_a_big_request_to_a_fast_model_goes_to_a_worker(
    server: ServingdProcess, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    for i in range(WARM_RUNS):
        hp2(stub, [float(i)])
    before = inline_runs(server, "hp2")
    xs = [float(i % 100) for i in range(200_000)]
    assert hp2(stub, xs)[:3] == [2.0, 2.5, 3.0]
    assert inline_runs(server, "hp2") == before


def test_a_slow_model_never_runs_inline_and_never_stalls_other_requests(
    server: ServingdProcess, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    for _ in range(WARM_RUNS + 2):
        sleepy(stub, 100_000)  # 100 ms each, twice the inline limit
    assert inline_runs(server, "sleepy") == 0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        long_call = pool.submit(sleepy, stub, 8_000_000)
        time.sleep(0.5)  # the 8 s call is running
        # Answered while the long run still sleeps: the loop was free. (The order is the
        # verdict, not a duration: a busy machine slows both calls, not the sleep.)
        assert hp2(stub, [1.0]) == [2.5]
        assert not long_call.done()
        long_call.result(timeout=30)
    assert inline_runs(server, "sleepy") == 0


def test_runs_that_could_go_inline_go_to_workers_while_the_loop_is_loaded(
    server: ServingdProcess, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    """One client: 1 ms runs go inline. 16 clients keep the loop busy between requests
    (loop_load), and the runs go to the workers; one client again, and they come back."""

    def short_runs(count: int, clients: int) -> float:
        before = inline_runs(server, "sleepy_short")
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda _: sleepy(stub, 1000, "sleepy_short"), range(count)))
        return (inline_runs(server, "sleepy_short") - before) / count

    short_runs(2 * WARM_RUNS, clients=1)
    assert short_runs(40, clients=1) >= 0.75
    assert short_runs(1600, clients=16) <= 0.25  # 0.02-0.04 on 2 cores
    short_runs(20, clients=1)  # the readings of idle gaps bring the load down
    assert short_runs(40, clients=1) >= 0.75


def test_reload_with_zero_turns_inline_runs_off(
    server: ServingdProcess, etc: Path, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    config = etc / "servingd.yaml"
    original = config.read_text()
    ctl = [f"--config={config}", f"--rest-url=http://127.0.0.1:{server.rest_port}"]
    try:
        config.write_text(
            original.replace(f"inline_run_max_ms: {INLINE_MAX_MS}", "inline_run_max_ms: 0")
        )
        assert servingctl([*ctl, "reload", "--timeout=120"]) == 0
        before = inline_runs(server, "hp2")
        for i in range(WARM_RUNS + 4):
            assert hp2(stub, [float(i)]) == [i / 2 + 2]
        assert inline_runs(server, "hp2") == before
    finally:
        config.write_text(original)
        assert servingctl([*ctl, "reload", "--timeout=120"]) == 0
    for i in range(4):
        hp2(stub, [float(i)])
    assert inline_runs(server, "hp2") > before


def test_regress_to_a_fast_signature_runs_inline_after_its_record(
    server: ServingdProcess, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "hp2"
    request.model_spec.signature_name = "regress_x_to_y"  # its own record, apart from Predict's
    for x in (2.0, 4.0):
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    before = inline_runs(server, "hp2")
    for _ in range(WARM_RUNS):
        assert [r.value for r in stub.Regress(request, timeout=30).result.regressions] == [3.0, 4.0]
    assert inline_runs(server, "hp2") == before  # no record yet: worker threads
    for _ in range(4):
        assert [r.value for r in stub.Regress(request, timeout=30).result.regressions] == [3.0, 4.0]
    assert inline_runs(server, "hp2") == before + 4


def test_inline_runs_execute_tensorflow_on_the_loop_thread(
    server: ServingdProcess, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    """Through TensorFlow's inter-op threads, 1500 runs of half_plus_two cost them 30-50
    ticks here; inline runs hand them nothing (SavedModelServable's in_caller_thread)."""
    assert server.proc is not None
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "hp2"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    calls = {
        "Predict": lambda: hp2(stub, [2.0]) == [3.0],
        "Regress": lambda: stub.Regress(regress, timeout=30).result.regressions[0].value == 3.0,
    }
    for method, call in calls.items():
        for _ in range(WARM_RUNS + 2):
            assert call()
        inline_before = inline_runs(server, "hp2")
        ticks_before = cpu_ticks(server.proc.pid, TF_INTER_OP)
        for _ in range(1500):
            assert call()
        assert inline_runs(server, "hp2") - inline_before >= 1400, method
        assert cpu_ticks(server.proc.pid, TF_INTER_OP) - ticks_before <= 3, method


def test_short_batched_runs_execute_tensorflow_on_the_batch_thread(
    server: ServingdProcess, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    """A batched model's runs known to be short hand TensorFlow's inter-op threads nothing
    either (batching.session's SHORT_BATCH_RUN_S); they never run inline."""
    assert server.proc is not None
    for _ in range(3):
        assert hp2(stub, [2.0], "hp2_batched") == [3.0]
    ticks_before = cpu_ticks(server.proc.pid, TF_INTER_OP)
    for _ in range(1500):
        assert hp2(stub, [2.0], "hp2_batched") == [3.0]
    assert cpu_ticks(server.proc.pid, TF_INTER_OP) - ticks_before <= 3
    assert inline_runs(server, "hp2_batched") == 0
