"""The benchmark issue's targets: which two load points each compares, and its value.

A target compares two load points: a throughput ratio (the first over the second, at least
the goal) or a p50 excess (the first's p50 minus the second's, at most the goal). Its value
comes from pairs when there are any: its two points measured back to back, in alternating
order, several times; the value is the median of the pairs' values. This box's speed drifts
up to 2x within a minute (other tenants), so two points measured seconds apart share the
drift where two from the table, up to a round apart, need not. The value from the table's
medians is reported beside it.

Some targets also get the best value this box allows (`Bound`, from the table's medians).
`CANNED` is servingd itself (batching on, its models loaded, its gRPC server, admission
and REST listener) with PredictionService.Predict answering a canned reply before it looks
at the request's tensors or the model (tests/bench/ablation.py, step `canned`): a batched
Predict costs at least that, so batching over the transport ceiling cannot beat canned over
the ceiling, and batching on over off cannot beat canned over batching off. The p50 excess
cannot be below the transport ceiling's own p50 at 1 client (a request to servingd crosses
that transport and also runs the model). A target whose bound misses its goal cannot be met
on this box by any change inside Predict (the canned bounds) or to servingd at all (the
ceiling's); only a cheaper server around it can.
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
# servingd's own option (docs/configuration.md), measured against the default: not one of
# the targets, a check that it helps (goal: not slower).
NICE_VALUE = 15
NICE = f"servingd, batching on, compute_thread_nice {NICE_VALUE}"
CEILING = "transport ceiling"
CANNED = "servingd, canned reply"
# The canned daemon's one load point: the bound of the batching targets.
CANNED_POINT: PointKey = (CANNED, "gRPC mlp", 64)
IN_PROCESS = "in-process (no server)"
MLSERVER = "MLServer"


@dataclass(frozen=True)
class Bound:
    """The best a target's value can be here: `over`'s throughput over `under`'s (a ratio
    target's upper bound), or `over`'s p50 (a p50 excess's lower bound; `under` None)."""

    over: PointKey
    under: PointKey | None = None

    def value(self, results: Sequence[Point]) -> float | None:
        first = find(results, self.over)
        if not first:
            return None
        if self.under is None:
            p50 = first.get("latency_ms", {}).get("p50")
            return None if p50 is None or np.isnan(p50) else float(p50)
        second = find(results, self.under)
        a, b = first.get("throughput_rps"), (second or {}).get("throughput_rps")
        return a / b if a and b else None


@dataclass(frozen=True)
class Target:
    name: str
    first: PointKey
    second: PointKey
    goal: float
    kind: Literal["ratio", "p50_excess"] = "ratio"
    bound: Bound | None = None

    @property
    def goal_text(self) -> str:
        return f">= {self.goal}" if self.kind == "ratio" else f"<= {self.goal}"

    def value(self, first: Point | None, second: Point | None) -> float | None:
        """This target's value from one measurement of each point (None: one is missing)."""
        if not first or not second:
            return None
        if self.kind == "ratio":
            a, b = first.get("throughput_rps"), second.get("throughput_rps")
            return a / b if a and b else None
        p50_a = first.get("latency_ms", {}).get("p50")
        p50_b = second.get("latency_ms", {}).get("p50")
        if p50_a is None or p50_b is None or np.isnan(p50_a) or np.isnan(p50_b):
            return None
        return float(p50_a - p50_b)

    def met(self, value: float | None) -> bool:
        if value is None:
            return False
        return value >= self.goal if self.kind == "ratio" else value <= self.goal


def all_targets(batch: int) -> list[Target]:
    """The issue's targets (and servingd's own check of compute_thread_nice); `batch` is the
    rows of the large payload."""
    targets = [
        Target(
            f"servingd gRPC 64 clients, batching / transport ceiling ({model})",
            (ON, f"gRPC {model}", 64),
            (CEILING, "gRPC mlp", 64),
            0.8,
            bound=Bound(CANNED_POINT, (CEILING, "gRPC mlp", 64)),
        )
        for model in ("mlp", "half_plus_two")
    ]
    targets += [
        dataclasses.replace(t, bound=Bound(CANNED_POINT, t.second))
        for t in _dense_models_at_64("batching on / off, {model}, gRPC 64 clients", ON, OFF, 3.0)
    ]
    targets += _dense_models_at_64(
        f"compute_thread_nice {NICE_VALUE} / default, batching on, {{model}}, gRPC 64 clients",
        NICE,
        ON,
        1.0,
    )
    targets += [
        Target(
            f"p50 at 1 client minus in-process p50, ms ({model}, gRPC)",
            (OFF, f"gRPC {model}", 1),
            (IN_PROCESS, f"{model} batch 1", 1),
            0.6,
            "p50_excess",
            Bound((CEILING, f"gRPC {model}", 1)),
        )
        for model in ("mlp", "half_plus_two")
    ]
    targets.append(
        Target(
            f"REST / gRPC throughput, [{batch},784] payload, batching off",
            (OFF, f"REST mlp [{batch},784]", 16),
            (OFF, f"gRPC mlp [{batch},784]", 16),
            0.5,
        )
    )
    targets += [
        Target(
            f"servingd / MLServer, mlp, {proto} {clients} clients (batching off both)",
            (OFF, f"{proto} mlp", clients),
            (MLSERVER, f"{proto} mlp", clients),
            1.5,
        )
        for proto in ("REST", "gRPC")
        for clients in (1, 64)
    ]
    return targets


def _dense_models_at_64(name: str, first: str, second: str, goal: float) -> list[Target]:
    """`first` over `second` (scenarios) for each dense MLP, gRPC batch-1 at 64 clients."""
    return [
        Target(
            name.format(model=model),
            (first, f"gRPC {model}", 64),
            (second, f"gRPC {model}", 64),
            goal,
        )
        for model in ("mlp", "wide_mlp")
    ]


def find(results: Sequence[Point], key: PointKey) -> Point | None:
    for r in results:
        if (r["scenario"], r["load"], r["clients"]) == key:
            return r
    return None


def evaluate(
    targets: Sequence[Target],
    results: Sequence[Point],
    pairs: Mapping[str, Sequence[tuple[Point, Point]]],
) -> list[dict[str, Any]]:
    """Each target's value (the median of its pairs, else from the table's medians)."""
    out = []
    for target in targets:
        from_medians = target.value(find(results, target.first), find(results, target.second))
        paired = [target.value(a, b) for a, b in pairs.get(target.name, ())]
        values = [v for v in paired if v is not None]
        value = float(np.median(values)) if values else from_medians
        bound = None if target.bound is None else target.bound.value(results)
        out.append(
            {
                "target": target.name,
                "value": value,
                "goal": target.goal_text,
                "met": target.met(value),
                "pairs": values,
                "from_medians": from_medians,
                # The best this box allows, and whether that meets the goal (None: no bound).
                "bound": bound,
                "reachable": None if bound is None else target.met(bound),
            }
        )
    return out
