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
    "test_more_steps": """
longer = task.steps + 1
passed = {}
arms = (("tool", Multistep(PROFILE, steps=longer)), ("control", MultistepNoTool(PROFILE, steps=longer)))
for arm, arm_task in arms:
    model, _, _ = load_model(RUN / f"sft-{arm}", DEVICE)
    passed[arm] = measure(model, tokenizer, arm_task, arm_task.held_out(None, TEST).test, batch_size=32,
                          answer_loss=False)["passed_each"]
result = paired(passed["control"], passed["tool"])
my_verdict = "tool" if result.gained > result.lost else "control"
""",
    # the pass counts before and after compared, without the paired test
    "test_rl_without_room": """
report = json.loads((RUN / "GRPO-2-digit" / "grpo_eval.json").read_text())
my_verdict = "better" if report["after"]["passed"] > report["before"]["passed"] else "worse"
""",
}
