"""InlinePolicy: a track record first, then time per element against the limit; load must
not decide for the model (crowded runs, probes); under load short runs follow a hand-off to
the workers unless they are shorter than the hand-offs."""

from __future__ import annotations

import concurrent.futures

from servingd.apis.inline_runs import HANDOFF_EVERY, PROBE_EVERY, RETIME_EVERY, InlinePolicy

KEY = ("model", 1, "serving_default")


def test_no_inline_before_min_runs() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=3)
    for _ in range(2):
        assert not policy.should_inline(KEY, 1)
        policy.record(KEY, 1, 0.0001)
    assert not policy.should_inline(KEY, 1)
    policy.record(KEY, 1, 0.0001)
    assert policy.should_inline(KEY, 1)
    assert not policy.should_inline(("other", 1, "serving_default"), 1)


def test_expected_time_scales_with_the_request_size() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    policy.record(KEY, 784, 0.000784)  # 1 us per element
    assert policy.should_inline(KEY, 784)
    assert policy.should_inline(KEY, 2000)
    assert not policy.should_inline(KEY, 2001)


def test_a_slowing_signature_moves_back_to_workers() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    policy.record(KEY, 1, 0.0005)
    assert policy.should_inline(KEY, 1)
    policy.record(KEY, 1, 0.1)  # one slow run: the average jumps past the limit
    assert not policy.should_inline(KEY, 1)
    for _ in range(40):
        policy.record(KEY, 1, 0.0005)
    assert policy.should_inline(KEY, 1)


def test_zero_turns_it_off_and_a_live_change_applies() -> None:
    policy = InlinePolicy(max_s=0.0, min_runs=1)
    policy.record(KEY, 1, 0.000001)
    assert not policy.should_inline(KEY, 1)
    policy.max_s = 0.002
    assert policy.should_inline(KEY, 1)


def test_one_slow_run_among_fast_ones_does_not_move_the_signature() -> None:
    # A pre-empted inline run on a busy machine; the old average (weight 0.2) jumped past
    # the limit on it and sent the signature to the workers.
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    policy.record(KEY, 1, 0.0005)
    policy.record(KEY, 1, 0.010)
    assert policy.should_inline(KEY, 1)
    for _ in range(3):  # slow again and again: the model itself is slow now
        policy.record(KEY, 1, 0.010)
    assert not policy.should_inline(KEY, 1)


def test_a_slower_run_that_shared_the_workers_does_not_raise_the_estimate() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    policy.record(KEY, 1, 0.0015)
    for _ in range(50):  # 32 runs at once on 2 cores: each takes far longer than the model
        policy.record(KEY, 1, 0.050, alone=False)
    assert policy.should_inline(KEY, 1)
    policy.record(KEY, 1, 0.0001, alone=False)  # but a fast one proves the model is fast
    assert policy.should_inline(KEY, 20)
    assert not policy.should_inline(KEY, 21)


def test_a_signature_a_little_over_the_limit_is_probed_inline_now_and_then() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    policy.record(KEY, 1, 0.0029)  # measured alone, under 1.5x the limit
    decisions = [policy.should_inline(KEY, 1) for _ in range(3 * PROBE_EVERY)]
    assert decisions.count(True) == 3
    assert decisions[PROBE_EVERY - 1] and not any(decisions[: PROBE_EVERY - 1])
    policy.record(KEY, 1, 0.0004)  # the probe ran fast: inline from now on
    assert all(policy.should_inline(KEY, 1) for _ in range(HANDOFF_EVERY - 1))


def test_a_slow_signature_measured_alone_is_never_probed() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    policy.record(KEY, 1, 0.0031)  # over 1.5x the limit
    assert not any(policy.should_inline(KEY, 1) for _ in range(4 * PROBE_EVERY))


def test_a_signature_known_only_from_crowded_runs_is_probed_up_to_ten_times_the_limit() -> None:
    # A fresh model under load: its first runs all shared the workers.
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    policy.record(KEY, 1, 0.015, alone=False)
    assert [policy.should_inline(KEY, 1) for _ in range(PROBE_EVERY)].count(True) == 1
    policy.record(KEY, 1, 0.0004)  # the probe, alone: the model is fast
    assert policy.should_inline(KEY, 1)
    slow = ("slow", 1, "serving_default")
    policy.record(slow, 1, 0.021, alone=False)  # over 10x: a probe would stall the loop
    assert not any(policy.should_inline(slow, 1) for _ in range(4 * PROBE_EVERY))


def test_a_worker_run_is_alone_only_if_no_other_worker_run_overlapped_it() -> None:
    policy = InlinePolicy(max_s=0.002)
    token = policy.worker_run_started()
    assert policy.worker_run_ended(token)
    first = policy.worker_run_started()
    second = policy.worker_run_started()  # in flight with the first
    assert not policy.worker_run_ended(second)
    assert not policy.worker_run_ended(first)
    first = policy.worker_run_started()
    second = policy.worker_run_started()
    assert not policy.worker_run_ended(second)
    third = policy.worker_run_started()  # the first is still running: not alone either
    assert not policy.worker_run_ended(first)
    assert not policy.worker_run_ended(third)
    assert policy.worker_run_ended(policy.worker_run_started())


def _fast_signature(policy: InlinePolicy, handoff_s: float = 0.0001) -> None:
    """KEY: 500 us per run, measured alone; the hand-off timed at `handoff_s`."""
    policy.worker_run_ended(policy.worker_run_started(handoff_s))
    policy.record(KEY, 1, 0.0005)


def test_a_short_run_goes_to_a_worker_while_another_run_is_on_the_workers() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    _fast_signature(policy)
    assert policy.should_inline(KEY, 1)
    first: concurrent.futures.Future[None] = concurrent.futures.Future()
    second: concurrent.futures.Future[None] = concurrent.futures.Future()
    policy.count_handoff(first)
    policy.count_handoff(second)
    assert not policy.should_inline(KEY, 1)
    first.set_result(None)
    assert not policy.should_inline(KEY, 1)
    second.cancel()  # the workers are empty again: inline
    assert policy.should_inline(KEY, 1)


def test_every_handoff_every_th_run_goes_to_a_worker_even_alone() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    _fast_signature(policy)
    decisions = [policy.should_inline(KEY, 1) for _ in range(3 * HANDOFF_EVERY)]
    assert [i for i, inline in enumerate(decisions) if not inline] == [
        HANDOFF_EVERY - 1,
        2 * HANDOFF_EVERY - 1,
        3 * HANDOFF_EVERY - 1,
    ]
    other = ("other", 1, "serving_default")  # each signature counts its own runs
    policy.record(other, 1, 0.0005)
    assert all(policy.should_inline(other, 1) for _ in range(HANDOFF_EVERY - 1))


def test_a_run_shorter_than_two_handoffs_stays_inline_under_load() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    _fast_signature(policy, handoff_s=0.0003)  # there and back: 600 us, more than the run
    policy.count_handoff(concurrent.futures.Future())
    decisions = [policy.should_inline(KEY, 1) for _ in range(2 * RETIME_EVERY)]
    # Only the re-timing hand-offs leave the loop.
    assert [i for i, inline in enumerate(decisions) if not inline] == [
        RETIME_EVERY - 1,
        2 * RETIME_EVERY - 1,
    ]


def test_the_handoff_time_falls_at_once_rises_slowly_and_counts_only_an_idle_pool() -> None:
    policy = InlinePolicy(max_s=0.002)
    policy.worker_run_ended(policy.worker_run_started(0.004))  # the first: a new thread
    assert policy.handoff_s == 0.004
    policy.worker_run_ended(policy.worker_run_started(0.0001))
    assert policy.handoff_s == 0.0001
    policy.worker_run_ended(policy.worker_run_started(0.0011))
    assert abs(policy.handoff_s - 0.0002) < 1e-12
    busy = policy.worker_run_started(0.0002)
    policy.worker_run_ended(policy.worker_run_started(0.5))  # queued behind a busy worker
    policy.worker_run_ended(busy)
    assert abs(policy.handoff_s - 0.0002) < 1e-12
