"""InlinePolicy: a track record first, then time per element against the limit; load must
not decide for the model (crowded runs, probes); while the loop is loaded, runs go to the
workers unless they are too short to pay for the hand-off."""

from __future__ import annotations

from servingd.apis.inline_runs import PROBE_EVERY, STAY_INLINE_S, InlinePolicy
from servingd.apis.loop_load import LoopLoad

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
    assert all(policy.should_inline(KEY, 1) for _ in range(4 * PROBE_EVERY))


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


def _loaded(share: float) -> LoopLoad:
    load = LoopLoad()
    load.share = share
    return load


def test_a_loaded_loop_sends_runs_that_could_go_inline_to_the_workers() -> None:
    load = _loaded(0.6)  # one client: the loop waits in the gaps
    policy = InlinePolicy(max_s=0.002, min_runs=1, load=load)
    policy.record(KEY, 1, 0.0005)
    assert all(policy.should_inline(KEY, 1) for _ in range(4 * PROBE_EVERY))
    load.share = 0.95  # busy through the gaps: others are waiting for the loop
    assert not any(policy.should_inline(KEY, 1) for _ in range(4 * PROBE_EVERY))
    load.share = 0.7  # the load eased
    assert policy.should_inline(KEY, 1)


def test_a_run_too_short_to_pay_for_a_hand_off_stays_inline_under_load() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=1, load=_loaded(1.0))
    policy.record(KEY, 4, 4 * STAY_INLINE_S / 5)
    assert all(policy.should_inline(KEY, 5) for _ in range(4 * PROBE_EVERY))
    assert not policy.should_inline(KEY, 6)  # over STAY_INLINE_S: it leaves the loop


def test_a_policy_with_no_load_reading_keeps_eligible_runs_inline() -> None:
    policy = InlinePolicy(max_s=0.002, min_runs=1)
    policy.record(KEY, 1, 0.0015)
    assert all(policy.should_inline(KEY, 1) for _ in range(4 * PROBE_EVERY))
