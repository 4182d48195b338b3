"""LogBudget: at most `burst` lines per interval; the next line logged says how many were
left out. The clock is the test's."""

from __future__ import annotations

from servingd.apis.log_budget import LogBudget


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_per_interval_then_a_count_of_the_rest() -> None:
    clock = _Clock()
    budget = LogBudget(interval_s=60, burst=3, clock=clock)
    decisions = [budget.take() for _ in range(10)]
    assert decisions == [(True, 0)] * 3 + [(False, 0)] * 7
    clock.now += 59.9  # same interval
    assert budget.take() == (False, 0)
    clock.now += 0.1  # a new interval: the first line tells of the 8 left out
    assert budget.take() == (True, 8)
    assert budget.take() == (True, 0)
    assert "8 similar lines left out: at most 3 per 60 s" in budget.summary(8)
    assert budget.summary(0) == ""


def test_a_quiet_spell_logs_everything() -> None:
    clock = _Clock()
    budget = LogBudget(interval_s=1, burst=2, clock=clock)
    for _ in range(5):
        assert budget.take() == (True, 0)
        clock.now += 1
