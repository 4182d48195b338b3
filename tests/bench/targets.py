"""make bench's targets: which two load points each compares, and its value.

A target compares two load points: a throughput ratio (the first's rows/s over the
second's, at least the goal) or a p50 excess (the first's p50 minus the second's, at most
the goal). Its value comes from pairs when there are any: its two points measured back to
back, in alternating order, several times; the value is the median of the pairs' values.
This box's speed drifts up to 2x within a minute (other tenants), so two points measured
seconds apart share the drift where two from the table, up to a round apart, need not. The
value from the table's medians is reported beside it.

The served model against the in-process limit compares at the batch size the scheduler
formed (`AT_FORMED_BATCH`): the in-process point's batch is the rows per TensorFlow run
measured for the served point (its rounds' median), so batching is judged by what its
batches cost, not by a batch size it never reached.

A diagnostic is a ratio printed with the targets but without a goal: servingd answering a
canned reply over the bare grpc.aio server (the transport ceiling) is what servingd's own
server costs per call on this box (0.78-0.82 on the 2-core bench box).

Some targets also get the best value this box allows (`Bound`, from the table's medians).
servingd cannot serve one-row requests faster than it answers a canned reply, so a served
model over in-process, or batching on over off, is at most the canned reply's rate over the
second point (a model whose run costs less than a call's transport, as tabular's at its
formed batch, hits this); the p50 excess cannot be below the p50 of servingd answering the
model's own request, at 1 client, after everything a request does before its run: the
transport, decoding, the version lookup and signature checks, and the round trip through
another thread that every run takes (ROUND_TRIP; the run itself is the in-process p50 the
excess subtracts). A target whose bound misses its goal cannot be met on this box by any
change inside servingd's request handling; only a cheaper server around it can. Batching
on over off has a second bound, the model's own (`model_bound`): batching on cannot serve
more rows/s than the model runs in-process at the batch the scheduler formed, so on / off
is at most that rate over batching off's; the tighter of the two is reported. A CNN that
keeps both cores busy at batch 1 (MobileNetV2 here) gains little from larger batches,
whatever servingd does.

servingd / MLServer (batching off on both, 8 clients) is bounded by the model too:
servingd cannot answer 8 clients' one-row requests faster than the model runs in-process
with 8 threads calling it at batch 1, so the ratio is at most that rate over MLServer's.

A served model over its in-process limit has a third bound, measured rather than taken
from the table (`FRONT_END`): the model's in-process rows/s at the formed batch while
servingd's canned-reply daemon answers the model's own requests at the rate the goal asks
for (the goal times the in-process rows/s), over its rows/s alone, the median of
back-to-back pairs. The canned reply is the least any servingd request costs (receiving and
parsing it, admission, the answer), and on a small box that work takes cores the model's
threads would use: if the model alone cannot keep the goal's pace beside it, no servingd
can serve it at that pace on this box. Batching on / off gets the same measurement at the
rate its goal asks (the goal times batching off's rows/s): batching on cannot serve more
than the model's in-process pace at the formed batch beside that stream, so its bound is
the model bound times the pace kept beside it. A target a bound from the table already
puts out of reach is not measured this way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

# A load point: scenario, load label, clients (as in the results table).
PointKey = tuple[str, str, int]
Point = Mapping[str, Any]

OFF = "servingd, batching off"
ON = "servingd, batching on"
CEILING = "transport ceiling"
CANNED = "servingd, canned reply"
# servingd answering after a request's work up to its run: decoded, looked up, a round trip
# through another thread (tests/bench/ablation.py, step bridge), batching off.
ROUND_TRIP = "servingd, up to the run"
IN_PROCESS = "in-process (no server)"
MLSERVER = "MLServer"
# The canned daemon's and the bare server's load point: the diagnostic's two points.
CANNED_POINT: PointKey = (CANNED, "gRPC mlp", 32)
CEILING_POINT: PointKey = (CEILING, "gRPC mlp", 32)
# The in-process label whose batch is the one the first point's scheduler formed.
AT_FORMED_BATCH = "{model} batch {formed}"
# The in-process point measured beside the canned daemon at the goal's rate (see above).
FRONT_END = "in-process, beside canned replies at the goal's rate"
# Models served with batching and compared with their in-process limit.
BATCHED_MODELS = ("mobilenet_v2", "text_encoder")
# Every model of the bench (tests/bench/models.py): the p50 target's.
ALL_MODELS = ("mobilenet_v2", "text_encoder", "tabular", "jpeg_classifier", "half_plus_two")


def in_process_label(model: str, batch: int, callers: int = 1) -> str:
    """An in-process point's load label: `model` at `batch` rows per call, `callers` calling
    at once (parse_in_process_label reads it back)."""
    label = f"{model} batch {batch}"
    return label if callers == 1 else f"{label}, {callers} callers"


def parse_in_process_label(label: str) -> tuple[str, int, int]:
    """(model, batch, callers) of an in_process_label."""
    head, _, callers = label.partition(", ")
    model, _, batch = head.rpartition(" batch ")
    return model, int(batch), int(callers.removesuffix(" callers")) if callers else 1


def rows_per_s(point: Point) -> float | None:
    """A load point's rows per second: an in-process point's rows, a served point's
    requests (each one row)."""
    value = point.get("rows_per_s", point.get("throughput_rps"))
    return float(value) if value else None


def formed_batch(point: Point | None) -> int | None:
    """The rows per TensorFlow run the scheduler formed for a served point (rounded)."""
    rows = (point or {}).get("rows_per_batch")
    return None if rows is None or np.isnan(rows) else max(1, round(rows))


@dataclass(frozen=True)
class Bound:
    """The best a target's value can be here: `over`'s rows/s over `under`'s (a ratio
    target's upper bound; `under` None where the target's second point fills it in, see
    Target.resolve), or `over`'s p50 (a p50 excess's lower bound)."""

    over: PointKey
    under: PointKey | None = None
    kind: Literal["ratio", "p50"] = "ratio"

    def value(self, results: Sequence[Point]) -> float | None:
        first = find(results, self.over)
        if not first:
            return None
        if self.kind == "p50":
            p50 = first.get("latency_ms", {}).get("p50")
            return None if p50 is None or np.isnan(p50) else float(p50)
        if self.under is None:
            return None
        second = find(results, self.under)
        a, b = rows_per_s(first), rows_per_s(second) if second else None
        return a / b if a and b else None


@dataclass(frozen=True)
class Target:
    name: str
    first: PointKey
    second: PointKey
    goal: float | None  # None: a diagnostic, printed without a verdict
    kind: Literal["ratio", "p50_excess"] = "ratio"
    bound: Bound | None = None
    # A second upper bound whose `over` may be at the first point's formed batch.
    model_bound: Bound | None = None
    # Also bounded by its in-process point beside the front end's work (FRONT_END).
    front_end_bound: bool = False

    @property
    def front_end_limit(self) -> PointKey | None:
        """The in-process point a FRONT_END bound measures beside the canned replies: the
        second point where that is the limit, else the model bound's (batching on / off)."""
        if self.second[0] == IN_PROCESS:
            return self.second
        return self.model_bound.over if self.model_bound is not None else None

    @property
    def goal_text(self) -> str:
        if self.goal is None:
            return "(diagnostic)"
        return f">= {self.goal}" if self.kind == "ratio" else f"<= {self.goal}"

    def resolve(self, results: Sequence[Point]) -> Target | None:
        """This target with its in-process batch filled in from the first point's formed
        batch (see AT_FORMED_BATCH); None if that is not known yet."""
        formed = formed_batch(find(results, self.first))
        model_bound = self.model_bound
        if model_bound is not None and "{formed}" in model_bound.over[1]:
            scenario, label, clients = model_bound.over
            model_bound = (
                None
                if formed is None
                else dataclasses.replace(
                    model_bound, over=(scenario, label.format(formed=formed), clients)
                )
            )
        scenario, label, clients = self.second
        if "{formed}" not in label:
            return dataclasses.replace(self, model_bound=model_bound)
        if formed is None:
            return None
        second = (scenario, label.format(formed=formed), clients)
        bound = self.bound and dataclasses.replace(self.bound, under=second)
        return dataclasses.replace(self, second=second, bound=bound, model_bound=model_bound)

    def best_possible(self, results: Sequence[Point]) -> float | None:
        """The tightest of this target's bounds (None: none known)."""
        values = [
            v
            for b in (self.bound, self.model_bound)
            if b is not None and (v := b.value(results)) is not None
        ]
        if not values:
            return None
        # A ratio's bounds are upper bounds, a p50 excess's lower bounds.
        return min(values) if self.kind == "ratio" else max(values)

    def value(self, first: Point | None, second: Point | None) -> float | None:
        """This target's value from one measurement of each point (None: one is missing)."""
        if not first or not second:
            return None
        if self.kind == "ratio":
            a, b = rows_per_s(first), rows_per_s(second)
            return a / b if a and b else None
        p50_a = first.get("latency_ms", {}).get("p50")
        p50_b = second.get("latency_ms", {}).get("p50")
        if p50_a is None or p50_b is None or np.isnan(p50_a) or np.isnan(p50_b):
            return None
        return float(p50_a - p50_b)

    def met(self, value: float | None) -> bool | None:
        if self.goal is None:
            return None
        if value is None:
            return False
        return value >= self.goal if self.kind == "ratio" else value <= self.goal


def all_targets() -> list[Target]:
    """The targets of make bench, and its diagnostic."""
    targets = [
        Target(
            "servingd canned reply / transport ceiling, gRPC 32 clients",
            CANNED_POINT,
            CEILING_POINT,
            None,
        )
    ]
    targets += [
        Target(
            f"{model}, gRPC {clients} clients, batching on / in-process at the formed batch",
            (ON, f"gRPC {model}", clients),
            (IN_PROCESS, AT_FORMED_BATCH.replace("{model}", model), 1),
            0.9,
            bound=Bound(CANNED_POINT),
            front_end_bound=True,
        )
        for model in BATCHED_MODELS
        for clients in (8, 32)
    ]
    targets += [
        Target(
            f"{model}, gRPC 32 clients, batching on / off",
            (ON, f"gRPC {model}", 32),
            (OFF, f"gRPC {model}", 32),
            1.5,
            bound=Bound(CANNED_POINT, (OFF, f"gRPC {model}", 32)),
            model_bound=Bound(
                (IN_PROCESS, AT_FORMED_BATCH.replace("{model}", model), 1),
                (OFF, f"gRPC {model}", 32),
            ),
            front_end_bound=True,
        )
        for model in BATCHED_MODELS
    ]
    targets.append(
        Target(
            "tabular Classify, gRPC 32 clients, batching on / in-process at the formed batch",
            (ON, "gRPC tabular", 32),
            (IN_PROCESS, AT_FORMED_BATCH.replace("{model}", "tabular"), 1),
            0.8,
            bound=Bound(CANNED_POINT),
            front_end_bound=True,
        )
    )
    targets += [
        Target(
            f"p50 at 1 client minus in-process p50, ms ({model}, gRPC)",
            (OFF, f"gRPC {model}", 1),
            (IN_PROCESS, f"{model} batch 1", 1),
            0.5,
            "p50_excess",
            Bound((ROUND_TRIP, f"gRPC {model}", 1), kind="p50"),
        )
        for model in ALL_MODELS
    ]
    targets += [
        Target(
            f"servingd / MLServer, {model}, gRPC 8 clients (batching off both)",
            (OFF, f"gRPC {model}", 8),
            (MLSERVER, f"gRPC {model}", 8),
            2.0,
            bound=Bound(
                (IN_PROCESS, in_process_label(model, 1, 8), 1), (MLSERVER, f"gRPC {model}", 8)
            ),
        )
        for model in BATCHED_MODELS
    ]
    targets.append(
        Target(
            "REST base64 JPEG / gRPC same bytes, jpeg_classifier, 8 clients, batching on",
            (ON, "REST jpeg_classifier", 8),
            (ON, "gRPC jpeg_classifier", 8),
            0.8,
        )
    )
    return targets


def find(results: Sequence[Point], key: PointKey) -> Point | None:
    for r in results:
        if (r["scenario"], r["load"], r["clients"]) == key:
            return r
    return None


def front_end_rate(target: Target, results: Sequence[Point]) -> float | None:
    """The request rate a FRONT_END measurement runs the canned daemon at: the rate the
    target's goal asks of its first point (the goal times the second point's rows/s; None:
    the target has no such bound, or that point is missing)."""
    if not target.front_end_bound or target.goal is None:
        return None
    second = find(results, target.second)
    rows = rows_per_s(second) if second else None
    return target.goal * rows if rows else None


def front_end_scale(target: Target, results: Sequence[Point]) -> float | None:
    """What turns a FRONT_END ratio (the limit's pace beside over alone) into a bound on
    the target: 1 where the limit is the second point; for batching on / off, the limit's
    rows/s over batching off's (the model bound), since on cannot outrun the limit slowed
    by the front end."""
    limit_key = target.front_end_limit
    if limit_key is None:
        return None
    if limit_key == target.second:
        return 1.0
    return Bound(limit_key, target.second).value(results)


def front_end_value(pairs: Sequence[tuple[Point, Point]]) -> float | None:
    """A FRONT_END bound from its (alone, beside) in-process pairs: the median ratio."""
    ratios = [
        b / a
        for alone, beside in pairs
        if (a := rows_per_s(alone)) and (b := rows_per_s(beside)) is not None
    ]
    return float(np.median(ratios)) if ratios else None


def evaluate(
    targets: Sequence[Target],
    results: Sequence[Point],
    pairs: Mapping[str, Sequence[tuple[Point, Point]]],
    front_end: Mapping[str, Sequence[tuple[Point, Point]]] | None = None,
) -> list[dict[str, Any]]:
    """Each target's value (the median of its pairs, else from the table's medians), and
    the best value this box allows (with `front_end`: the FRONT_END pairs by target)."""
    out = []
    for unresolved in targets:
        target = unresolved.resolve(results) or unresolved
        from_medians = target.value(find(results, target.first), find(results, target.second))
        paired = [target.value(a, b) for a, b in pairs.get(target.name, ())]
        values = [v for v in paired if v is not None]
        value = float(np.median(values)) if values else from_medians
        bound = target.best_possible(results)
        beside = front_end_value((front_end or {}).get(target.name, ()))
        scale = front_end_scale(target, results)
        beside = None if beside is None or scale is None else beside * scale
        if beside is not None:
            bound = beside if bound is None else min(bound, beside)
        out.append(
            {
                "target": target.name,
                "against": " / ".join(target.second[:2]),
                "value": value,
                "goal": target.goal_text,
                "met": target.met(value),
                "pairs": values,
                "from_medians": from_medians,
                # The best this box allows, and whether that meets the goal (None: no bound).
                "bound": bound,
                "front_end_bound": beside,
                "reachable": None if bound is None else target.met(bound),
            }
        )
    return out
