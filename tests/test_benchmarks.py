"""The benchmarks: each scoring rule on cases whose answer is known, against a plain reference, the shots and the
context, GSM8K's answers, CORE's centring against DCLM's table, the paired test, and the command line."""

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import logits_favouring, tiny_bpe_gpt
from tests.preloaded import run_module
from tinylm.errors import InputError
from tinylm.eval.benchmarks import Benchmark, Cloze, Generative, MultipleChoice, Schema, core_specs, named_benchmark
from tinylm.eval.core import CoreResult, compare_results
from tinylm.eval.scoring import (
    SEED,
    BenchmarkResult,
    encode_pair,
    evaluate_benchmark,
    extract_answer,
    render,
    score_rows,
    shots_for,
)
from tinylm.tokenizers.gpt2 import BPETokenizer


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer("gpt2")


def test_a_continuation_with_nothing_before_it_is_refused_not_scored_as_free(bpe):
    """Its first token has no position to be predicted from: scoring it would give a choice 0 tokens and loss 0, a
    pick made by the choices' order (notebook 6b's blind control once did that)."""
    model = tiny_bpe_gpt()
    with pytest.raises(InputError, match="nothing before it"):
        score_rows(model, bpe, [encode_pair(bpe, "x", " y"), ([], bpe.encode(" a choice"))], "cpu")


def test_rows_scored_in_one_batch_equal_each_row_scored_alone(bpe):
    """The batched, padded scorer against the plain computation: each row through the whole model alone, its
    continuation's log-probabilities summed from log_softmax, and the greedy check from argmax."""
    model = tiny_bpe_gpt()
    rows = [encode_pair(bpe, "The cat sat on the", " mat"), encode_pair(bpe, "Question: why?\nAnswer:", " no idea"),
            encode_pair(bpe, "x", " a much longer continuation of several tokens")]
    batched = score_rows(model, bpe, rows, "cpu")
    for (context, continuation), (loss, count, greedy) in zip(rows, batched):
        ids = torch.tensor([context + continuation])
        with torch.no_grad():
            logits, _ = model(ids[:, :-1])
        logp = F.log_softmax(logits[0].double(), -1)
        positions = range(len(context) - 1, len(context) + len(continuation) - 1)
        expected = -sum(logp[t, ids[0, t + 1]].item() for t in positions)
        assert loss == pytest.approx(expected, rel=1e-5) and count == len(continuation)
        assert greedy == all(logp[t].argmax().item() == ids[0, t + 1].item() for t in positions)


def test_the_planted_answer_wins_under_every_rule(bpe, fixed_logits_model):
    model = fixed_logits_model(logits_favouring(bpe, {" mat": 12.0}), block_size=64)
    choices = ("car.", "mat", "sky of blue", "dog")
    for gold in range(4):
        task = Benchmark("planted", [MultipleChoice("The cat sat on the", choices, gold)])
        result = evaluate_benchmark(model, bpe, task)
        assert result.metrics == {name: float(gold == 1) for name in ("acc", "acc_norm", "acc_norm_char")}


def test_each_normalisation_is_the_hand_computation(bpe, fixed_logits_model):
    """' the the the' (3 likely tokens, 11 characters) against ' everything' (1 token, 10 characters) and ' dog'
    (1 less likely token): the sum picks ' dog', per token ' the the the', per character ' everything' here; each
    pick is checked against the losses computed by hand."""
    model = fixed_logits_model(logits_favouring(bpe, {" the": 10.0, " everything": 9.5, " dog": 9.0}), block_size=64)
    log_z = torch.logsumexp(model.logits.double(), 0).item()
    choices = ("the the the", "everything", "dog")
    loss = {"the the the": 3 * (log_z - 10.0), "everything": log_z - 9.5, "dog": log_z - 9.0}
    tokens = {"the the the": 3, "everything": 1, "dog": 1}
    picks = {"acc": min(choices, key=loss.get), "acc_norm": min(choices, key=lambda c: loss[c] / tokens[c]),
             "acc_norm_char": min(choices, key=lambda c: loss[c] / len(c))}
    assert picks == {"acc": "everything", "acc_norm": "the the the", "acc_norm_char": "everything"}
    for gold, choice in enumerate(choices):
        result = evaluate_benchmark(model, bpe, Benchmark("norms", [MultipleChoice("I saw", choices, gold)]))
        assert result.metrics == {name: float(pick == choice) for name, pick in picks.items()}, choice
        assert result.details[0]["losses"] == pytest.approx([loss[c] for c in choices], abs=3e-4)


def test_schema_scores_the_shared_continuation_after_each_context(bpe, fixed_logits_model):
    """Winograd's partial scoring: the same continuation after each context, so a model whose next token does not
    depend on the context cannot tell them apart (a tie goes to the first), and a real model's pick is the context
    under which the continuation's loss, by the plain computation, is lowest."""
    flat = fixed_logits_model(logits_favouring(bpe, {" the": 5.0}), block_size=64)
    item = Schema(("The trophy does not fit in the suitcase because the trophy",
                   "The trophy does not fit in the suitcase because the suitcase"), "is too large.", 0)
    assert evaluate_benchmark(flat, bpe, Benchmark("wsc", [item])).correct == [True]
    wrong = Benchmark("wsc", [Schema(item.contexts, item.continuation, 1)])
    assert evaluate_benchmark(flat, bpe, wrong).correct == [False]
    model = tiny_bpe_gpt()
    rows = [encode_pair(bpe, context + " ", item.continuation) for context in item.contexts]
    losses = [loss for loss, _, _ in score_rows(model, bpe, [([bpe.eot_token] + c, x) for c, x in rows], "cpu")]
    result = evaluate_benchmark(model, bpe, Benchmark("wsc", [item]))
    assert result.details[0]["losses"] == pytest.approx(losses, rel=1e-5)
    assert result.correct == [losses[0] <= losses[1]]  # the continuation has the same tokens after both


def test_a_cloze_is_right_only_when_every_token_is_the_greedy_one(bpe, fixed_logits_model):
    model = fixed_logits_model(logits_favouring(bpe, {" the": 9.0}), block_size=64)
    cloze = Benchmark("cloze", [Cloze("And then", "the the"), Cloze("And then", "the dog")])
    right = evaluate_benchmark(model, bpe, cloze)
    assert right.correct == [True, False] and right.metrics["acc"] == 0.5
    log_z = torch.logsumexp(model.logits.double(), 0).item()
    mean_loss = (2 * (log_z - 9.0) + (log_z - 9.0) + log_z) / 2  # per item summed, then averaged over items
    assert right.metrics["perplexity"] == pytest.approx(math.exp(mean_loss), rel=1e-4)


def test_trailing_spaces_move_to_the_continuation_as_in_the_harness(bpe):
    context, continuation = encode_pair(bpe, "Answer: ", "Paris")
    assert context == bpe.encode("Answer:") and continuation == bpe.encode(" Paris")


def test_shots_are_drawn_as_dclm_draws_them_and_dropped_from_the_left(bpe):
    items = [MultipleChoice(f"Question {i}: what is {i} plus one?", (str(i + 1), str(i + 2)), 0) for i in range(30)]
    task = Benchmark("sums", items, shots=5, delimiter="\nAnswer: ")
    shots = shots_for(task, 7)
    expected = random.Random(SEED + 7).sample([i for i in range(30) if i != 7], 5)
    assert shots == [items[i] for i in expected] and items[7] not in shots
    full = render(task, 7, bpe, block_size=1024)
    assert full.shots == 5
    one_shot = len(bpe.encode(full.texts[0][0].split("\n\n", 4)[-1])) + 3  # the last shot, the item, its answer
    cut = render(task, 7, bpe, block_size=one_shot)
    assert cut.shots == 1 and cut.texts[0][0].startswith(items[expected[-1]].query)  # the leftmost shots went first
    assert render(task, 7, bpe, block_size=4) is None
    result = evaluate_benchmark(tiny_bpe_gpt(block_size=one_shot), bpe, task, limit=10)
    assert result.fewer_shots == len(result.correct) > 0 and result.left_out + len(result.correct) == 10


@pytest.mark.parametrize("text, expected", [
    ("She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7", "7"), ("#### 1,000", "1000"), ("#### -3", "-3"),
    ("so the answer is $18.", "18"), ("it costs 5.00 dollars", "5"), ("about 2.5 hours", "2.5"),
    ("#### 12.\n", "12"), ("no number here", None), ("first 4 then 9 at last", "9")])
def test_gsm8k_answers_are_extracted_and_normalised(text, expected):
    assert extract_answer(text) == expected


def test_a_generated_answer_is_scored_by_exact_match(bpe, fixed_logits_model):
    model = fixed_logits_model(logits_favouring(bpe, {" 7": 20.0}), block_size=128)
    problems = [Generative("What is 3 + 4?", "3 + 4 = 7\n#### 7"), Generative("What is 2 + 2?", "#### 4")]
    result = evaluate_benchmark(model, bpe, Benchmark("gsm", problems, shots=0), max_new_tokens=4)
    assert result.correct == [True, False] and result.details[0]["reply"] == " 7 7 7 7"


def test_core_centring_uses_dclms_baselines():
    specs = {spec.name: spec for spec in core_specs()}
    assert len(specs) == 22
    assert (specs["copa"].baseline, specs["arc_easy"].baseline, specs["boolq"].baseline) == (0.5, 0.25, 0.62)
    arc, winograd = specs["arc_easy"], specs["winograd"]
    assert (arc.shots, arc.delimiter, winograd.kind) == (10, "\nAnswer: ", "schema")
    results = [BenchmarkResult("copa", "multiple_choice", 0, 0.5, [0, 1, 2, 3], [True, True, True, False], {}, 0, 0),
               BenchmarkResult("boolq", "multiple_choice", 10, 0.62, [0, 1], [True, False], {}, 0, 0),
               BenchmarkResult("lambada_openai", "language_modeling", 0, 0.0, [], [], {}, 5, 0)]
    core = CoreResult(results, ["squad", "coqa"])
    assert core.score == pytest.approx(((0.75 - 0.5) / 0.5 + (0.5 - 0.62) / 0.38) / 2)
    assert core.to_dict()["unscored"] == ["lambada_openai"]


def test_a_core_task_counts_only_where_a_third_of_its_items_fit():
    """`eval core --limit 20` on a 128-token model scored BoolQ on 1 item (1.000, centred +1.000) and averaged it as a
    whole task: a task of which fewer than a third of the items asked fit the context no longer counts."""
    copa = BenchmarkResult("copa", "multiple_choice", 0, 0.5, [0, 1, 2, 3], [True, True, True, False], {}, 0, 0)
    one_of_twenty = BenchmarkResult("boolq", "multiple_choice", 10, 0.62, [7], [True], {}, 19, 0)
    a_third = BenchmarkResult("piqa", "multiple_choice", 10, 0.5, [0, 1], [True, False], {}, 4, 0)
    core = CoreResult([copa, one_of_twenty, a_third], [])
    assert [result.task for result in core.scored] == ["copa", "piqa"]
    assert core.score == pytest.approx(((0.75 - 0.5) / 0.5 + 0.0) / 2)
    assert core.to_dict()["unscored"] == ["boolq"] and core.left_out_share == pytest.approx(23 / 30)


def test_the_paired_test_counts_the_items_that_changed():
    first = BenchmarkResult("t", "multiple_choice", 0, 0.25, [0, 1, 2, 3, 4], [True, False, False, True, False], {},
                            0, 0)
    second = BenchmarkResult("t", "multiple_choice", 0, 0.25, [0, 1, 2, 4, 5], [True, True, True, False, True], {},
                             0, 0)
    comparison = compare_results(first, second)  # items 0, 1, 2 and 4 were scored by both
    assert (comparison.gained, comparison.lost) == ([1, 2], [])
    assert comparison.test.p_value == pytest.approx(0.5)  # 2 of 2 changes one way: 2 · (1/2)²


def test_every_mirrored_task_reads(bpe):
    for name in ("arc_easy", "winograd", "lambada_openai", "bigbench_operators", "piqa", "lambada", "mmlu", "gsm8k"):
        task = named_benchmark(name)
        assert task.items and task.kind in ("multiple_choice", "schema", "language_modeling", "generative"), name
    mmlu = named_benchmark("mmlu")
    assert len(mmlu.items) == 14042 and mmlu.items[0].choices == ("A", "B", "C", "D")
    assert mmlu.preamble(0).startswith("The following are multiple choice questions (with answers) about ")
    assert len(named_benchmark("piqa").items) == 1838 and len(named_benchmark("lambada").items) == 5153


def test_the_command_line_scores_writes_json_and_refuses_bad_names(tmp_path, make_model):
    from tinylm.train.checkpoint import model_checkpoint, save_checkpoint

    run = tmp_path / "run"
    model = tiny_bpe_gpt(block_size=64)
    save_checkpoint(run / "best.pt", model_checkpoint(model, BPETokenizer("gpt2")))
    done = run_module("tinylm.eval", ["benchmark", "winograd", "--ckpt", str(run), "--limit", "6", "--json"])
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    written = json.loads((run / "eval" / "winograd-limit6.json").read_text())
    assert printed["correct"] == written["correct"] and len(written["correct"]) == 6
    bad = run_module("tinylm.eval", ["benchmark", "no_such_benchmark", "--ckpt", str(run)])
    assert bad.returncode != 0 and "no benchmark named 'no_such_benchmark'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_benchmark_none_of_whose_items_fits_is_an_error_unless_truncated(tmp_path):
    """It printed one line and exited 0; --truncate (evaluate_benchmark's) scores the items cut from the left."""
    from tinylm.train.checkpoint import model_checkpoint, save_checkpoint

    run = tmp_path / "run"
    save_checkpoint(run / "best.pt", model_checkpoint(tiny_bpe_gpt(block_size=8), BPETokenizer("gpt2")))
    refused = run_module("tinylm.eval", ["benchmark", "mmlu", "--ckpt", str(run), "--limit", "3"])
    error = refused.stderr.strip().splitlines()[-1]  # after the progress bar's lines
    assert refused.returncode == 1 and error.startswith("error: mmlu: "), refused.stderr
    assert "Traceback" not in refused.stderr and "--truncate" in error
    assert "no item fits the model's context of 8 tokens" in error
    assert not (run / "eval").exists()
    cut = run_module("tinylm.eval", ["benchmark", "mmlu", "--ckpt", str(run), "--limit", "3", "--truncate", "--json"])
    assert cut.returncode == 0, cut.stderr
    scored = json.loads(cut.stdout.strip().splitlines()[-1])
    assert len(scored["correct"]) == 3 and scored["left_out"] == 0
