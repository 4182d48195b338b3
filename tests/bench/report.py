"""Bench results: a Markdown report (printed and written) and the same data as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def table(results: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| scenario | load | clients | req/s | rows/s | p50 ms | p99 ms | server CPU (cores) "
        "| server RSS MiB | loadgen CPU (cores) | rows/batch | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['scenario']} | {r['load']} | {r['clients']} | {r['throughput_rps']:.0f} | "
            f"{r.get('rows_per_s', r['throughput_rps']):.0f} | "
            f"{_num(lat['p50'], '.2f')} | {_num(lat['p99'], '.2f')} | "
            f"{_num(r.get('server_cpu_cores'), '.2f')} | {_num(r.get('server_rss_mib'), '.0f')} | "
            f"{_num(r.get('loadgen_cpu_cores'), '.2f')} | {_num(r.get('rows_per_batch'), '.1f')} | "
            f"{r['errors'] or '-'} |"
        )
    return "\n".join(lines)


def goals_table(goals: Sequence[Mapping[str, Any]]) -> str:
    """value: the median of the target's back-to-back pairs (listed), else the value from
    the table's medians (which is shown beside it either way). bound: the best value this
    box allows (tests/bench/targets.py's Bound and FRONT_END), with whether that would meet
    the goal; "front end" where the FRONT_END measurement is the tightest."""
    lines = [
        "| target | value | pairs | from the table | goal | met | bound on this box |",
        "|---|---:|---|---:|---|---|---|",
    ]
    for g in goals:
        pairs = ", ".join(_num(v, ".2f") for v in g.get("pairs", ())) or "-"
        bound = "-"
        if g.get("bound") is not None:
            # Three decimals: a bound a hair below its goal must not print as the goal.
            verdict = "reachable" if g["reachable"] else "goal out of reach"
            which = "front end, " if g.get("front_end_bound") == g["bound"] else ""
            bound = f"{g['bound']:.3f} ({which}{verdict})"
        lines.append(
            f"| {g['target']} | {_num(g['value'], '.2f')} | {pairs} | "
            f"{_num(g.get('from_medians'), '.2f')} | {g['goal']} | "
            f"{_verdict(g['met'])} | {bound} |"
        )
    return "\n".join(lines)


def _verdict(met: bool | None) -> str:
    return "-" if met is None else "yes" if met else "no"


def markdown(
    machine: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    goals: Sequence[Mapping[str, Any]],
    lifecycle: Mapping[str, Any],
    notes: Sequence[str],
    sections: Sequence[str] = (),
) -> str:
    """`sections`: further Markdown blocks (each with its own heading), before the notes."""
    md = [
        "# servingd bench",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        goals_table(goals),
        "",
        table(results),
        "",
    ]
    if lifecycle:
        md += ["Lifecycle:", ""]
        md += [
            f"- {k}: {_num(v, '.2f') if isinstance(v, float) else v}" for k, v in lifecycle.items()
        ]
        md.append("")
    for section in sections:
        md += [section, ""]
    md += [f"- {n}" for n in notes]
    return "\n".join(md) + "\n"


def write(
    out_dir: Path,
    name: str,
    machine: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    goals: Sequence[Mapping[str, Any]],
    lifecycle: Mapping[str, Any],
    notes: Sequence[str],
    sections: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """`extra`: further JSON keys (the data behind `sections`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    json_path.write_text(
        json.dumps(
            {
                "machine": dict(machine),
                "results": list(results),
                "targets": list(goals),
                "lifecycle": dict(lifecycle),
                "notes": list(notes),
                **(extra or {}),
            },
            indent=2,
        )
        + "\n"
    )
    md_path = out_dir / f"{name}.md"
    md_path.write_text(markdown(machine, results, goals, lifecycle, notes, sections))
    return json_path, md_path
