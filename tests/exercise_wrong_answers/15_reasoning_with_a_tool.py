"""Notebook 15: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # truncated to four places, not rounded: 2/3 written 0.6666
    "test_my_format_number": """
def my_format_number(value):
    if value.denominator == 1:
        return str(value.numerator)
    scaled = int(abs(value) * 10**4)
    text = f"{scaled // 10**4}.{scaled % 10**4:04d}".rstrip("0").rstrip(".")
    return "-" + text if value < 0 and text != "0" else text
""",
    # the result's digits alone: the closing ">>" left to the model
    "test_my_tool_tokens": """
def my_tool_tokens(ids):
    pieces = [tokenizer.decode([t]) for t in ids]
    text = "".join(pieces)
    spans = [(m.start(1), m.end(1)) for m in re.finditer(r"<<[^<>=]*=([^<>]*)>>", text)]
    marks, at = [], 0
    for piece in pieces:
        marks.append(any(start <= at and at + len(piece) <= end for start, end in spans))
        at += len(piece)
    return marks
""",
    # a verdict by the count alone, without the rule's p < 0.05
    "test_bigger_numbers": """
passed = {}
for arm, arm_task in (("tool", Multistep(PROFILE, digits=3)), ("control", MultistepNoTool(PROFILE, digits=3))):
    model, _, _ = load_model(RUN / f"sft-{arm}", DEVICE)
    passed[arm] = measure(model, tokenizer, arm_task, arm_task.held_out(None, TEST).test, batch_size=32,
                          answer_loss=False)["passed_each"]
result = paired(passed["control"], passed["tool"])
my_verdict = "tool" if result.gained > result.lost else "control"
""",
    # a winner by the means of the race's seeds, without the third runs and without the rule
    "test_third_seeds": """
means = {arm: sum(rl[f"{arm}/{seed}"]["after"]["pass_rate"] for seed in SEEDS) / len(SEEDS) for arm in ARMS}
my_verdict = max(means, key=means.get)
""",
}
