"""tests/bench/side_by_side.py: what it compares, and the ratio it reports."""

from __future__ import annotations

import pytest

from tests.bench import side_by_side
from tests.bench.side_by_side import POINTS, Sample


def test_sides_that_do_not_differ_are_refused() -> None:
    with pytest.raises(SystemExit):
        side_by_side.parse_args([])


def test_side_b_takes_its_interpreter_env_and_flags() -> None:
    args, a, b = side_by_side.parse_args(
        ["--b-python", "/opt/b/python", "--b-env", "K=v=1", "--b-flag=--compute_thread_nice=10"]
    )
    assert b.python == "/opt/b/python" and a.python != b.python
    assert b.env == {"K": "v=1"} and a.env == {}
    assert b.flags == ["--compute_thread_nice=10"]
    assert args.rounds == 6


def test_an_env_item_without_a_value_is_refused() -> None:
    with pytest.raises(SystemExit):
        side_by_side.parse_args(["--b-env", "NO_EQUALS"])


def test_the_reported_ratio_is_the_median_of_the_rounds_ratios() -> None:
    # Drift: the box is 3x faster in the last round and half as fast in the second. B is
    # 1.1x A in two rounds of three; the ratio of the sides' medians would say 1.3.
    args, a, b = side_by_side.parse_args(["--b-python", "/opt/b/python", "--rounds", "3"])
    a_rps, b_rps = [1000.0, 500.0, 3000.0], [1300.0, 550.0, 3300.0]
    samples = {}
    for model, clients in POINTS:
        samples[("on", model, clients, "A")] = [Sample(r, 1.0, 9.0) for r in a_rps]
        samples[("on", model, clients, "B")] = [Sample(r, 0.5, 2.0) for r in b_rps]
    text = side_by_side.report(samples, ["on"], a, b, args)
    row = next(line for line in text.splitlines() if line.startswith("| on | mlp | 64 "))
    assert row == (
        "| on | mlp | 64 | 1000 | 1300 | 1.30, 1.10, 1.10 | 1.10 | 1.00 | 0.50 | 9.00 | 2.00 |"
    )


def test_points_name_the_bench_models_and_client_counts() -> None:
    args, _, _ = side_by_side.parse_args(
        ["--b-python", "/opt/b/python", "--points", "wide_mlp:64,mlp:1"]
    )
    assert args.points == (("wide_mlp", 64), ("mlp", 1))
    for bad in ("resnet:64", "mlp", "mlp:0", "mlp:x"):
        with pytest.raises(SystemExit):
            side_by_side.parse_args(["--b-python", "/opt/b/python", "--points", bad])


def test_modes_are_on_and_off_only() -> None:
    args, _, _ = side_by_side.parse_args(["--b-python", "/opt/b/python", "--modes", "off"])
    assert args.modes == ("off",)
    for bad in ("of", "", "on,sometimes"):
        with pytest.raises(SystemExit):
            side_by_side.parse_args(["--b-python", "/opt/b/python", "--modes", bad])


def test_rest_and_the_large_payload_are_make_benchs_bodies_and_routes() -> None:
    from pathlib import Path
    from types import SimpleNamespace

    args, _, _ = side_by_side.parse_args(
        ["--b-python", "/opt/b/python", "--protocol", "rest", "--rows", "64"]
    )
    assert (args.protocol, args.rows) == ("rest", 64)
    server = SimpleNamespace(rest_port=8501, grpc_target="127.0.0.1:8500")
    rest = side_by_side.load_for(server, "rest", "mlp", Path("rest-mlp-64.json"), 16)  # type: ignore[arg-type]
    assert rest.url == "http://127.0.0.1:8501/v1/models/mlp:predict" and rest.grpc is None
    assert rest.clients == 16
    grpc = side_by_side.load_for(server, "grpc", "mlp", Path("grpc-mlp-1.bin"), 64)  # type: ignore[arg-type]
    assert grpc.grpc == "127.0.0.1:8500" and grpc.url is None
    for bad in (["--rows", "2"], ["--protocol", "http"]):
        with pytest.raises(SystemExit):
            side_by_side.parse_args(["--b-python", "/opt/b/python", *bad])


def test_edge_models_are_points_over_grpc_one_row_only() -> None:
    args, _, _ = side_by_side.parse_args(
        ["--b-env", "K=v", "--points", "mobilenet_v2:32,text_encoder:8,mlp:1"]
    )
    assert args.points == (("mobilenet_v2", 32), ("text_encoder", 8), ("mlp", 1))
    with pytest.raises(SystemExit):
        side_by_side.parse_args(["--b-env", "K=v", "--points", "mobilenet_v2:8", "--rows", "64"])
    rest = ["--b-env", "K=v", "--points", "text_encoder:8,mobilenet_v2:1", "--protocol", "rest"]
    assert side_by_side.parse_args(rest)[0].protocol == "rest"
    with pytest.raises(SystemExit):
        side_by_side.parse_args(["--b-env", "K=v", "--points", "tabular:8", "--rows", "64"])
    with pytest.raises(SystemExit):  # Classify has no REST point here
        side_by_side.parse_args(["--b-env", "K=v", "--points", "tabular:8", "--protocol", "rest"])


def test_rest_bodies_of_the_edge_models_are_tf_servings_json() -> None:
    import json

    import numpy as np

    from tests.bench import models

    body = json.loads(models.rest_request(models.MODELS["text_encoder"]))
    tokens = np.array(body["instances"])
    assert tokens.shape == (1, 128) and tokens.dtype.kind == "i"
    jpeg = json.loads(models.rest_request(models.MODELS["jpeg_classifier"]))
    assert set(jpeg["instances"][0]) == {"b64"}
    with pytest.raises(ValueError):
        models.rest_request(models.MODELS["tabular"])


def test_tabular_is_loaded_through_classify_and_the_others_through_predict() -> None:
    from pathlib import Path
    from types import SimpleNamespace

    from tests.bench import run

    args, _, _ = side_by_side.parse_args(["--b-env", "K=v", "--points", "tabular:32"])
    assert args.points == (("tabular", 32),)
    server = SimpleNamespace(rest_port=8501, grpc_target="127.0.0.1:8500")
    tabular = side_by_side.load_for(server, "grpc", "tabular", Path("t.bin"), 32)  # type: ignore[arg-type]
    assert tabular.method == "/tensorflow.serving.PredictionService/Classify"
    for model in ("mobilenet_v2", "mlp"):
        load = side_by_side.load_for(server, "grpc", model, Path("m.bin"), 8)  # type: ignore[arg-type]
        assert load.method == run.PREDICT
