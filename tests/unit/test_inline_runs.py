"""InlinePolicy: a track record first, then time per element against the limit."""

from __future__ import annotations

from servingd.apis.inline_runs import InlinePolicy

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
