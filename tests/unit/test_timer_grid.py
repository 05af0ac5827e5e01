"""The shell runs the core's timers on a 10 ms grid (`sbc.app.timer_due`): never early, at most one
grid step late, and deadlines within one step share one tick."""

from __future__ import annotations

import pytest

from sbc.app import TIMER_GRANULARITY_S, timer_due


@pytest.mark.parametrize("deadline", [0.0, 0.07, 0.29, 0.3, 1.005, 12.3456, 1e6 + 0.001, 3600.12])
def test_a_tick_is_never_early_and_at_most_one_step_late(deadline: float) -> None:
    due = timer_due(deadline)
    assert deadline <= due < deadline + TIMER_GRANULARITY_S + 1e-9


def test_deadlines_within_one_step_share_their_tick() -> None:
    assert timer_due(5.001) == timer_due(5.004) == timer_due(5.0099)
    assert timer_due(5.011) > timer_due(5.009)
