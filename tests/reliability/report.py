"""Writes the reliability table of docs/reliability.md from the RELIABILITY figure lines.

    python -m tests.reliability.report [FIGURES_LOG] [MARKDOWN]

Reads build/reliability/figures.log (written by the tests in tests/reliability and by the
hostile-input property tests, via support.figures; the last line of each run name wins)
and replaces the table between the markers in docs/reliability.md. `make soak` runs the
full counts and then this.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BEGIN = "<!-- reliability-table:begin -->"
END = "<!-- reliability-table:end -->"

log = logging.getLogger("reliability.report")

# Per run: (test, load, faults injected, inputs tried, failure keys, green when).
ROWS: dict[str, tuple[str, str, str, str]] = {
    "rollover_soak": (
        "tests/reliability/test_rollover_soak.py",
        "{clients} gRPC clients, closed loop, {seconds} s",
        "{swaps} version swaps (atomic copy in, old dir removed)",
        "{requests} Predict requests",
    ),
    "leak_check": (
        "tests/reliability/test_leak.py",
        "one Predict per cycle",
        "{cycles} load/unload cycles of the MLP (HandleReloadConfigRequest)",
        "RSS {rss_before_mib} -> {rss_after_mib} MiB (+{growth_pct}%, target <= {target_pct}%)",
    ),
    "overload": (
        "tests/reliability/test_overload.py",
        "open loop {offered_rps} req/s = 5x capacity ({capacity_rps} req/s) for {seconds} s",
        "in-flight cap 4; health + metrics probed every 0.1 s",
        "{sent} sent: {admitted} admitted (p99 {admitted_p99_ms} ms), {rejected} refused "
        "UNAVAILABLE (p99 {rejected_p99_ms} ms); probes {probes_ok} ok / {probes_failed} failed; "
        "recovered={recovered}",
    ),
    "slow_requests_health": (
        "tests/reliability/test_slow_requests.py",
        "one gRPC client for {seconds} s: 10 fast Predicts, then never-ending runs: one with "
        "a 0.2 s deadline, one cancelled after 0.2 s, a REST one abandoned after 0.2 s",
        "gRPC health + /healthz probed every 50 ms",
        "{probes} probes: p99 {p99_ms} ms, max {max_ms} ms, {within_100ms} within 100 ms",
    ),
    # Hostile inputs: property tests (in process) and the REST fuzz run (real daemon).
    "bad_input_soak": (
        "tests/reliability/test_bad_input_soak.py",
        "{clients} clients, closed loop, {seconds} s",
        "65-dim tensors, undecodable messages, lone surrogates, bad and good gzip bodies, "
        "100 KB names, 10,000 input names, malformed HTTP",
        "{requests} requests; {log_bytes} bytes of log, {tracebacks} tracebacks",
    ),
    "rest_fuzz": (
        "tests/reliability/test_rest_fuzz.py",
        "schemathesis, {examples} examples per operation, one worker, seed {seed}",
        "valid and invalid requests generated from docs/openapi.yaml for all {operations} "
        "operations (examples, coverage, fuzzing, stateful phases)",
        "{cases} requests: {server_errors} 5xx, {network_errors} network errors, "
        "{tool_errors} schemathesis-internal errors",
    ),
    "json_any_body": (
        "tests/unit/test_json_tensors_properties.py",
        "hypothesis, in process (REST JSON parser + decoder)",
        "random JSON (NaN/Infinity, 2^70 integers, b64, ragged/nested lists and objects) "
        "x 4 dtypes, as body and under instances/inputs",
        "{inputs} bodies",
    ),
    "json_deep_nesting": (
        "tests/unit/test_json_tensors_properties.py",
        "hypothesis, in process",
        "lists nested 1..3000 deep",
        "{inputs} bodies",
    ),
    "json_random_bytes": (
        "tests/unit/test_json_tensors_properties.py",
        "hypothesis, in process",
        "random bytes as a JSON body",
        "{inputs} bodies",
    ),
    "grpc_hostile_tensor_protos": (
        "tests/unit/test_codecs.py",
        "hypothesis, in process (element limit, then the TensorProto decoder)",
        "TensorProtos with any dtype enum, negative/huge/unknown-rank shapes, random "
        "tensor_content and mismatched typed values",
        "{inputs} tensors",
    ),
}


def parse(lines: list[str]) -> dict[str, dict[str, str]]:
    runs: dict[str, dict[str, str]] = {}
    for line in lines:
        parts = line.split()
        if len(parts) < 2 or parts[0] != "RELIABILITY":
            continue
        runs[parts[1]] = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    return runs


def green(name: str, values: dict[str, str]) -> bool:
    if name == "leak_check":
        return float(values["growth_pct"]) <= float(values["target_pct"])
    ok = values.get("failures") == "0" and values.get("out_of_order", "0") == "0"
    if name == "overload":
        ok = ok and values["probes_failed"] == "0" and values["recovered"] == "True"
    return ok


def table(runs: dict[str, dict[str, str]]) -> str:
    out = [
        "| test | load | faults injected | inputs tried | failures | data lost | result |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, (test, load, faults, inputs) in ROWS.items():
        values = runs.get(name)
        if values is None:
            out.append(f"| {test} | not run | | | | | missing |")
            continue
        failures = values.get("failures", "0")
        lost = failures if name != "leak_check" else "0"
        out.append(
            f"| {test} | {load.format(**values)} | {faults.format(**values)} | "
            f"{inputs.format(**values)} | {failures} | {lost} | "
            f"{'green' if green(name, values) else 'RED'} |"
        )
    return "\n".join(out)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    figures = Path(argv[0]) if argv else REPO / "build" / "reliability" / "figures.log"
    markdown = Path(argv[1]) if len(argv) > 1 else REPO / "docs" / "reliability.md"
    runs = parse(figures.read_text().splitlines())
    text = markdown.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    markdown.write_text(f"{head}{BEGIN}\n{table(runs)}\n{END}{tail}")
    log.info("wrote the reliability table of %s from %s", markdown, figures)
    return 0 if all(n in runs and green(n, runs[n]) for n in ROWS) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
