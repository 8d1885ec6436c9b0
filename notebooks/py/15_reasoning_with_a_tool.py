# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 15 · Reasoning with a tool: a calculator in the token stream, then SFT and RL on word problems
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/15_reasoning_with_a_tool.ipynb)
#
# A 135M-parameter chat model multiplies two-digit numbers badly in its head. GSM8K's worked solutions mark each
# calculation as a call, `47*36 = <<47*36=1692>>1692`, and the paper that released them let a calculator write the
# result at sampling time. This notebook gives SmolLM2-135M-Instruct that calculator, teaches it to call it, then
# uses reinforcement learning on the steps, each change measured against its control on the same problems.
#
# **What you will learn**
# - a **calculator in the token stream**: an evaluator that is never `eval`, and decoding where the tool writes
#   tokens the model then reads, checked against `tinylm.generate.decode`;
# - why the tool's tokens are **masked from the loss**, in SFT and in the policy gradient;
# - the **base**, zero- and few-shot; **SFT with the tool** against SFT with the calls removed and against the
#   calculator switched off, by paired tests; **GRPO** against expert iteration, with pass@k and the calls; GSM8K.
#
# It builds on notebooks 9 (ChatML), 10 (LoRA), 11 (GRPO) and 6b (paired tests).
#
# **How long it takes**: a lesson of about 90 minutes (reading, code and the `cpu` run's 45 s with `REPLAY = True`, 55
# min live, by the course's formula), then a second sitting of about 66 minutes for the 4 exercises (10 minutes per
# function, 20 per experiment, and 341 s of training).
#
# | profile | what runs | time |
# |---|---|---|
# | `smoke` (CI) | every check, on a 2-layer stand-in with SmolLM2's tokenizer; two-step trainings on a few problems, replies cut at 16 tokens | seconds |
# | `cpu` (2-core laptop) | SmolLM2-135M-Instruct: LoRA SFT of 40 steps with and without the calls; GRPO and expert iteration from the SFT model on 3-digit problems, 3 rollouts each, two seeds each; 48 test problems per measurement (32 for RL), 24 of GSM8K | the last cell prints it |
# | `gpu` | the `gpu` recipes (3 steps per problem, 200 SFT steps, 50 rollouts of 16 × 8) | not measured |
#
# **Papers**: GSM8K ([Cobbe et al., 2021](https://arxiv.org/abs/2110.14168)); Toolformer
# ([Schick et al., 2023](https://arxiv.org/abs/2302.04761)); STaR ([Zelikman et al., 2022](https://arxiv.org/abs/2203.14465));
# GRPO ([Shao et al., 2024](https://arxiv.org/abs/2402.03300)); pass@k ([Chen et al., 2021](https://arxiv.org/abs/2107.03374));
# SmolLM2 ([Ben Allal et al., 2025](https://arxiv.org/abs/2502.02737)); McNemar's test
# ([McNemar, 1947](https://doi.org/10.1007/BF02295996)); nanochat's calculator
# ([Karpathy, 2025](https://github.com/karpathy/nanochat)).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %%
import dataclasses
import gc
import json
import random
import re
import time
from fractions import Fraction

import matplotlib.pyplot as plt
import torch

import tinylm
from tinylm.course.diagrams import draw_tool_tokens
from tinylm.course.exercises import check
from tinylm.course.plotting import read_metrics, use_projector_style
from tinylm.course.recorded import recorded
from tinylm.eval.uncertainty import compare, paired, wilson_interval
from tinylm.generate.calculator import Calculator, CalculatorError, evaluate, format_number, result_text
from tinylm.generate.decode import generate_batch
from tinylm.model.gpt import GPT
from tinylm.model.lora import LoRAOptions
from tinylm.paths import runs_dir
from tinylm.posttrain.grpo.run import grpo
from tinylm.posttrain.job import PostTrainingOptions
from tinylm.posttrain.sft.run import sft
from tinylm.posttrain.task import measure, pass_rate_line
from tinylm.posttrain.tasks import register
from tinylm.posttrain.tasks.gsm8k import GSM8K
from tinylm.posttrain.tasks.multistep import Multistep
from tinylm.train.checkpoint import load_model, model_checkpoint, published_model, save_checkpoint
from tinylm.train.options import RunOptions

NOTEBOOK_STARTED = time.perf_counter()
PROFILE, DEVICE = tinylm.set_up_notebook()  # the profile, the device and its speed settings, as commands set up
RUN = runs_dir() / f"notebook-15-{PROFILE}"
# True (cpu): the measurements and trainings below replay what the recorded cpu run printed, in seconds; False runs
# them live (the header's live time; exercises 3 and 4 need the models a live run trains).
REPLAY = PROFILE == "cpu"
TEST = Multistep.recipe("sft", PROFILE).held_out  # multistep test problems per measurement: the SFT recipe's count
GSM8K_TEST = {"smoke": 2, "cpu": 24, "gpu": 1319}[PROFILE]  # GSM8K's first test problems
use_projector_style()
print(f"profile {PROFILE}, device {DEVICE}")


def quiet(_):
    pass

# %% [markdown]
# ## 1. A calculator the model may call
#
# The model writes `<<`, an expression and `=`; the calculator writes the value and `>>`. The expression is model
# output, so the evaluator must treat it as untrusted input: `eval` would run `__import__('os')` or never finish
# `9**9**9`. A recursive-descent parser reads only numbers, `+ - * /` and parentheses, one grammar rule per function,
# in exact fractions. Here is one that bounds only its nesting; the package's (`tinylm.generate.calculator.evaluate`)
# adds `× ÷ −`, unary signs, and bounds the length (80 characters), the digits (12) and every value's size (below
# 10¹⁵), so that nothing it is given can take long.

# %%
TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?|[-+*/()])")


def my_evaluate(text: str, max_depth: int = 8) -> Fraction:
    """sum := product (('+'|'-') product)*; product := factor (('*'|'/') factor)*; factor := number | '(' sum ')';
    number := digits, optionally '.' digits. Spaces are skipped; nesting deeper than max_depth is refused."""
    tokens = TOKEN.findall(text)
    if "".join(tokens) != re.sub(r"\s", "", text):  # a character outside the grammar
        raise CalculatorError(f"cannot read {text!r}")
    tokens.append("end")

    def sum_(i, depth):
        value, i = product(i, depth)
        while tokens[i] in ("+", "-"):
            right, j = product(i + 1, depth)
            value, i = (value + right if tokens[i] == "+" else value - right), j
        return value, i

    def product(i, depth):
        value, i = factor(i, depth)
        while tokens[i] in ("*", "/"):
            right, j = factor(i + 1, depth)
            if tokens[i] == "/" and right == 0:
                raise CalculatorError("division by zero")
            value, i = (value * right if tokens[i] == "*" else value / right), j
        return value, i

    def factor(i, depth):
        if tokens[i] == "(":
            if depth == max_depth:
                raise CalculatorError("nested too deeply")
            value, i = sum_(i + 1, depth + 1)
            if tokens[i] != ")":
                raise CalculatorError("missing )")
            return value, i + 1
        if not tokens[i][0].isdigit():
            raise CalculatorError(f"a number was expected, not {tokens[i]!r}")
        return Fraction(tokens[i]), i + 1

    value, i = sum_(0, 0)
    if tokens[i] != "end":
        raise CalculatorError(f"unexpected {tokens[i]!r}")
    return value


def random_expression(rng: random.Random, depth: int = 0) -> str:
    """Numbers (some 0, some decimal), spaces, nesting up to 10 deep: some divide by zero, some nest too deep."""
    if depth > 9 or rng.random() < 0.3:
        return rng.choice(["0", str(rng.randrange(1, 1000)), f"{rng.randrange(100)}.{rng.randrange(10)}"])
    text = f"{random_expression(rng, depth + 1)} {rng.choice('+-*/')} {random_expression(rng, depth + 1)}"
    return f"({text})" if rng.random() < 0.6 else text


def outcome(evaluator, text: str):
    try:
        return evaluator(text)
    except CalculatorError:
        return "refused"


rng = random.Random(0)
counts = {"equal": 0, "both refuse": 0, "only the package refuses (its bounds)": 0}
for text in (random_expression(rng) for _ in range(2000)):
    mine, theirs = outcome(my_evaluate, text), outcome(evaluate, text)
    assert mine == theirs or (theirs == "refused" and mine != "refused"), text  # my refusals are the package's too
    counts["equal" if mine == theirs != "refused" else "both refuse" if mine == theirs else
           "only the package refuses (its bounds)"] += 1
assert all(counts.values())
print("2000 random expressions:", counts)
for hostile in ("2**99999", "9" * 40, "__import__('os')", "(" * 9 + "1" + ")" * 9, "1/(5-5)", "47*36"):
    print(f"{hostile[:22]!r:>26}: package <<…={result_text(hostile):<10} mine: {outcome(my_evaluate, hostile)}")

# %% [markdown]
# The two agree on every expression but those only the package refuses, by its bounds; so it refuses 40 nines (more
# than 12 digits; the table shows the first 22), which mine computes. A result that is no integer is written rounded
# to four places (`10/4` gives `2.5`). GSM8K's annotations
# sometimes write results their own way (`<<5/2=2.50>>`), so its training solutions are rewritten with the
# calculator's results: what the model reads in training is what it will read when it samples.
#
# ## 2. The tool in the token stream
#
# SmolLM2's tokenizer writes every digit as its own token (checked below), so a result is a few tokens. Decoding with
# a tool is ordinary decoding plus one rule: after each new token, if the reply now ends in an open call's `=`, the
# calculator's tokens are appended and the model goes on. The picture: one line of a training solution.

# %%
checkpoint = published_model("smollm2-135m-instruct")  # imported from the mirror's GGUF file on first use
base_model, tokenizer, _ = load_model(checkpoint, DEVICE)
if PROFILE == "smoke":  # CI checks the code, not the model: a 2-layer stand-in with SmolLM2's shape and tokenizer
    base_model = GPT(dataclasses.replace(base_model.config, n_layer=2, n_embd=64, n_head=2, n_kv_head=1,
                                         mlp_hidden=128)).to(DEVICE).eval()
    checkpoint = RUN / "stand-in.pt"
    save_checkpoint(checkpoint, model_checkpoint(base_model, tokenizer, step=0, elapsed=0.0, source="stand-in"))
task = Multistep(PROFILE)
calculator = Calculator(tokenizer)
solution = task.train_problems()[0].solution.splitlines()[0]
ids = tokenizer.encode(solution)
by_tool = calculator.written_by_tool(ids)
assert all(len(tokenizer.decode([t])) == 1 for t in tokenizer.encode("0123456789"))  # a token per digit
draw_tool_tokens([tokenizer.decode([t]) for t in ids], by_tool, tool="the calculator")
plt.show()
print(f"{len(ids)} tokens; the calculator's: {tokenizer.decode([t for t, tool in zip(ids, by_tool) if tool])!r}")

# %% [markdown]
# The loop, from scratch: greedy decoding without a cache, and the calculator's rule on the text: if it ends in
# `<<expression=` (no `<`, `>` or `=` inside), write the result. The package's `decode(..., tool=Calculator(
# tokenizer))` applies the rule token by token in its cached loop, forcing the tool's tokens one per step so the
# key/value cache extends over them; the two part only on odd text (a token carrying `=` and more, an expression over
# 80 characters). The check: the same greedy reply from both, the prompt ending inside a call the assistant has
# begun; section 5 checks again on the fine-tuned model's own calls (skipped by a replay on a fresh machine, which has
# no such model).

# %%
OPEN_CALL = re.compile(r"<<([^<>=]*)=\Z")  # text that ends in an open call's "="
generation = task.generation(tokenizer)  # the chat's stop tokens, the text vocabulary, the tool


@torch.no_grad()
def my_greedy_with_tool(model, prompt: list[int], max_new: int) -> list[int]:
    ids, new = list(prompt), []
    limit = generation["vocab_limit"]
    excluded = [t for t in generation["excluded_tokens"] if t < limit]
    while len(new) < max_new:
        text = tokenizer.decode(ids)
        if call := OPEN_CALL.search(text):  # the calculator's turn
            written = tokenizer.encode(result_text(call.group(1)))
            ids, new = ids + written, new + written
            continue
        logits = model(torch.tensor([ids], device=DEVICE))[0][0, -1, :limit]  # no cache: the whole text each step
        logits[excluded] = float("-inf")
        token = int(logits.argmax())
        if token in generation["stop_tokens"]:
            break
        ids.append(token)
        new.append(token)
    return new[:max_new]

def check_loop(model, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    theirs = generate_batch(model, prompts, max_new, temperature=0, **generation)
    for prompt, reply in zip(prompts, theirs):
        mine = my_greedy_with_tool(model, prompt, max_new)
        assert mine == reply and mine, (tokenizer.decode(mine), tokenizer.decode(reply))
    return theirs


test = task.held_out(None, TEST).test
problem = test[0]
first = re.search(r"(\w+) has (\d+) \w+ with (\d+)", problem.prompt)
opening = tokenizer.encode(f"{first[1]} starts with {first[2]}*{first[3]} = <<{first[2]}*{first[3]}=")
reply = check_loop(base_model, [task.prompt_ids(tokenizer, problem) + opening], 40)[0]
print(problem.prompt)
print("the reply, its opening forced:", repr(tokenizer.decode(opening + reply)))
print(f"answer: {problem.answer}; my loop and decode(tool=...) agree on all {len(reply)} new tokens")

# %% [markdown]
# ## 3. Why the tool's tokens are not trained
#
# **In SFT** the loss is the mean of −log π(xₜ | x<ₜ) over the trained tokens M, the answer's tokens less the
# calculator's (its digits and the closing `>>`):
#
# $$L = -\frac{1}{|M|}\sum_{t \in M} \log \pi_\theta(x_t \mid x_{<t}).$$
#
# Were the calculator's tokens in M, the model would be trained to write `1692` after `<<47*36=` itself: mental
# arithmetic, the skill it lacks. It reads those tokens (they are in the context) and is never asked to produce them.
#
# **In RL** a reply τ is a sequence of the model's tokens aₜ, each sampled from π_θ(· | sₜ) where sₜ is all the text
# so far (the calculator's tokens included), and the calculator's tokens, which follow from the text
# deterministically. Sampled with the calculator in the loop, the reply's probability and its logarithm are
#
# $$p_\theta(\tau) = \prod_{t \in \text{model}} \pi_\theta(a_t \mid s_t) \prod_{t \in \text{tool}} 1,
#   \qquad \log p_\theta(\tau) = \sum_{t \in \text{model}} \log \pi_\theta(a_t \mid s_t).$$
#
# The objective is J(θ) = E_τ[R(τ)], the reward of the finished text. Notebook 11's identity ∇p = p ∇log p gives
# ∇J = E[R ∇log p_θ(τ)], and a baseline b that does not depend on the reply can be subtracted (E[∇log p_θ] = 0), so
# with the advantage A = R − b:
#
# $$\nabla_\theta J = \mathbb{E}\Big[A \sum_{t \in \text{model}} \nabla_\theta \log \pi_\theta(a_t \mid s_t)\Big].$$
#
# Adding the tool's tokens to that sum would push the model towards or away from the calculator's digits: a gradient
# of nothing the model chose. The advantage is computed as without a tool,
# from the finished text's reward (the calculator acts through it, as an environment does), and every model token of
# a reply shares it. GRPO's b is the group's mean reward, which includes the reply's own (so it depends on the reply:
# the expected gradient shrinks by (G − 1)/G, notebook 11), and it divides A by the group's spread; its clipped loss
# has this gradient at π_θ = π_old, and the mask takes the calculator's positions
# out of the ratios, the clip and the token mean. SFT uses `Calculator.loss_mask`, GRPO `Calculator.written_by_tool`:
# the same rule. On the line drawn above, the trained tokens, checked against the calls' results read off the text
# (the copy of the result after `>>` is the model's and is trained: copying, not computing):

# %%
mask = calculator.loss_mask(ids, [True] * len(ids))
results = "".join(result + ">>" for result in re.findall(r"<<[^<>=]*=([^<>]*)>>", solution))
assert tokenizer.decode([t for t, kept in zip(ids, mask) if not kept]) == results  # masked: the results, the >>
print("trained:", "".join(tokenizer.decode([t]) if kept else "▒" * len(tokenizer.decode([t])) for t, kept in zip(ids, mask)))

# %% [markdown]
# ## 4. The base
#
# **The task.** `multistep` writes word problems from a seed: a product of two 2-digit numbers, then two more
# operations (giving some away, buying more, sharing equally, selling), the answer a whole number. Its 600 held-out
# problems come from one seed; training problems from another, never repeating a held-out question. **GSM8K** is the
# real thing: its test split. A reply is right if its final number equals the answer: the number after its first
# `####`, or, in a reply without one, its last number (`tinylm.eval.scoring.extract_answer`). Only that number is
# read: a reply can be right by coincidence, as the base's one three-shot pass below is (19*2 is not the problem).
#
# SmolLM2-135M-Instruct answers in ChatML, greedily, with the calculator on, which only acts if the model writes a
# call. Zero-shot the prompt shows no call format; three-shot puts three solved training problems (with their calls)
# before the question as earlier turns.

# %%
SHOTS = 3


def few_shot(task_class, source):
    """A `task_class` task whose chats open with SHOTS solved training problems of `source` as earlier turns."""
    turns = [turn for p in source.train_problems()[:SHOTS] for turn in
             ({"role": "user", "content": p.prompt}, {"role": "assistant", "content": p.solution})]

    class FewShot(task_class):
        def messages(self, problem):
            system, *rest = super().messages(problem)
            return [system, *turns, *rest]
    return FewShot(PROFILE)


gsm8k = GSM8K(PROFILE)
gsm8k_test = gsm8k.held_out(0, GSM8K_TEST).test


def measure_base() -> dict:
    arms = {"multistep, zero-shot": (task, test), "multistep, 3-shot": (few_shot(Multistep, task), test),
            "GSM8K, zero-shot": (gsm8k, gsm8k_test), "GSM8K, 3-shot": (few_shot(GSM8K, gsm8k), gsm8k_test)}
    results = {}
    for name, (arm_task, problems) in arms.items():
        started = time.perf_counter()
        results[name] = measure(base_model, tokenizer, arm_task, problems, batch_size=32, answer_loss=False)
        report = results[name]
        print(f"{name:>20}: {pass_rate_line(report)}; {report['figures']['calls']:.1f} calls per reply, "
              f"'####' in {100 * report['kinds']['final_line']['held']:.0f}%; {time.perf_counter() - started:.0f} s")
    return results


base = recorded("15_reasoning_with_a_tool", "base", measure_base, replay=REPLAY, profile=PROFILE)
print("a zero-shot reply:", repr(base["multistep, zero-shot"]["replies"][0]["reply"][:300]))
print("a 3-shot reply:", repr(base["multistep, 3-shot"]["replies"][0]["reply"][:300]))

# %% [markdown]
# SmolLM2-135M-Instruct's model card reports 1.4% on GSM8K (5-shot, lighteval, another protocol than this run's;
# [the card](https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)): at this size GSM8K is far out of reach, and
# the intervals above say how little a few dozen problems can tell apart near zero.
#
# ## 5. SFT: what the tool adds, told apart from what training adds
#
# Two LoRA fine-tunings (rank 16 on the attention projections, 40 steps of 8 conversations, one seed each) on the
# same training problems in the same order:
# - **tool**: solutions with their calls; the calculator's tokens masked from the loss;
# - **control**: the same solutions with the calls removed (`47*36 = 1692`): the model must compute in its head.
#
# Then the tool model with and without its calculator, and the control, on the same test problems. **Predict** each
# pass rate.
#
# **Rule, set before the run**: one arm beats another if it passes more problems and McNemar's exact test on the
# same problems gives p < 0.05. McNemar counts only the problems where the two differ: b passed by the second arm
# alone, c by the first alone. Were the arms equal, each would be a fair coin: p = min(1, 2·P[X ≤ min(b, c)]), X ~
# Binomial(b + c, ½). It measures the luck of the problems, not of the training seed (one per arm here).

# %%
@register
class MultistepNoTool(Multistep):
    """The control: the same problems and solutions, the calls removed, no calculator when sampling."""
    name = "multistep-no-tool"
    annotations = False
    calculator = False


class MultistepCalculatorOff(Multistep):
    calculator = False  # the tool model's replies, with nobody to answer its calls


LORA = LoRAOptions(rank=16)


def fine_tune() -> dict:
    reports = {}
    for arm, task_name in (("tool", "multistep"), ("control", "multistep-no-tool")):
        out = RUN / f"sft-{arm}"
        reports[arm] = sft(RunOptions(profile=PROFILE, out=out, overwrite=True, device=str(DEVICE)),
                           PostTrainingOptions(task=task_name, base=str(checkpoint), lora=LORA),
                           say=quiet, on_record=quiet)
        print(f"{arm:>8}: best.pt at step {reports[arm]['after']['step']}, {reports[arm]['wall_seconds']:.0f} s")
    tool_model, _, _ = load_model(RUN / "sft-tool", DEVICE)
    reports["calculator off"] = {"after": measure(tool_model, tokenizer, MultistepCalculatorOff(PROFILE), test,
                                                  batch_size=32, answer_loss=False)}
    return reports


sft_reports = recorded("15_reasoning_with_a_tool", "sft", fine_tune, replay=REPLAY, profile=PROFILE)
arms = {"base (zero-shot)": base["multistep, zero-shot"], "SFT, tool": sft_reports["tool"]["after"],
        "SFT, tool, calculator off": sft_reports["calculator off"]["after"],
        "SFT, control (no calls)": sft_reports["control"]["after"]}
for name, report in arms.items():
    print(f"{name:>26}: {pass_rate_line(report)}, {report['figures']['calls']:.1f} calls per reply")


for first, second in (("base (zero-shot)", "SFT, control (no calls)"), ("base (zero-shot)", "SFT, tool"),
                      ("SFT, control (no calls)", "SFT, tool"), ("SFT, tool, calculator off", "SFT, tool")):
    result = paired(arms[first]["passed_each"], arms[second]["passed_each"])
    winner = result.winner(first, second)  # the rule: the arm with more passes, if p < 0.05
    print(f"{second} vs {first}: {winner} (b = {result.gained}, c = {result.lost}, p = {result.p_value:.3g})")

# %%
for name in ("SFT, tool", "SFT, tool, calculator off", "SFT, control (no calls)"):
    print(f"{name}:\n  {arms[name]['replies'][0]['reply']!r}")
if (RUN / "sft-tool" / "best.pt").is_file():  # the loop check again, on calls the model opens (a replay trains none)
    tool_model, _, _ = load_model(RUN / "sft-tool", DEVICE)
    replies = check_loop(tool_model, [task.prompt_ids(tokenizer, p) for p in test[1:3]], 60)
    assert PROFILE == "smoke" or all("<<" in tokenizer.decode(r) for r in replies)
    print(f"my loop and decode(tool=...) agree on the tool model's replies to 2 problems, {sum(map(len, replies))} "
          "tokens")

# %% [markdown]
# **Reading it.** The verdict lines apply the rule to
# training alone (control against base), training with the tool, the tool's part (tool against control) and the
# calculator at inference. With the calculator off the tool model must write results it was never trained to write
# (they were masked): it opens call after call and never writes a result. The control, trained to write results,
# writes wrong ones (`37*19 = 577`; it is 703). Both pass 0 of 48; the tool model with its calculator passes 43.
#
# ## 6. RL with the tool in the rollouts
#
# On 2-digit problems the tool model leaves RL little room (43 of 48), so RL works on **3-digit** ones (the task
# `multistep_3_digit`, the same template), which it passes less often. From its best.pt, each GRPO rollout samples 4
# replies to each of 4 training problems, the calculator answering every call, rewards an exact final answer, and
# makes 2 updates of every weight with the group-relative advantage, the calculator's tokens out of the loss (section
# 3): 3 rollouts on `cpu`, at a rate of 1e-5, chosen over 5e-5 on GRPO's validation at seed 0 (the task and the rate:
# docs/notes/2026-11-29-rl-with-room.md). **The control** is expert iteration: the raw reward as the advantage
# (`baseline="none"`), which trains on the replies that passed, while GRPO also pushes failing ones down. One setting
# differs. 16 validation problems, scored at the start and after the last update, choose best.pt; they chose the
# rate too (seed 0's test figures were read as well: the note), so the test is the figure.
#
# **Two seeds per arm** (1 and 2), not the course's three, for the lesson's time: the rule (`told_apart`: every seed
# of one arm beats every seed of the other, at least three each) cannot decide on two; read the spread. **Predict**
# which arm's greedy test pass rate ends higher, and whether either beats the start.

# %%
ARMS = {"GRPO": "group", "expert iteration": "none"}
SEEDS = (0,) if PROFILE == "smoke" else (1, 2)  # smoke: one run per arm shows the code runs


def race() -> dict:
    reports = {}
    for arm, baseline in ARMS.items():
        for seed in SEEDS:
            gc.collect()  # the last run's model and optimizer, freed before the next one's memory check
            out = RUN / f"{arm.replace(' ', '-')}-{seed}"
            changes = {"baseline": baseline, **({} if seed == SEEDS[0] else {"pass_at_samples": 0})}
            report = grpo(RunOptions(profile=PROFILE, out=out, overwrite=True, seed=seed, device=str(DEVICE),
                                     set=changes),
                          PostTrainingOptions(task="multistep_3_digit", base=str(RUN / "sft-tool")), say=quiet,
                          on_record=quiet)
            print(f"{arm:>16}, seed {seed}: best.pt at step {report['after']['step']} of {report['steps']}, "
                  f"{report['wall_seconds']:.0f} s")
            reports[f"{arm}/{seed}"] = {**report, "records": read_metrics(out)}
    return reports


rl = recorded("15_reasoning_with_a_tool", "rl", race, replay=REPLAY, profile=PROFILE)
start = rl[f"GRPO/{SEEDS[0]}"]["before"]
print(f"{'the start (SFT, tool)':>24}: {pass_rate_line(start)}")
assert all(report["before"]["passed_each"] == start["passed_each"] for report in rl.values())  # one start
for key, report in rl.items():
    after, figures = report["after"], report["after"]["figures"]
    evals = [r["pass_rate"] for r in report["records"] if r["event"] in ("eval", "final")]  # validation, greedy
    train = [r for r in report["records"] if r["event"] == "train"]  # each rollout's last update
    print(f"{key:>24}: {pass_rate_line(after)} (best.pt: step {after['step']}; validation {100 * evals[0]:.1f}% -> "
          f"{100 * evals[-1]:.1f}%); {figures['calls']:.2f} calls per "
          f"reply, {100 * figures['refused_calls'] / max(figures['calls'], 1e-9):.1f}% of them refused; "
          f"'####' in {100 * after['kinds']['final_line']['held']:.0f}%")
    passing = ", ".join(f"{r['correct']:.2f}" for r in train)
    lengths = ", ".join(f"{r['length']:.0f}" for r in train)
    print(f"{'':>26}rollouts: share of sampled replies passing {passing}; their length {lengths} tokens")
    print(f"{'':>26}" + paired(start["passed_each"], after["passed_each"]).describe("the start", key))
rates = {arm: [rl[f"{arm}/{seed}"]["after"]["pass_rate"] for seed in SEEDS] for arm in ARMS}
print(compare("GRPO", rates["GRPO"], "expert iteration", rates["expert iteration"], lower_is_better=False,
              metric="greedy test pass rate"))
for seed in SEEDS:
    print(f"seed {seed}: " + paired(rl[f"expert iteration/{seed}"]["after"]["passed_each"],
                                    rl[f"GRPO/{seed}"]["after"]["passed_each"]).describe("expert iteration", "GRPO"))

# %% [markdown]
# **pass@k** (Chen et al.): the chance that at least one of k samples at temperature 1 passes; pass@1 is one
# sample's chance (not the greedy reply's). From n samples of which c pass, its unbiased estimate is
# 1 − C(n − c, k)/C(n, k); here n = k = 4, so pass@4 is the share of problems with a pass among their 4 samples (a
# proportion, hence its Wilson interval), on the first 16 test problems (`cpu`). RL that only sharpens the model's
# choice among replies it can already
# write raises pass@1 towards pass@k; but sharpening also raises pass@k where the start passes rarely, and telling
# that from new ability needs k in the hundreds (notebook 11). Sampled at the first seed of each arm only.

# %%
at = rl[f"GRPO/{SEEDS[0]}"]["pass_at"]
k = str(at["samples"])
for name, by_k in (("the start", at["before"]), ("GRPO", at["after"]),
                   ("expert iteration", rl[f"expert iteration/{SEEDS[0]}"]["pass_at"]["after"])):
    low, high = wilson_interval(round(by_k[k] * at["problems"]), at["problems"])  # pass@4 is a share of problems
    print(f"{name:>16}: pass@1 {100 * by_k['1']:.1f}%, pass@{k} {100 * by_k[k]:.1f}% [{100 * low:.1f}, {100 * high:.1f}]")


# %% [markdown]
# **Reading the race.** The start passes 6 of 32. Every run's validation rose (37.5% to 43.8% and 56.2% at GRPO's
# seeds, 50.0% and 62.5% at expert iteration's: one to four problems more of 16), so each best.pt is its last step.
# Against the start on the test, three runs gain 2 to 6 problems and lose none, one gains 1 and loses 1; by section
# 5's paired rule only expert iteration's seed 2 beats it (p = 0.0312, one test of four, uncorrected). Expert
# iteration is ahead at both seeds (8 and 12 of 32, against 6 and 9), but neither paired test gives p < 0.05; the
# seeds overlap (GRPO's 9 above expert iteration's 8), so a third seed could not separate the arms. The rollout rows
# are noisy (16 samples on 4 new problems each), and a rollout where nothing passes (0.00) gives every reply a zero
# advantage: no gradient. Sampled, expert iteration's pass@4 rose from 25.0% to 37.5%, within overlapping intervals;
# GRPO's did not move.
#
# ## 7. GSM8K: honest scale
#
# The tool model trained on 2-digit word problems, with its calculator, on GSM8K's first test problems, paired with
# the base's zero-shot replies on the same problems (the same prompt, other weights), and with its three-shot ones.

# %%
def gsm8k_after_sft() -> dict:
    tool_model, _, _ = load_model(RUN / "sft-tool", DEVICE)
    return measure(tool_model, tokenizer, gsm8k, gsm8k_test, batch_size=32, answer_loss=False)


gsm8k_tool = recorded("15_reasoning_with_a_tool", "gsm8k", gsm8k_after_sft, replay=REPLAY, profile=PROFILE)
print(f"{'SFT, tool':>20}: {pass_rate_line(gsm8k_tool)}, {gsm8k_tool['figures']['calls']:.1f} calls per reply")
for shots in ("zero-shot", "3-shot"):
    print(paired(base[f"GSM8K, {shots}"]["passed_each"], gsm8k_tool["passed_each"]).describe(f"base, {shots}",
                                                                                             "SFT, tool"))

# %% [markdown]
# A calculator removes the arithmetic, not the reading: GSM8K asks the model to decide which numbers to combine, in
# problems of many shapes, and the fine-tuning showed it one template (even there it can misread a step: section 5's
# tool reply subtracts what was bought). The model calls the calculator on GSM8K and passes none of 24, which bounds
# its rate below the interval's top; the synthetic task shows the mechanism.
#
# ## What you learned
#
# - A tool call is text: the model writes `<<expression=`, a program writes the result and `>>`, and decoding goes
#   on. The evaluator reads a grammar and nothing else, and refuses what it cannot bound.
# - The tool's tokens are read, never trained: in SFT they would teach the arithmetic the tool exists to do; in the
#   policy gradient their factors in the reply's probability are 1, so their terms do not belong in the sum.
# - The tool's contribution is measured with two controls: the same training without the calls, and the same model
#   without the calculator; paired tests on the same problems tell the arms apart.
# - RL was given room (3-digit problems; exercise 4 runs it on 2-digit ones): every run's validation rose, one of
#   four beat the start on the test (uncorrected); GRPO's and expert iteration's seeds overlap, so by the rule set
#   before the race more seeds could not separate them.
#
# ## Exercises
#
# **1. The calculator's numbers.** Write `my_format_number(value)`: an integer as itself, any other fraction rounded
# to four decimal places (a tie to the even last digit, as Python's `round` does) with trailing zeros (and a
# trailing point) dropped, a minus sign only where the written number is not zero. The check compares with the
# package's `format_number`.

# %%
# NBVAL_CHECK_OUTPUT
def my_format_number(value: Fraction) -> str:
    raise NotImplementedError


def test_my_format_number():
    rng = random.Random(1)
    values = [Fraction(rng.randrange(-10**6, 10**6), rng.choice([1, 2, 3, 4, 7, 8, 1000, 30000, 10**6]))
              for _ in range(3000)] + [Fraction(-1, 300000), Fraction(5, 2), Fraction(-7, 1), Fraction(1, 20000),
                                       Fraction(3, 20000), Fraction(-1, 20000), Fraction(2, 3)]
    for value in values:
        assert my_format_number(value) == format_number(value), (value, format_number(value))


check(test_my_format_number)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_format_number(value):
#     if value.denominator == 1:
#         return str(value.numerator)
#     scaled = round(abs(value) * 10**4)
#     text = f"{scaled // 10**4}.{scaled % 10**4:04d}".rstrip("0").rstrip(".")
#     return "-" + text if value < 0 and text != "0" else text
# ```
#
# `round` on a Fraction rounds half to even, as the package does; -1/300000 rounds to 0 and is written "0".
# </details>
#
# **2. Which tokens the tool wrote.** Write `my_tool_tokens(ids)`: for a solution's tokens, a list of booleans, True
# where the calculator wrote the token: each character after a call's `=` up to and including its `>>`. Work on the
# text: find each call's result span, then mark the tokens that lie inside one. The check compares with
# `Calculator.written_by_tool` on 100 multistep and 100 GSM8K training solutions (decimals, dollars) in SmolLM2's
# tokens.

# %%
# NBVAL_CHECK_OUTPUT
def my_tool_tokens(ids: list[int]) -> list[bool]:
    raise NotImplementedError


def test_my_tool_tokens():
    for problem in task.train_problems()[:100] + gsm8k.train_problems()[:100]:
        ids = tokenizer.encode(problem.solution)
        assert my_tool_tokens(ids) == calculator.written_by_tool(ids), problem.solution


check(test_my_tool_tokens)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_tool_tokens(ids):
#     pieces = [tokenizer.decode([t]) for t in ids]
#     text = "".join(pieces)
#     spans = [(m.start(1), m.end(1)) for m in re.finditer(r"<<[^<>=]*=([^<>]*>>)", text)]
#     marks, at = [], 0
#     for piece in pieces:
#         marks.append(any(start <= at and at + len(piece) <= end for start, end in spans))
#         at += len(piece)
#     return marks
# ```
#
# This works because SmolLM2 writes digits, `=` and `>>` as tokens of their own, so no token straddles a result's
# edge (a tokenizer that merged `=-` would defeat it); the package reads the stream token by token instead, as
# decoding must.
# </details>
#
# **3. Experiment: one step more.** On problems with one step more than the models were trained on
# (`Multistep(PROFILE, steps=task.steps + 1)`), does the tool model still beat the control? **Predict**, then measure
# both (`measure` on that task's `TEST` test problems, as section 5 did) and set `my_verdict` to "tool", "control" or
# "not told apart" by section 5's rule. The check measures both models again and applies the rule. It needs section
# 5's models: run the notebook live (`REPLAY = False`) first.

# %%
# NBVAL_CHECK_OUTPUT
my_verdict = None  # "tool", "control" or "not told apart", by section 5's rule


def test_more_steps():
    if my_verdict is None:
        raise NotImplementedError("measure both models on problems with one step more, then set my_verdict")
    passed = {}
    longer = task.steps + 1
    arms = (("tool", Multistep(PROFILE, steps=longer)), ("control", MultistepNoTool(PROFILE, steps=longer)))
    for arm, arm_task in arms:
        model, _, _ = load_model(RUN / f"sft-{arm}", DEVICE)
        problems = arm_task.held_out(None, TEST).test
        assert problems[0].prompt == Multistep(PROFILE, steps=longer).held_out(None, TEST).test[0].prompt  # the same
        passed[arm] = measure(model, tokenizer, arm_task, problems, batch_size=32, answer_loss=False)["passed_each"]
    result = paired(passed["control"], passed["tool"])
    expected = result.winner("control", "tool")
    assert my_verdict == expected, f"by the rule your measurements say {expected!r}"
    print(result.describe("control", "tool"))


check(test_more_steps)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# passed = {}
# longer = task.steps + 1
# arms = (("tool", Multistep(PROFILE, steps=longer)), ("control", MultistepNoTool(PROFILE, steps=longer)))
# for arm, arm_task in arms:
#     model, _, _ = load_model(RUN / f"sft-{arm}", DEVICE)
#     passed[arm] = measure(model, tokenizer, arm_task, arm_task.held_out(None, TEST).test, batch_size=32,
#                           answer_loss=False)["passed_each"]
# result = paired(passed["control"], passed["tool"])
# my_verdict = result.winner("control", "tool")
# ```
# </details>
#
# **4. Experiment: RL without room.** Section 6 moved RL to 3-digit problems. On the 2-digit ones the tool model
# was trained on, does GRPO help? Run it with the race's GRPO settings at seed 1, without pass@k, on the task
# `multistep`, into `RUN / "GRPO-2-digit"` (`set={"baseline": "group", "pass_at_samples": 0}`, the same base),
# **predict**, then set `my_verdict` to "better", "worse" or "not told apart": its best.pt against its start on the
# test problems, by section 5's paired rule. The check reads your run and applies the rule. It needs section 5's
# tool model: run the notebook live (`REPLAY = False`) first.

# %%
# NBVAL_CHECK_OUTPUT
my_verdict = None  # "better", "worse" or "not told apart"


def test_rl_without_room():
    if my_verdict is None:
        raise NotImplementedError("run GRPO on the 2-digit task, then set my_verdict")
    out = RUN / "GRPO-2-digit"
    assert (out / "grpo_eval.json").is_file(), f"no finished run in {out}"
    settings = json.loads((out / "settings.json").read_text())
    ran = (settings["options"]["task"], settings["train"]["seed"], settings["recipe"]["baseline"])
    assert ran == ("multistep", 1, "group"), f"{out.name} ran {ran}"
    report = json.loads((out / "grpo_eval.json").read_text())
    result = paired(report["before"]["passed_each"], report["after"]["passed_each"])
    expected = result.winner("worse", "better")
    assert my_verdict == expected, f"by the rule your run says {expected!r}"
    print(result.describe("the start", "GRPO"))


check(test_rl_without_room)

# %%
seconds = rl[f"GRPO/{SEEDS[-1]}"]["wall_seconds"]
print(f"exercise 4 trains for about {seconds:,.0f} s here: one run, as long as the race's GRPO at its last seed")

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# grpo(RunOptions(profile=PROFILE, out=RUN / "GRPO-2-digit", overwrite=True, seed=1, device=str(DEVICE),
#                 set={"baseline": "group", "pass_at_samples": 0}),
#      PostTrainingOptions(task="multistep", base=str(RUN / "sft-tool")), say=quiet, on_record=quiet)
# report = json.loads((RUN / "GRPO-2-digit" / "grpo_eval.json").read_text())
# result = paired(report["before"]["passed_each"], report["after"]["passed_each"])
# my_verdict = result.winner("worse", "better")
# ```
#
# McNemar's exact test needs at least 6 problems to move one way with none the other for p < 0.05 (its p is then
# 2 × 2⁻⁶ = 0.031; with 5 it is 0.0625). On `cpu` the start fails 1 of these 32 test problems
# (docs/notes/2026-11-29-rl-with-room.md), so "better" cannot happen; "worse" needs 6 or more lost.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
