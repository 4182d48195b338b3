"""SavedModelLoader / SavedModelServable against the test models (support.testdata)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from servingd.core import errors
from servingd.core.ids import ServableId
from servingd.core.loader import Loader
from servingd.servables.saved_model import SavedModelLoader, SavedModelServable, SessionOptions
from servingd.tools.export_models import export_half_plus_two, export_mlp
from support.proc_threads import TF_INTER_OP, cpu_ticks

X = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)
Y = np.array([[2.5], [3.0], [4.5]], dtype=np.float32)


def _load(path: Path, name: str, version: int = 123, **opts: object) -> SavedModelLoader:
    loader = SavedModelLoader(ServableId(name, version), str(path), SessionOptions(**opts))  # type: ignore[arg-type]
    loader.load()
    return loader


@pytest.fixture(scope="session")
def half_plus_two_tf1(testdata: Path) -> Iterator[SavedModelServable]:
    loader = _load(testdata / "saved_model_half_plus_two_cpu" / "00000123", "hp2")
    yield loader.servable()
    loader.unload()


@pytest.fixture(scope="session")
def half_plus_two_tf2(testdata: Path) -> Iterator[SavedModelServable]:
    loader = _load(testdata / "saved_model_half_plus_two_tf2_cpu" / "00000123", "hp2tf2")
    yield loader.servable()
    loader.unload()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("exported")
    return {
        "half_plus_two": export_half_plus_two(base / "half_plus_two" / "1"),
        "mlp": export_mlp(base / "mlp" / "1"),
    }


@pytest.fixture
def broken_copy(testdata: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "00000123"
    shutil.copytree(testdata / "saved_model_half_plus_two_cpu" / "00000123", dst)
    return dst


# --- loading and predicting ------------------------------------------------------------


def test_tf1_half_plus_two(half_plus_two_tf1: SavedModelServable) -> None:
    sig = half_plus_two_tf1.signature("")
    assert sig.name == "serving_default"
    assert sig.method_name == "tensorflow/serving/predict"
    assert sig.inputs["x"].shape == (-1, 1) and sig.inputs["x"].dtype == np.float32
    out = half_plus_two_tf1.run(sig, {"x": X})
    np.testing.assert_array_equal(out["y"], Y)
    # TF Serving feeds by name without a shape check: the famous [1, 2, 5] request works.
    flat = half_plus_two_tf1.run(sig, {"x": X.ravel()})["y"]
    np.testing.assert_array_equal(flat, Y.ravel())


def test_tf2_half_plus_two(half_plus_two_tf2: SavedModelServable) -> None:
    sig = half_plus_two_tf2.signature("serving_default")
    # This export declares x as float32 [1]; TF Serving still runs [3]-shaped requests.
    assert sig.inputs["x"].shape == (1,)
    y = half_plus_two_tf2.run(sig, {"x": np.array([1.0, 2.0, 5.0], np.float32)})["y"]
    np.testing.assert_array_equal(y, Y.ravel())
    np.testing.assert_array_equal(half_plus_two_tf2.run(sig, {"x": X})["y"], Y)


def test_signature_def_map_and_init_op(
    half_plus_two_tf1: SavedModelServable, half_plus_two_tf2: SavedModelServable
) -> None:
    tf2_all = half_plus_two_tf2.signature_def_map()
    # TF Serving's GetModelMetadata copies every SignatureDef, the init op included.
    assert "__saved_model_init_op" in tf2_all
    tf2 = half_plus_two_tf2.signature_def_map(include_init_op=False)
    assert "__saved_model_init_op" not in tf2
    assert {"serving_default", "classify_x_to_y", "regress_x2_to_y3"} <= set(tf2)
    assert set(half_plus_two_tf1.signature_def_map()) == {
        "classify_x_to_y",
        "regress_x2_to_y3",
        "regress_x_to_y",
        "regress_x_to_y2",
        "serving_default",
    }
    assert half_plus_two_tf1.meta_graph_def.meta_info_def.tags == ["serve"]
    # The init op is no prediction signature.
    init = half_plus_two_tf2.signature("__saved_model_init_op")
    with pytest.raises(errors.Internal, match="Expected prediction signature method_name"):
        half_plus_two_tf2.run(init, {})


def test_counter_model_keeps_state(testdata: Path) -> None:
    loader = _load(testdata / "saved_model_counter" / "00000123", "counter")
    try:
        s = loader.servable()
        # TF1 reference variables: no function can hold them, so a Session runs it.
        assert isinstance(s, SavedModelServable)
        assert s.run(s.signature("reset_counter"), {})["output"] == 0
        got = [float(s.run(s.signature("incr_counter"), {})["output"]) for _ in range(3)]
        assert got == [1.0, 2.0, 3.0]
        by = s.signature("incr_counter_by")
        assert float(s.run(by, {"delta": np.float32(5)})["output"]) == 8.0
        assert float(s.run(s.signature("get_counter"), {})["output"]) == 8.0
    finally:
        loader.unload()


def test_loader_contract(testdata: Path) -> None:
    loader = SavedModelLoader(
        ServableId("hp3", 123),
        str(testdata / "saved_model_half_plus_three" / "00000123"),
    )
    assert isinstance(loader, Loader)
    est = loader.estimate_resources()
    size = sum(f.stat().st_size for f in Path(loader.path).rglob("*") if f.is_file())
    assert est.ram_bytes == int(size * 1.2)
    with pytest.raises(errors.FailedPrecondition, match="not loaded"):
        loader.servable()
    loader.load()
    s = loader.servable()
    assert loader.servable() is s and s.id == ServableId("hp3", 123)
    np.testing.assert_array_equal(s.run(s.signature(), {"x": X})["y"], X * 0.5 + 3)
    loader.unload()
    with pytest.raises(errors.Unavailable):
        s.run(s.signature(), {"x": X}, ["y"])  # a fetch set not cached yet


def test_session_options_are_applied(testdata: Path) -> None:
    path = testdata / "saved_model_half_plus_two_cpu" / "00000123"
    loader = _load(path, "hp2", intra_op_parallelism=1, inter_op_parallelism=1, device="CPU")
    try:
        s = loader.servable()
        np.testing.assert_array_equal(s.run(s.signature(), {"x": X})["y"], Y)
    finally:
        loader.unload()
    with pytest.raises(errors.InvalidArgument, match="device"):
        SessionOptions(device="TPU:x")
    with pytest.raises(errors.NotFound, match="tags"):
        _load(path, "hp2", tags=frozenset({"gpu"}))


# --- failed loads ----------------------------------------------------------------------


def _load_fails(path: Path) -> errors.ServingError:
    loader = SavedModelLoader(ServableId("bad", 7), str(path))
    with pytest.raises(errors.ServingError) as info:
        loader.load()
    message = str(info.value)
    assert "{name: bad version: 7}" in message and str(path) in message
    with pytest.raises(errors.FailedPrecondition):
        loader.servable()  # nothing left behind
    return info.value


def test_truncated_saved_model_pb(broken_copy: Path) -> None:
    pb = broken_copy / "saved_model.pb"
    with pb.open("r+b") as f:
        f.truncate(pb.stat().st_size // 2)
    err = _load_fails(broken_copy)
    assert isinstance(err, errors.DataLoss) and "Cannot parse" in str(err)


def test_missing_variables(broken_copy: Path) -> None:
    shutil.rmtree(broken_copy / "variables")
    err = _load_fails(broken_copy)
    assert isinstance(err, errors.NotFound) and "cannot restore the variables" in str(err)


def test_nonexistent_dir(tmp_path: Path) -> None:
    err = _load_fails(tmp_path / "missing")
    assert isinstance(err, errors.NotFound) and "does not exist" in str(err)
    with pytest.raises(errors.NotFound):
        SavedModelLoader(ServableId("bad", 7), str(tmp_path / "missing")).estimate_resources()


def test_unreadable_saved_model_pb(broken_copy: Path) -> None:
    # A read error that root cannot bypass: saved_model.pb is a directory.
    pb = broken_copy / "saved_model.pb"
    pb.unlink()
    pb.mkdir()
    err = _load_fails(broken_copy)
    assert isinstance(err, errors.FailedPrecondition) and "Is a directory" in str(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied(broken_copy: Path) -> None:
    (broken_copy / "saved_model.pb").chmod(0)
    err = _load_fails(broken_copy)
    assert "ermission denied" in str(err)


# --- request validation ----------------------------------------------------------------


INVALID = errors.InvalidArgument
REQUEST_ERRORS = [
    pytest.param(
        {"z": X}, (), INVALID, r"Signature input alias: x\(feed name: x:0\) not found", id="wrong"
    ),
    pytest.param(
        {},
        (),
        INVALID,
        r"input size does not match .*0!=1 .*Missing but required: \{x\}",
        id="miss",
    ),
    pytest.param(
        {"x": X, "z": X}, (), INVALID, r"input size does not match .*Sent extra: \{z\}", id="extra"
    ),
    pytest.param(
        {"x": X.astype(np.int32)},
        (),
        INVALID,
        "input tensor alias x .*expected dtype DT_FLOAT but got DT_INT32",
        id="dtype",
    ),
    pytest.param(
        {"x": np.array([b"a"], dtype=object)}, (), INVALID, "alias x .*got DT_STRING", id="string"
    ),
    pytest.param(
        {"x": X},
        ("nope",),
        INVALID,
        r"output tensor alias not found in signature: nope Outputs expected to be in the set \{y\}",
        id="output",
    ),
    pytest.param(
        {"x": X}, ("y", "y"), INVALID, "duplicate output tensor alias: y", id="dup-output"
    ),
]


@pytest.mark.parametrize(("inputs", "output_filter", "error", "match"), REQUEST_ERRORS)
def test_request_errors(
    half_plus_two_tf1: SavedModelServable,
    inputs: dict[str, np.ndarray],
    output_filter: tuple[str, ...],
    error: type[errors.ServingError],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        half_plus_two_tf1.run(half_plus_two_tf1.signature(), inputs, output_filter)


def test_unknown_signature(half_plus_two_tf1: SavedModelServable) -> None:
    with pytest.raises(
        errors.FailedPrecondition, match=r'^Serving signature key "nope" not found\.$'
    ):
        half_plus_two_tf1.signature("nope")


def test_shapes(half_plus_two_tf1: SavedModelServable) -> None:
    sig = half_plus_two_tf1.signature()
    with pytest.raises(
        errors.InvalidArgument, match=r"alias x .*expected shape \[-1, 1\] but got \[3\]"
    ):
        half_plus_two_tf1.run(sig, {"x": X.ravel()}, strict_shapes=True)
    with pytest.raises(errors.InvalidArgument, match=r"expected shape \[-1, 1\] but got \[3, 2\]"):
        sig.validate_inputs({"x": np.zeros((3, 2), np.float32)}, strict_shapes=True)
    assert sig.validate_inputs({"x": np.zeros((7, 1), np.float32)}, strict_shapes=True)[
        0
    ].shape == (7, 1)
    # Without strict_shapes nothing is checked here (see test_runtime_errors_keep_their_status).
    assert sig.validate_inputs({"x": np.zeros((3, 2), np.float32)})[0].shape == (3, 2)


def test_output_filter_selects_outputs(half_plus_two_tf2: SavedModelServable) -> None:
    sig = half_plus_two_tf2.signature("serving_default")
    assert list(half_plus_two_tf2.run(sig, {"x": X}, ["y"])) == ["y"]


def test_runtime_errors_keep_their_status(exported: dict[str, Path]) -> None:
    loader = _load(exported["mlp"], "mlp", 1)
    try:
        s = loader.servable()
        with pytest.raises(errors.InvalidArgument, match="784"):
            s.run(s.signature(), {"x": np.zeros((2, 5), np.float32)})
    finally:
        loader.unload()


# --- the project's own export script ---------------------------------------------------


def test_exported_half_plus_two(exported: dict[str, Path]) -> None:
    loader = _load(exported["half_plus_two"], "half_plus_two", 1)
    try:
        s = loader.servable()
        sig = s.signature()
        assert sig.inputs["x"].shape == (-1, 1) and set(sig.outputs) == {"y"}
        np.testing.assert_array_equal(s.run(sig, {"x": X})["y"], Y)
    finally:
        loader.unload()


def test_exported_mlp(exported: dict[str, Path]) -> None:
    loader = _load(exported["mlp"], "mlp", 1)
    try:
        s = loader.servable()
        sig = s.signature()
        assert sig.inputs["x"].shape == (-1, 784)
        assert sig.outputs["probabilities"].shape == (-1, 10)
        x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
        p = s.run(sig, {"x": x})["probabilities"]
        assert p.shape == (5, 10) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(s.run(sig, {"x": x})["probabilities"], p)  # deterministic
    finally:
        loader.unload()


def test_a_run_in_the_caller_thread_leaves_the_inter_op_threads_idle(
    exported: dict[str, Path],
) -> None:
    """The Session runtime's inter_op_thread_pool -1 (the function runtime's single-threaded
    executor still wakes the pool now and then: its own test is below)."""
    loader = _load(exported["half_plus_two"], "hp2", 1, runtime="session")
    try:
        s = loader.servable()
        sig = s.signature()
        x = {"x": np.array([[1.0], [2.0]], np.float32)}
        spent = {}
        for in_caller_thread in (False, True):
            for _ in range(50):  # the callable is made and TensorFlow's threads are up
                s.run(sig, x, timeout_s=30, in_caller_thread=in_caller_thread)
            before = cpu_ticks(os.getpid(), TF_INTER_OP)
            for _ in range(4000):
                y = s.run(sig, x, timeout_s=30, in_caller_thread=in_caller_thread)["y"]
                assert y.tolist() == [[2.5], [3.0]]
            spent[in_caller_thread] = cpu_ticks(os.getpid(), TF_INTER_OP) - before
        # Measured here: 25-45 ticks through the pool for 4000 runs, 0 in the caller thread.
        assert spent[False] >= 5, spent  # the pool did the work, and it shows in /proc
        assert spent[True] <= spent[False] / 5, spent
    finally:
        loader.unload()


def test_the_function_runtime_runs_in_the_caller_thread_and_gets_the_same_answers(
    exported: dict[str, Path],
) -> None:
    loader = _load(exported["mlp"], "mlp", 1)
    try:
        s = loader.servable()
        assert type(s).__name__ == "FunctionSavedModelServable"
        sig = s.signature()
        x = {"x": np.random.default_rng(1).random((3, 784), dtype=np.float32)}
        pooled = s.run(sig, x, timeout_s=30)["probabilities"]
        inline = s.run(sig, x, timeout_s=30, in_caller_thread=True)["probabilities"]
        np.testing.assert_allclose(inline, pooled, rtol=1e-6)
        assert all(fn.inline_ok for fn in s._functions.values())  # no fallback was needed
    finally:
        loader.unload()


def test_export_cli_wide_mlp(tmp_path: Path) -> None:
    import tensorflow as tf

    from servingd.tools.export_models import main

    assert main(["wide_mlp", str(tmp_path / "1")]) == 0
    checkpoint = str(tmp_path / "1" / "variables" / "variables")
    shapes = sorted(tuple(shape) for _, shape in tf.train.list_variables(checkpoint))
    assert [s for s in shapes if len(s) == 2] == [(784, 4096), (4096, 10), (4096, 4096)]
    loader = _load(tmp_path / "1", "wide_mlp", 1)
    try:
        s = loader.servable()
        sig = s.signature()
        assert sig.inputs["x"].shape == (-1, 784)
        p = s.run(sig, {"x": np.ones((2, 784), np.float32)})["probabilities"]
        assert p.shape == (2, 10)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    finally:
        loader.unload()


def test_export_cli_refuses_non_empty_dir(tmp_path: Path) -> None:
    from servingd.tools.export_models import main

    (tmp_path / "junk").write_text("x")
    assert main(["half_plus_two", str(tmp_path)]) == 1
    with pytest.raises(SystemExit):
        main(["nope", str(tmp_path / "v")])


# --- concurrency -----------------------------------------------------------------------


def test_concurrent_runs_get_their_own_results(exported: dict[str, Path]) -> None:
    loader = _load(exported["mlp"], "mlp", 1)
    s = loader.servable()
    sig = s.signature()
    rng = np.random.default_rng(1)
    batches = [rng.random((i + 1, 784), dtype=np.float32) for i in range(8)]
    expected = [s.run(sig, {"x": b})["probabilities"] for b in batches]
    results: dict[int, list[np.ndarray]] = {i: [] for i in range(8)}
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            start.wait()
            for _ in range(20):
                results[i].append(s.run(sig, {"x": batches[i]})["probabilities"])
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    loader.unload()
    assert not failures
    for i in range(8):
        assert len(results[i]) == 20
        for r in results[i]:
            np.testing.assert_array_equal(r, expected[i])


def test_timeout_buckets_round_up_by_at_most_a_half_power_of_two() -> None:
    from servingd.servables.saved_model import timeout_bucket_ms

    assert timeout_bucket_ms(None) == 0
    assert timeout_bucket_ms(0.0) == 1
    for seconds in (0.001, 0.0173, 0.5, 1.0, 29.9, 3600.0):
        bucket = timeout_bucket_ms(seconds)
        assert seconds * 1000 <= bucket <= seconds * 1000 * 1.42 + 1


def test_run_with_a_timeout_is_cancelled_by_tensorflow(tmp_path: Path) -> None:
    import time

    import tensorflow as tf

    from servingd.core.errors import DeadlineExceeded
    from servingd.core.ids import ServableId
    from servingd.servables.saved_model import SavedModelLoader

    class Spin(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="n")])
        def spin(self, n: tf.Tensor) -> dict[str, tf.Tensor]:
            i = tf.while_loop(lambda i: i < n, lambda i: i + 1, [tf.constant(0, tf.int64)])[0]
            return {"y": i}

    module = Spin()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.spin})
    loader = SavedModelLoader(ServableId("spin", 1), str(tmp_path / "1"))
    loader.load()
    try:
        servable = loader.servable()
        signature = servable.signature()
        n = np.asarray(10, np.int64)
        assert int(servable.run(signature, {"n": n}, timeout_s=5.0)["y"]) == 10
        start = time.perf_counter()
        with pytest.raises(DeadlineExceeded):
            servable.run(signature, {"n": np.asarray(10**11, np.int64)}, timeout_s=0.2)
        assert time.perf_counter() - start < 5  # cancelled, not run for minutes
    finally:
        loader.unload()
