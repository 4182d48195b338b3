"""make bench's targets: values from back-to-back pairs, else from the table's medians."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench import report, targets
from tests.bench.targets import CANNED, CEILING, IN_PROCESS, OFF, ON, ROUND_TRIP, Target


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


def on_off_target(model: str) -> Target:
    """The batching on / off target of `model` (32 clients)."""
    return next(
        t
        for t in targets.all_targets()
        if t.first == (ON, f"gRPC {model}", 32) and t.second[0] == OFF
    )


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
    names = [t.name for t in targets.all_targets()]
    assert len(names) == len(set(names)) == 16
    scenarios = {t.first[0] for t in targets.all_targets()} | {
        t.second[0] for t in targets.all_targets()
    }
    assert scenarios == {ON, OFF, CANNED, CEILING, IN_PROCESS, targets.MLSERVER}
    bounds = {b.over[0] for t in targets.all_targets() for b in (t.bound, t.model_bound) if b}
    assert bounds == {CANNED, ROUND_TRIP, IN_PROCESS}


def test_the_retired_targets_are_gone_and_the_canned_reply_is_a_diagnostic() -> None:
    by_name = {t.name: t for t in targets.all_targets()}
    assert not any("mlp" in name for name in by_name)
    [canned] = [t for t in by_name.values() if t.first[0] == CANNED]
    assert canned.goal is None and canned.second[0] == CEILING
    results = [point(CANNED, "gRPC mlp", 32, 800), point(CEILING, "gRPC mlp", 32, 1000)]
    [diagnostic] = targets.evaluate([canned], results, {})
    assert diagnostic["value"] == 0.8
    assert diagnostic["met"] is None and diagnostic["goal"] == "(diagnostic)"
    assert "| (diagnostic) | - |" in report.goals_table([diagnostic])


def test_every_servingd_and_in_process_point_of_a_target_is_one_the_bench_runs() -> None:
    """A target whose point no scenario runs would silently read 'not met' forever."""
    from collections import defaultdict
    from pathlib import Path
    from types import SimpleNamespace

    from tests.bench import run

    bodies: dict[str, Path] = defaultdict(lambda: Path("body"))
    server = SimpleNamespace(grpc_target="127.0.0.1:1", rest_port=1)
    runs = {
        scenario: {(load.label, load.clients) for load in run.edge_loads(scenario)(server, bodies)}  # type: ignore[arg-type]
        for scenario in (ON, OFF)
    }
    runs[CANNED] = {(load.label, load.clients) for load in run.canned_loads(server, bodies)}  # type: ignore[arg-type]
    runs[CEILING] = {(load.label, load.clients) for load in run.echo_loads("", bodies)}
    runs[ROUND_TRIP] = {(load.label, load.clients) for load in run.round_trip_loads(server, bodies)}  # type: ignore[arg-type]
    formed = [
        point(ON, f"gRPC {m}", c, 100) | {"rows_per_batch": 7.6}
        for m in ("mobilenet_v2", "text_encoder", "tabular")
        for c in (8, 32)
    ]
    mlserver = [point(targets.MLSERVER, f"gRPC {m}", 8, 50) for m in targets.BATCHED_MODELS]
    in_process = set(run.inprocess_labels(formed)) | set(run.bound_inprocess_labels(mlserver))
    checked = 0
    for unresolved in targets.all_targets():
        target = unresolved.resolve(formed)
        assert target is not None, unresolved.name
        bounds = [b.over for b in (target.bound, target.model_bound) if b is not None]
        for scenario, label, clients in (target.first, target.second, *bounds):
            if scenario in runs:
                assert (label, clients) in runs[scenario], target.name
                checked += 1
            elif scenario == IN_PROCESS:
                assert label in in_process, target.name
                checked += 1
    assert checked == 46


def test_an_in_process_point_at_the_formed_batch_takes_the_served_points_batch() -> None:
    target = next(t for t in targets.all_targets() if t.first == (ON, "gRPC mobilenet_v2", 32))
    assert target.resolve([point(ON, "gRPC mobilenet_v2", 32, 100)]) is None  # not known yet
    served = point(ON, "gRPC mobilenet_v2", 32, 90) | {"rows_per_batch": 11.6}
    limit = point(IN_PROCESS, "mobilenet_v2 batch 12", 1, 10) | {"rows_per_s": 120.0}
    other = point(IN_PROCESS, "mobilenet_v2 batch 1", 1, 200) | {"rows_per_s": 200.0}
    [goal] = targets.evaluate([target], [served, limit, other], {})
    # Rows per second against rows per second at batch 12: 90 requests of one row each.
    assert goal["from_medians"] == pytest.approx(0.75)
    assert goal["against"] == f"{IN_PROCESS} / mobilenet_v2 batch 12"
    assert goal["met"] is False and goal["goal"] == ">= 0.9"


def test_a_bound_says_whether_this_box_allows_the_goal_at_all() -> None:
    p50 = next(t for t in targets.all_targets() if t.first == (OFF, "gRPC half_plus_two", 1))
    results = [
        point(ROUND_TRIP, "gRPC half_plus_two", 1, 1500, p50=0.7),
        point(OFF, "gRPC half_plus_two", 1, 900, p50=1.1),
        point(IN_PROCESS, "half_plus_two batch 1", 1, 20000, p50=0.05),
    ]
    [excess] = targets.evaluate([p50], results, {})
    assert excess["value"] == pytest.approx(1.05)
    assert excess["bound"] == 0.7 and excess["reachable"] is False
    results[0] = point(ROUND_TRIP, "gRPC half_plus_two", 1, 1500, p50=0.4)
    [excess] = targets.evaluate([p50], results, {})
    assert excess["bound"] == 0.4 and excess["reachable"] is True


def test_a_model_cheaper_than_a_call_is_bounded_by_the_canned_reply() -> None:
    """Tabular at its formed batch runs faster in-process than servingd answers any call:
    the bound (canned reply over in-process at that batch) says no change inside servingd's
    request handling can meet the goal here."""
    target = next(t for t in targets.all_targets() if t.first == (ON, "gRPC tabular", 32))
    results = [
        point(ON, "gRPC tabular", 32, 900) | {"rows_per_batch": 12.2},
        point(IN_PROCESS, "tabular batch 12", 1, 1700) | {"rows_per_s": 20400.0},
        point(CANNED, "gRPC mlp", 32, 1700),
    ]
    [goal] = targets.evaluate([target], results, {})
    assert goal["value"] == pytest.approx(900 / 20400)
    assert goal["bound"] == pytest.approx(1700 / 20400)
    assert goal["reachable"] is False


def test_batching_on_over_off_is_bounded_by_the_model_at_the_formed_batch() -> None:
    """A model that runs barely faster in-process at the batch the scheduler formed than
    served with batching off cannot gain the goal from batching: MobileNetV2 on two cores
    (110 rows/s at batch 16 in-process, 103 served unbatched)."""
    target = on_off_target("mobilenet_v2")
    results = [
        point(ON, "gRPC mobilenet_v2", 32, 100) | {"rows_per_batch": 16.0},
        point(OFF, "gRPC mobilenet_v2", 32, 103),
        point(IN_PROCESS, "mobilenet_v2 batch 16", 1, 7) | {"rows_per_s": 110.0},
        point(CANNED, "gRPC mlp", 32, 8400),
    ]
    [goal] = targets.evaluate([target], results, {})
    assert goal["bound"] == pytest.approx(110 / 103)  # tighter than 8400 / 103
    assert goal["reachable"] is False
    # A model with room (the text encoder's 903 rows/s at batch 16 over 495): reachable.
    results[1] = point(OFF, "gRPC mobilenet_v2", 32, 495)
    results[2] = point(IN_PROCESS, "mobilenet_v2 batch 16", 1, 56) | {"rows_per_s": 903.0}
    [goal] = targets.evaluate([target], results, {})
    assert goal["bound"] == pytest.approx(903 / 495) and goal["reachable"] is True
    # The formed batch not known: only the canned-reply bound is left.
    [goal] = targets.evaluate([target], [results[1], results[3]], {})
    assert goal["bound"] == pytest.approx(8400 / 495)


def test_the_front_end_bound_is_the_models_pace_beside_canned_replies_at_the_goals_rate() -> None:
    """The text encoder alone runs 800 rows/s at its formed batch; beside the canned daemon
    answering 720 req/s (0.9 x 800) it keeps 640 and 600 in two pairs taken while the box
    drifts: the bound is the median of the pairs' ratios, 0.775, under the goal, though the
    canned reply's own bound (2.5) would allow it."""
    target = next(t for t in targets.all_targets() if t.first == (ON, "gRPC text_encoder", 32))
    results = [
        point(ON, "gRPC text_encoder", 32, 560) | {"rows_per_batch": 16.0},
        point(IN_PROCESS, "text_encoder batch 16", 1, 50) | {"rows_per_s": 800.0},
        point(CANNED, "gRPC mlp", 32, 2000),
    ]
    resolved = target.resolve(results)
    assert resolved is not None
    assert targets.front_end_rate(resolved, results) == pytest.approx(720)
    in_process = "text_encoder batch 16"
    front_end = {
        target.name: [
            (
                point(IN_PROCESS, in_process, 1, 0) | {"rows_per_s": 800.0},
                point(targets.FRONT_END, in_process, 1, 0) | {"rows_per_s": 640.0},
            ),
            (
                point(IN_PROCESS, in_process, 1, 0) | {"rows_per_s": 400.0},
                point(targets.FRONT_END, in_process, 1, 0) | {"rows_per_s": 300.0},
            ),
        ]
    }
    [goal] = targets.evaluate([target], results, {}, front_end)
    assert goal["front_end_bound"] == pytest.approx(0.775)
    assert goal["bound"] == pytest.approx(0.775)
    assert goal["reachable"] is False
    assert "| 0.775 (front end, goal out of reach) |" in report.goals_table([goal])
    # Without it, only the canned reply's bound.
    [goal] = targets.evaluate([target], results, {})
    assert goal["bound"] == pytest.approx(2000 / 800) and goal["reachable"] is True


def test_served_over_in_process_and_on_off_targets_get_a_front_end_bound() -> None:
    results = [point(IN_PROCESS, "mlp batch 1", 1, 100) | {"rows_per_s": 100.0}]
    assert targets.front_end_rate(P50, results) is None
    bounded = [t for t in targets.all_targets() if t.front_end_bound]
    # MobileNetV2 and text encoder at 8 and 32 clients, tabular; on / off for the two.
    assert len(bounded) == 7
    for t in bounded:
        assert t.first[0] == ON and t.second[0] in (IN_PROCESS, OFF), t.name
        limit = t.front_end_limit
        assert limit is not None and limit[0] == IN_PROCESS, t.name


def test_batching_on_off_is_bounded_by_the_limit_slowed_by_the_front_end() -> None:
    """The text encoder serves 420 req/s with batching off and runs 900 rows/s in-process
    at its formed batch (model bound 900 / 420 = 2.14). Beside canned replies at the rate
    1.5 x off asks (630 req/s) it keeps 0.75 of its pace: batching on cannot pass
    0.75 x 900 = 675 rows/s, so on / off is bounded by 1.61, reachable; keeping 0.6, it
    is bounded by 1.29, out of reach."""
    target = on_off_target("text_encoder")
    results = [
        point(ON, "gRPC text_encoder", 32, 560) | {"rows_per_batch": 16.0},
        point(OFF, "gRPC text_encoder", 32, 420),
        point(IN_PROCESS, "text_encoder batch 16", 1, 56) | {"rows_per_s": 900.0},
        point(CANNED, "gRPC mlp", 32, 3000),
    ]
    resolved = target.resolve(results)
    assert resolved is not None and resolved.front_end_limit == (
        IN_PROCESS,
        "text_encoder batch 16",
        1,
    )
    assert targets.front_end_rate(resolved, results) == pytest.approx(630)

    def beside(kept: float) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
        alone = point(IN_PROCESS, "text_encoder batch 16", 1, 0) | {"rows_per_s": 900.0}
        near = point(targets.FRONT_END, "text_encoder batch 16", 1, 0)
        return {target.name: [(alone, near | {"rows_per_s": 900.0 * kept})]}

    [goal] = targets.evaluate([target], results, {}, beside(0.75))
    assert goal["bound"] == pytest.approx(675 / 420) and goal["reachable"] is True
    [goal] = targets.evaluate([target], results, {}, beside(0.6))
    assert goal["bound"] == pytest.approx(0.6 * 900 / 420) and goal["reachable"] is False
    assert "(front end, goal out of reach)" in report.goals_table([goal])


def test_an_in_process_batch_no_round_measured_is_measured_once_after_the_rounds() -> None:
    """Rounds that formed 4 and 6 rows have a median of 5: that point is measured then, so
    the target has its value from the table and its bounds; batches measured are not."""
    from types import SimpleNamespace

    from tests.bench import run

    asked: list[tuple[str, int, int]] = []

    class Workers:
        def point(
            self, model: str, batch: int, duration: float, warmup: float, callers: int = 1
        ) -> dict[str, Any]:
            asked.append((model, batch, callers))
            label = targets.in_process_label(model, batch, callers)
            return point(IN_PROCESS, label, 1, 100) | {"rows_per_s": 500.0, "errors": {}}

    results = [
        point(ON, "gRPC text_encoder", 8, 420) | {"rows_per_batch": 4.8},
        point(IN_PROCESS, "text_encoder batch 4", 1, 150),
        point(IN_PROCESS, "text_encoder batch 6", 1, 90),
    ] + [point(IN_PROCESS, f"{m} batch 1", 1, 100) for m in targets.ALL_MODELS]
    args = SimpleNamespace(duration=2.0, warmup=0.5)
    added = run.missing_inprocess_points(Workers(), results, args)  # type: ignore[arg-type]
    assert asked == [("text_encoder", 5, 1)]
    assert [p["load"] for p in added] == ["text_encoder batch 5"]
    assert added[0]["rows_per_s"] == 500.0
    # With MLServer in the run, its bound's point too: 8 callers at batch 1, once.
    asked.clear()
    results += [point(targets.MLSERVER, "gRPC text_encoder", 8, 300), *added]
    added = run.missing_inprocess_points(Workers(), results, args)  # type: ignore[arg-type]
    assert asked == [("text_encoder", 1, 8)]
    assert [p["load"] for p in added] == ["text_encoder batch 1, 8 callers"]


def test_in_process_labels_name_the_batch_and_the_callers() -> None:
    assert targets.in_process_label("mobilenet_v2", 16) == "mobilenet_v2 batch 16"
    assert targets.in_process_label("text_encoder", 1, 8) == "text_encoder batch 1, 8 callers"
    for model, batch, callers in (("mobilenet_v2", 16, 1), ("text_encoder", 1, 8)):
        label = targets.in_process_label(model, batch, callers)
        assert targets.parse_in_process_label(label) == (model, batch, callers)


def test_servingd_over_mlserver_is_bounded_by_the_model_run_by_8_callers() -> None:
    """servingd's batching off at 8 clients cannot outrun the model called by 8 threads at
    once: with that at 500 rows/s and MLServer at 300, 2.0 is out of reach."""
    target = next(
        t for t in targets.all_targets() if t.second == (targets.MLSERVER, "gRPC text_encoder", 8)
    )
    results = [
        point(OFF, "gRPC text_encoder", 8, 480),
        point(targets.MLSERVER, "gRPC text_encoder", 8, 300),
        point(IN_PROCESS, "text_encoder batch 1, 8 callers", 1, 500) | {"rows_per_s": 500.0},
    ]
    [goal] = targets.evaluate([target], results, {})
    assert goal["value"] == pytest.approx(1.6)
    assert goal["bound"] == pytest.approx(500 / 300) and goal["reachable"] is False
