"""ETA arithmetic, a session's pace and ETA from given timings, and durations for people."""

import pytest

from tinylm.train.progress import SessionTiming, format_duration


def two_steps(max_steps: int, max_seconds: float | None = None, elapsed_at_start: float = 0.0) -> SessionTiming:
    """A session that started at 0 s of wall clock and trained two steps of 0.5 s: a pace of 0.5 s a step."""
    timing = SessionTiming(0.0, elapsed_at_start, max_steps, max_seconds)
    for _ in range(2):
        timing.count_step(0.5, tokens=64)
    return timing


def test_without_a_time_budget_the_eta_is_the_steps_left_at_the_measured_pace_plus_overhead():
    assert two_steps(6000).steps_left(200, 0.5, elapsed=1.0) == 5800
    assert two_steps(6000).eta(now=1.0, step=200, elapsed=1.0) == pytest.approx(2900)
    # 0.2 s of wall clock outside the two steps: 0.1 s of overhead per step
    assert two_steps(6000).eta(now=1.2, step=200, elapsed=1.0) == pytest.approx(5800 * 0.6)
    assert two_steps(6000).eta(now=1.2, step=6000, elapsed=1.0) == 0
    past_the_end = two_steps(6000).eta(now=1.0, step=7000, elapsed=1.0)
    assert past_the_end == 0, "past the end (a shortened --max-steps) is not negative"


def test_a_time_budget_that_runs_out_first_bounds_the_eta():
    # 100 s of training used out of 300 at 0.5 s/step: 400 steps remain by time, fewer than the 5800 by count.
    budget = two_steps(6000, max_seconds=300, elapsed_at_start=99.0)
    assert budget.steps_left(200, 0.5, elapsed=100) == pytest.approx(400)
    assert budget.eta(now=1.2, step=200, elapsed=100) == pytest.approx(400 * 0.6)
    # A generous budget leaves the step count in charge.
    assert two_steps(6000, max_seconds=1e6).steps_left(200, 0.5, elapsed=100) == 5800
    assert two_steps(20, max_seconds=300).steps_left(10, 0.5, elapsed=400) == 0, "over budget: nothing left"



def test_the_pace_leaves_out_the_sessions_first_step_until_the_first_record():
    """A first step of 10 s (it also compiles) and three of 0.1 s: the window reports its own mean and tokens/s, the
    estimates go by 0.1 s a step; after the first record the window's mean is the pace again."""
    timing = SessionTiming(started=0.0, elapsed_at_start=0.0, max_steps=100)
    for seconds in (10.0, 0.1, 0.1, 0.1):
        timing.count_step(seconds, tokens=500)
    assert timing.before_first_record
    assert timing.seconds_per_step == pytest.approx(10.3 / 4)
    assert timing.tokens_per_s == pytest.approx(2000 / 10.3)
    assert timing.pace() == pytest.approx(0.1)
    timing.new_window()
    for seconds in (0.2, 0.4):
        timing.count_step(seconds, tokens=500)
    assert not timing.before_first_record and timing.steps == 6
    assert timing.pace() == timing.seconds_per_step == pytest.approx(0.3)


def test_a_one_step_window_is_its_own_pace():
    timing = SessionTiming(started=0.0, elapsed_at_start=0.0, max_steps=10)
    timing.count_step(2.0, tokens=64)
    assert timing.pace() == 2.0


def test_the_eta_adds_the_sessions_time_outside_steps_per_step_and_the_plan_follows_the_budget():
    """A session resumed at 50 s of training: 4 steps of 0.5 s (2 s of training) in 5 s of wall clock leave 3 s of
    evaluations etc., 0.75 s per step, charged on each of the 86 steps left."""
    timing = SessionTiming(started=100.0, elapsed_at_start=50.0, max_steps=100)
    for _ in range(4):
        timing.count_step(0.5, tokens=64)
    assert timing.eta(now=105.0, step=14, elapsed=52.0) == pytest.approx(86 * (0.5 + 0.75))
    assert timing.plan(step=14, elapsed=52.0) == pytest.approx(
        {"event": "plan", "step": 14, "max_steps": 100, "max_seconds": None, "step_seconds": 0.5,
         "expected_steps": 100, "expected_seconds": 52.0 + 86 * 0.5})
    # A 60 s budget ends it first: 8 s of training left, 16 steps at 0.5 s.
    budget = SessionTiming(started=100.0, elapsed_at_start=50.0, max_steps=100, max_seconds=60.0)
    for _ in range(4):
        budget.count_step(0.5, tokens=64)
    assert budget.eta(now=105.0, step=14, elapsed=52.0) == pytest.approx(16 * (0.5 + 0.75))
    plan = budget.plan(step=14, elapsed=52.0)
    assert (plan["expected_steps"], plan["expected_seconds"]) == pytest.approx((30, 60.0))

@pytest.mark.parametrize("seconds, text", [(0, "0.0s"), (4.24, "4.2s"), (9.94, "9.9s"), (9.96, "10s"), (45.4, "45s"),
                                           (59.6, "1m00s"), (65, "1m05s"), (3599, "59m59s"), (3600, "1h00m"),
                                           (7380, "2h03m"), (86400 + 4 * 3600 + 59, "1d04h"), (-3, "0.0s")])
def test_durations_read_as_two_units(seconds, text):
    assert format_duration(seconds) == text


def test_an_evaluation_line_gives_hellaswag_its_interval():
    """3 of 8 examples right is 0.375, but its 95% interval runs from 0.14 to 0.69: the line says both."""
    from tinylm.eval.uncertainty import wilson_interval
    from tinylm.train.progress import format_record

    line = format_record({"event": "final", "step": 100, "val_loss": 8.0594, "best_val_loss": 8.0594,
                          "hellaswag_acc_norm": 0.375, "hellaswag_examples": 8})
    low, high = wilson_interval(3, 8)
    assert f"HellaSwag acc_norm 0.3750 [95% interval {low:.2f}-{high:.2f}] (8 examples)" in line
    assert (f"{low:.2f}", f"{high:.2f}") == ("0.14", "0.69")
