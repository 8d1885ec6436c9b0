"""Notebook 12: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # returns the seconds of the first evaluation at or below the target, without interpolating from the one before
    "test_my_seconds_to_target": """
def my_seconds_to_target(curve, target):
    return next((seconds for seconds, loss in curve if loss <= target), None)
""",
    # leaves Newton-Schulz at its default dtype, bfloat16, instead of the float32 the exercise asks for
    "test_my_singular_values": """
values = torch.linalg.svdvals(newton_schulz(gradient * 1000).double())
my_singular_values = (values[0].item(), values[-1].item())
""",
}
