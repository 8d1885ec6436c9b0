"""The calculator a model calls in its text: its evaluator against Python's arithmetic, its refusals of hostile
input, and generation with the tool against generation where the same tokens were forced."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest
import torch

from tinylm.errors import TinyLMError
from tinylm.generate.calculator import (
    ERROR,
    Calculator,
    CalculatorError,
    evaluate,
    format_number,
    result_text,
    with_results,
)
from tinylm.generate.decode import decode
from tinylm.generate.sampling import Sampling
from tinylm.tokenizers.char import CharTokenizer


def random_expression(rng: random.Random, depth: int = 0) -> tuple[str, Fraction]:
    """An expression string and its value, computed by Python's own arithmetic on Fractions."""
    if depth >= 3 or rng.random() < 0.3:
        n = rng.randrange(0, 1000)
        if rng.random() < 0.2:
            return f"{n}.5", Fraction(2 * n + 1, 2)
        return str(n), Fraction(n)
    left, a = random_expression(rng, depth + 1)
    right, b = random_expression(rng, depth + 1)
    op = rng.choice("+-*/")
    if op == "/" and b == 0:
        op = "+"
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]
    text = f"({left}{op}{right})" if rng.random() < 0.5 else f"({left} {op} {right})"
    if rng.random() < 0.2:
        return f"-{text}", -value
    return text, value


def test_evaluator_agrees_with_python_arithmetic():
    rng = random.Random(0)
    compared = 0
    for _ in range(2000):
        text, value = random_expression(rng)
        if len(text) > 80 or abs(value) >= 10**15 or value.denominator >= 10**15:
            continue
        assert evaluate(text) == value, text
        compared += 1
    assert compared > 1000
    assert evaluate("2+3*4") == 14 and evaluate("(2+3)*4") == 20 and evaluate("8/4/2") == 1  # precedence, left to right
    assert evaluate("3 × 4 − 2 ÷ 4") == Fraction(23, 2) and evaluate(".5*4") == 2 and evaluate("-(-3)") == 3


@pytest.mark.parametrize("text", [
    "2**10", "2^10", "9" * 13, "10**100", "1e999", "1/0", "(1-1)/(2-2)", "(" * 9 + "1" + ")" * 9, "-" * 200 + "1",
    "__import__('os').system('true')", "a+1", "x.y", "1+", "(1+2", "1 2", "", "3,000*2", "1" + "+1" * 50,
    "999999999999*999999999999", "1/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3/3",
])
def test_hostile_or_malformed_expressions_are_refused(text):
    """Refused by the bounds before any large value is built (length, digits, nesting, size: module constants)."""
    with pytest.raises(CalculatorError):
        evaluate(text)
    assert result_text(text) == ERROR + ">>"
    assert issubclass(CalculatorError, TinyLMError)


def test_results_are_written_as_gsm8k_writes_them():
    assert [format_number(Fraction(n, d)) for n, d in ((24, 1), (5, 2), (1, 4), (10, 3), (-7, 3), (-1, 100000))] == \
        ["24", "2.5", "0.25", "3.3333", "-2.3333", "0"]
    assert with_results("48/2 = <<48/2=24.00>>24 and <<5/2=2.50>>2.50 and <<2^3=8>>") == \
        "48/2 = <<48/2=24>>24 and <<5/2=2.5>>2.50 and <<2^3=error>>"


def test_written_by_tool_finds_the_results_in_gsm8k_solutions():
    """On real solutions in GPT-2's tokens, the tokens the calculator would write are exactly each call's result
    and closing marks."""
    from tinylm.eval.benchmarks import eval_file, read_jsonl
    from tinylm.tokenizers.gpt2 import BPETokenizer

    tokenizer = BPETokenizer("gpt2")
    calculator = Calculator(tokenizer)
    for record in read_jsonl(eval_file("gsm8k/train.jsonl"), limit=40):
        text = with_results(record["answer"])
        ids = tokenizer.encode(text)
        written = calculator.written_by_tool(ids)
        assert tokenizer.decode([i for i, w in zip(ids, written) if w]) == \
            "".join(result + ">>" for result in re.findall(r"<<[^=]*=([^>]*)>>", text))


def scripted(model) -> tuple[list[int], CharTokenizer, int]:
    """(prompt, tokenizer, id): a character vocabulary laid over the model's ids so that the prompt reads '<<12*3'
    and the id the model chooses greedily next reads '='. The model knows ids only, so any such vocabulary is as good
    as another."""
    rng = random.Random(0)
    while True:
        a, b, c, d, e = rng.sample(range(model.config.vocab_size), 5)
        prompt = [a, a, b, c, d, e]
        with torch.no_grad():
            first = int(next(iter(decode(model, [prompt], 1, Sampling(temperature=0))))[0])
        if first not in prompt:
            break
    chars: list[str | None] = [None] * model.config.vocab_size
    for i, ch in zip(prompt, "<<12*3"):
        chars[i] = ch
    chars[first] = "="
    spare = iter(c for c in "0456789>.-ero+/() abcdfghijklmnpqstuvwxyz" if c not in chars)
    return prompt, CharTokenizer([c if c is not None else next(spare) for c in chars]), first


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_with_the_tool_equals_generation_with_its_tokens_forced(make_model, use_cache):
    model = make_model(seed=3, block_size=64).eval()
    prompt, tokenizer, equals = scripted(model)
    assert tokenizer.decode(prompt) == "<<12*3"
    calculator = Calculator(tokenizer)
    greedy = Sampling(temperature=0)
    with torch.no_grad():
        made = [int(t[0]) for t in decode(model, [prompt], 20, greedy, tool=calculator, use_cache=use_cache)]
        assert made[0] == equals and tokenizer.decode(made[1:5]) == "36>>"  # the calculator answered 12*3
        assert calculator.written_by_tool(prompt + made)[len(prompt):][:6] == [False] + [True] * 4 + [False]
        # the same tokens forced: the prompt holds the call and its result, and what follows is the same
        forced = prompt + made[:5]
        after = [int(t[0]) for t in decode(model, [forced], 15, greedy, tool=calculator, use_cache=use_cache)]
    assert after == made[5:]
    # without the tool the model writes its own tokens after "="
    with torch.no_grad():
        alone = [int(t[0]) for t in decode(model, [prompt], 5, greedy, use_cache=use_cache)]
    assert alone[0] == equals and alone[1:5] != made[1:5]


def test_a_refused_call_writes_error_and_a_batch_keeps_rows_apart(make_model):
    """A call the calculator refuses gets `error>>`; in a batch, each row's calls are its own: every row's tokens are
    those it makes alone."""
    model = make_model(seed=3, block_size=64).eval()
    prompt, tokenizer, equals = scripted(model)
    chars = list(tokenizer.chars)
    chars[prompt[4]] = "^"  # the prompt now reads "<<12^3": a power, refused
    greedy = Sampling(temperature=0)
    with torch.no_grad():
        refused = [int(t[0]) for t in decode(model, [prompt], 8, greedy, tool=Calculator(CharTokenizer(chars)))]
        assert CharTokenizer(chars).decode(refused[:8]) == "=error>>"
        calculator, rows = Calculator(tokenizer), [prompt, prompt[::-1], prompt[2:]]
        together = list(zip(*[t.tolist() for t in decode(model, rows, 12, greedy, tool=calculator)]))
        alone = [[int(t[0]) for t in decode(model, [row], 12, greedy, tool=calculator)] for row in rows]
    assert [list(r) for r in together] == alone
    with pytest.raises(CalculatorError, match="cannot write"):
        Calculator(CharTokenizer(list("0123456789<>=")))  # no '.', '-' or 'error'
    assert tokenizer.decode(alone[0][:5]) == "=36>>"


def test_tool_task_scores_and_masks():
    """The tool tasks' check reads the final number as GSM8K's rule does, and their reference answers train
    no calculator token."""
    from tinylm.posttrain.tasks.multistep import Multistep
    from tinylm.tokenizers.gpt2 import BPETokenizer

    task = Multistep("smoke")
    problems = task.held_out(2, 2).test
    replies = [problems[0].solution, "I think it is 7."]
    scores = task.score_replies(problems, replies, [True, True])
    assert [s.correct for s in scores] == [True, problems[1].answer == "7"]
    assert scores[0].figures["calls"] == problems[0].solution.count("<<") and scores[0].kinds["final_line"]
    tokenizer = BPETokenizer("gpt2-chat")
    rendered = task.answers(tokenizer, problems[:1], 512)[0]
    trained = tokenizer.decode([i for i, a in zip(rendered.ids, rendered.is_answer) if a])
    assert "<<" in trained and "#### " + problems[0].answer in trained
    assert re.findall(r"<<[^=]*=>>", trained) == []  # the calls' openings are trained ...
    assert not any(f"={r}>>" in trained for r in re.findall(r"=(\d+)>>", problems[0].solution))  # ... their results not


    class WithoutCalls(Multistep):
        annotations = False

    control = WithoutCalls("smoke").held_out(2, 2).test[0]  # the same problem, the solution in the head
    assert control.prompt == problems[0].prompt and control.answer == problems[0].answer
    assert "<<" not in control.solution and control.solution.split("\n")[-1] == f"#### {control.answer}"


def test_tool_text_tells_the_calculators_text_apart_however_the_stream_is_cut():
    from tinylm.generate.calculator import ToolText

    text = "So 48/2 = <<48/2=24>>24 clips; a < b >> c, and <<48+24=72>>72. Then <<7*"
    rng = random.Random(0)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(text)), 12))
        marker, parts = ToolText(), []
        for start, end in zip([0, *cuts], [*cuts, len(text)]):
            parts += marker.parts(text[start:end])
        assert "".join(t for t, _ in parts) == text
        assert "".join(t for t, tool in parts if tool) == "24>>72>>"
