"""ETA arithmetic and durations for people."""

import pytest

from tinylm.train.progress import format_duration, remaining_seconds, steps_left


def test_without_a_time_budget_the_eta_is_the_steps_left_at_the_measured_pace_plus_overhead():
    assert steps_left(200, 6000, 0.5) == 5800
    assert remaining_seconds(200, 6000, 0.5) == pytest.approx(2900)
    assert remaining_seconds(200, 6000, 0.5, overhead_per_step=0.1) == pytest.approx(5800 * 0.6)
    assert remaining_seconds(6000, 6000, 0.5, overhead_per_step=0.1) == 0
    assert remaining_seconds(7000, 6000, 0.5) == 0, "past the end (a shortened --max-steps) is not negative"


def test_a_time_budget_that_runs_out_first_bounds_the_eta():
    # 100 s of training used out of 300 at 0.5 s/step: 400 steps remain by time, fewer than the 5800 by count.
    assert steps_left(200, 6000, 0.5, elapsed=100, max_seconds=300) == pytest.approx(400)
    assert remaining_seconds(200, 6000, 0.5, 0.1, elapsed=100, max_seconds=300) == pytest.approx(400 * 0.6)
    # A generous budget leaves the step count in charge.
    assert steps_left(200, 6000, 0.5, elapsed=100, max_seconds=1e6) == 5800
    assert remaining_seconds(10, 20, 0.5, elapsed=400, max_seconds=300) == 0, "over budget: nothing left"


@pytest.mark.parametrize("seconds, text", [(0, "0.0s"), (4.24, "4.2s"), (9.94, "9.9s"), (9.96, "10s"), (45.4, "45s"),
                                           (59.6, "1m00s"), (65, "1m05s"), (3599, "59m59s"), (3600, "1h00m"),
                                           (7380, "2h03m"), (86400 + 4 * 3600 + 59, "1d04h"), (-3, "0.0s")])
def test_durations_read_as_two_units(seconds, text):
    assert format_duration(seconds) == text
