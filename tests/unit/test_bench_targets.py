"""make bench's targets: values from back-to-back pairs, else from the table's medians."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench import targets
from tests.bench.targets import CANNED, CEILING, IN_PROCESS, OFF, ON, Target


def point(scenario: str, load: str, clients: int, rps: float, p50: float = 1.0) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "load": load,
        "clients": clients,
        "throughput_rps": rps,
        "latency_ms": {"p50": p50, "p99": p50 * 3},
    }


ON_OFF = Target("on/off", (ON, "gRPC mlp", 64), (OFF, "gRPC mlp", 64), 3.0)
P50 = Target("p50", (OFF, "gRPC mlp", 1), (IN_PROCESS, "mlp batch 1", 1), 0.6, "p50_excess")


def test_value_is_the_median_of_the_pairs_ratios_not_the_ratio_of_medians() -> None:
    # Drift: the box is twice as fast in the second pair. Each pair says 3.0 or more; the
    # table's medians (900 over 450) would say 2.0.
    pairs = [
        (point(ON, "gRPC mlp", 64, 900), point(OFF, "gRPC mlp", 64, 300)),
        (point(ON, "gRPC mlp", 64, 1800), point(OFF, "gRPC mlp", 64, 450)),
        (point(ON, "gRPC mlp", 64, 600), point(OFF, "gRPC mlp", 64, 200)),
    ]
    results = [point(ON, "gRPC mlp", 64, 900), point(OFF, "gRPC mlp", 64, 450)]
    [goal] = targets.evaluate([ON_OFF], results, {"on/off": pairs})
    assert goal["pairs"] == [3.0, 4.0, 3.0]
    assert goal["value"] == 3.0
    assert goal["met"] is True
    assert goal["from_medians"] == 2.0
    assert goal["goal"] == ">= 3.0"


def test_without_pairs_the_value_comes_from_the_table() -> None:
    results = [point(ON, "gRPC mlp", 64, 900), point(OFF, "gRPC mlp", 64, 450)]
    [goal] = targets.evaluate([ON_OFF], results, {})
    assert goal["value"] == 2.0
    assert goal["met"] is False
    assert goal["pairs"] == []


def test_p50_excess_is_a_difference_and_met_when_at_most_the_goal() -> None:
    results = [
        point(OFF, "gRPC mlp", 1, 600, p50=1.0),
        point(IN_PROCESS, "mlp batch 1", 1, 2000, 0.5),
    ]
    pairs = [
        (point(OFF, "gRPC mlp", 1, 600, p50=0.9), point(IN_PROCESS, "mlp batch 1", 1, 1, 0.4)),
        (point(OFF, "gRPC mlp", 1, 600, p50=1.5), point(IN_PROCESS, "mlp batch 1", 1, 1, 0.4)),
        (point(OFF, "gRPC mlp", 1, 600, p50=0.7), point(IN_PROCESS, "mlp batch 1", 1, 1, 0.3)),
    ]
    [goal] = targets.evaluate([P50], results, {"p50": pairs})
    assert goal["pairs"] == pytest.approx([0.5, 1.1, 0.4])
    assert goal["value"] == pytest.approx(0.5)
    assert goal["met"] is True
    assert goal["from_medians"] == pytest.approx(0.5)
    assert goal["goal"] == "<= 0.6"
    [worse] = targets.evaluate([P50], results, {"p50": pairs[1:2]})
    assert worse["met"] is False


def test_a_point_not_measured_gives_no_value_and_is_not_met() -> None:
    [goal] = targets.evaluate([ON_OFF], [point(ON, "gRPC mlp", 64, 900)], {})
    assert goal["value"] is None
    assert goal["met"] is False


def test_every_target_names_the_benchs_scenarios() -> None:
    names = [t.name for t in targets.all_targets(64)]
    assert len(names) == len(set(names)) == 13
    scenarios = {t.first[0] for t in targets.all_targets(64)} | {
        t.second[0] for t in targets.all_targets(64)
    }
    assert scenarios == {ON, OFF, CEILING, IN_PROCESS, targets.MLSERVER, targets.NICE}


def test_every_servingd_and_in_process_point_of_a_target_is_one_the_bench_runs() -> None:
    """A target whose point no scenario runs would silently read 'not met' forever."""
    from collections import defaultdict
    from pathlib import Path
    from types import SimpleNamespace

    from tests.bench import run

    bodies: dict[str, Path] = defaultdict(lambda: Path("body"))
    server = SimpleNamespace(grpc_target="127.0.0.1:1", rest_port=1)
    servingd = {(load.label, load.clients) for load in run.servingd_loads(server, bodies)}  # type: ignore[arg-type]
    nice = {(load.label, load.clients) for load in run.nice_loads(server, bodies)}  # type: ignore[arg-type]
    canned = {(load.label, load.clients) for load in run.canned_loads(server, bodies)}  # type: ignore[arg-type]
    in_process = {(f"{m} batch {b}", 1) for m in run.FEATURES for b in (1, run.BATCH)}
    checked = 0
    for target in targets.all_targets(run.BATCH):
        for scenario, label, clients in (target.first, target.second):
            if scenario in (ON, OFF):
                assert (label, clients) in servingd, target.name
                checked += 1
            elif scenario == targets.NICE:
                assert (label, clients) in nice, target.name
                checked += 1
            elif scenario == IN_PROCESS:
                assert (label, clients) in in_process, target.name
                checked += 1
        if target.bound is not None and target.bound.over[0] == CANNED:
            assert target.bound.over[1:] in canned, target.name
            checked += 1
    assert checked == 24


def test_a_bound_says_whether_this_box_allows_the_goal_at_all() -> None:
    by_name = {t.name: t for t in targets.all_targets(64)}
    on_off = by_name["batching on / off, mlp, gRPC 64 clients"]
    p50 = by_name["p50 at 1 client minus in-process p50, ms (half_plus_two, gRPC)"]
    results = [
        point(CANNED, "gRPC mlp", 64, 2000),
        point(OFF, "gRPC mlp", 64, 1000),
        point(ON, "gRPC mlp", 64, 1500),
        point(CEILING, "gRPC half_plus_two", 1, 1500, p50=0.7),
        point(OFF, "gRPC half_plus_two", 1, 900, p50=1.1),
        point(IN_PROCESS, "half_plus_two batch 1", 1, 20000, p50=0.05),
        point(CEILING, "gRPC mlp", 64, 8000),  # only the canned daemon bounds on / off
    ]
    ratio, excess = targets.evaluate([on_off, p50], results, {})
    # Batching that cost nothing would serve as fast as a canned Predict: 2000 / 1000 < 3.
    assert ratio["bound"] == 2.0 and ratio["reachable"] is False
    assert excess["bound"] == 0.7 and excess["reachable"] is False
    results[0] = point(CANNED, "gRPC mlp", 64, 4000)
    results[3] = point(CEILING, "gRPC half_plus_two", 1, 1500, p50=0.4)
    ratio, excess = targets.evaluate([on_off, p50], results, {})
    assert ratio["bound"] == 4.0 and ratio["reachable"] is True
    assert excess["bound"] == 0.4 and excess["reachable"] is True
    assert ratio["met"] is False  # reachable is not met: 1500 / 1000


@pytest.mark.parametrize("model", ["mlp", "half_plus_two"])
def test_batching_over_the_ceiling_is_bounded_by_servingd_with_a_canned_predict(
    model: str,
) -> None:
    [ceiling_ratio] = [
        t
        for t in targets.all_targets(64)
        if t.name == f"servingd gRPC 64 clients, batching / transport ceiling ({model})"
    ]
    results = [
        point(CEILING, "gRPC mlp", 64, 6800),
        point(CANNED, "gRPC mlp", 64, 5440),
        point(ON, f"gRPC {model}", 64, 2300),
    ]
    [goal] = targets.evaluate([ceiling_ratio], results, {})
    assert goal["value"] == pytest.approx(2300 / 6800)
    # servingd's own server, answering without any of Predict's work, serves at 0.8 of the
    # ceiling: the goal is just within reach; a little slower and it is out of reach.
    assert goal["bound"] == pytest.approx(0.8) and goal["reachable"] is True
    results[1] = point(CANNED, "gRPC mlp", 64, 5400)
    [goal] = targets.evaluate([ceiling_ratio], results, {})
    assert goal["bound"] == pytest.approx(5400 / 6800) and goal["reachable"] is False


def test_without_its_points_a_bound_is_unknown_not_out_of_reach() -> None:
    on_off = next(t for t in targets.all_targets(64) if t.name.startswith("batching on / off"))
    [goal] = targets.evaluate([on_off], [point(OFF, "gRPC mlp", 64, 1000)], {})
    assert goal["bound"] is None and goal["reachable"] is None
    [plain] = targets.evaluate([ON_OFF], [point(CEILING, "gRPC mlp", 64, 2000)], {})
    assert plain["bound"] is None and plain["reachable"] is None
