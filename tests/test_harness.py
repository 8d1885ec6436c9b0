"""lm-evaluation-harness against tinylm's own scorer, item by item on the same prompts, and the harness model class's
other two requests against plain computations."""

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import tiny_bpe_gpt
from tests.preloaded import run_module
from tinylm.eval.benchmarks import named_task
from tinylm.eval.scoring import evaluate_task
from tinylm.tokenizers.gpt2 import BPETokenizer

pytest.importorskip("lm_eval", reason="lm-evaluation-harness is the harness extra: pip install 'tinylm[harness]'")
from lm_eval.api.instance import Instance  # noqa: E402

from tinylm.eval.harness import TinylmLM, run_harness  # noqa: E402

ITEMS = 24


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer("gpt2")


@pytest.fixture(scope="module")
def model():
    return tiny_bpe_gpt(seed=3, block_size=256)


@pytest.fixture(scope="module")
def harness_output(model, bpe):
    return run_harness(model, bpe, ["arc_easy", "piqa", "lambada_openai"], limit=ITEMS)


# The harness's task, tinylm's task and delimiter giving the same zero-shot prompt: ARC's "Question: ...\nAnswer:",
# PIQA's the same, LAMBADA's passage without its last word.
SAME_PROMPTS = [("arc_easy", "arc_easy", "\nAnswer: "), ("piqa", "piqa", " "), ("lambada_openai", "lambada", " ")]


@pytest.mark.parametrize("harness_name, tinylm_name, delimiter", SAME_PROMPTS)
def test_the_harness_and_tinylm_agree_item_by_item(harness_output, model, bpe, harness_name, tinylm_name, delimiter):
    """Every choice's log-likelihood within 1e-4 nats or 1e-6 of itself (float32's rounding: the harness's
    request path scores each row by the full log-softmax, tinylm's batches rows through the head at answer
    positions), and each item's verdict under acc, acc_norm (the harness's is per character) and LAMBADA's greedy
    match equal; the aggregates then agree too."""
    task = dataclasses.replace(named_task(tinylm_name), shots=0, delimiter=delimiter)
    ours = evaluate_task(model, bpe, task, limit=ITEMS)
    theirs = sorted(harness_output["samples"][harness_name], key=lambda sample: sample["doc_id"])
    assert len(ours.details) == len(theirs) == ITEMS
    for mine, sample in zip(ours.details, theirs):
        loglikelihoods = [response[0] for response in sample["filtered_resps"]]
        if tinylm_name == "lambada":
            assert -mine["loss"] == pytest.approx(loglikelihoods[0], rel=1e-6, abs=1e-4)
            assert mine["acc"] == sample["filtered_resps"][0][1] == bool(sample["acc"])
        else:
            assert [-loss for loss in mine["losses"]] == pytest.approx(loglikelihoods, rel=1e-6, abs=1e-4)
            assert (mine["acc"], mine["acc_norm_char"]) == (sample["acc"] == 1, sample["acc_norm"] == 1)
    results = harness_output["results"][harness_name]
    assert results["acc,none"] == pytest.approx(ours.metrics["acc"])
    if tinylm_name == "lambada":
        assert results["perplexity,none"] == pytest.approx(ours.metrics["perplexity"], rel=1e-4)
    else:
        assert results["acc_norm,none"] == pytest.approx(ours.metrics["acc_norm_char"])


def test_with_a_short_context_both_cut_long_passages_from_the_left(bpe):
    """LAMBADA through a 32-token context: most passages are longer, and the harness keeps each row's last tokens;
    tinylm's scorer does the same with truncate=True (by default it leaves such items out), item for item."""
    model = tiny_bpe_gpt(seed=4, block_size=32)
    theirs = sorted(run_harness(model, bpe, ["lambada_openai"], limit=12)["samples"]["lambada_openai"],
                    key=lambda sample: sample["doc_id"])
    task = dataclasses.replace(named_task("lambada"), shots=0)
    ours = evaluate_task(model, bpe, task, limit=12, truncate=True)
    assert sum(d["truncated"] for d in ours.details) >= 6 and evaluate_task(model, bpe, task, limit=12).left_out >= 6
    for mine, sample in zip(ours.details, theirs, strict=True):
        assert -mine["loss"] == pytest.approx(sample["filtered_resps"][0][0], rel=1e-6, abs=1e-4)


def request(*args):
    return Instance(request_type="loglikelihood_rolling", doc={}, arguments=args, idx=0)


def test_rolling_loglikelihood_predicts_each_token_once_with_the_most_context(bpe):
    """A 150-token text through a 64-token context: the harness's windows against a plain loop in which token i
    is predicted from up to 64 tokens before it, chunk by chunk, the last chunk with a full window."""
    model = tiny_bpe_gpt(seed=1, block_size=64)
    text = " ".join(f"word{i % 37} and" for i in range(60))
    ids = bpe.encode(text)
    assert len(ids) > 2 * 64
    full = [bpe.eot_token] + ids
    expected = 0.0
    for start in range(0, len(ids), 64):
        end = min(start + 64, len(ids))  # this chunk predicts full[start + 1 .. end]
        low = max(0, end - 64)
        with torch.no_grad():
            logits, _ = model(torch.tensor([full[low:end]]))
        logp = F.log_softmax(logits[0].double(), -1)
        expected += sum(logp[j - low, full[j + 1]].item() for j in range(start, end))
    lm = TinylmLM(model, bpe)
    (total,) = lm.loglikelihood_rolling([request(text)])
    assert total == pytest.approx(expected, abs=1e-3)
    # the same text as one continuation longer than the context, after an empty context: the same windows
    ((whole, _),) = lm.loglikelihood([Instance("loglikelihood", {}, ("", text), 0)])
    assert whole == pytest.approx(expected, abs=1e-3)


def test_generation_stops_before_the_stop_string_as_greedy_decoding_does(bpe):
    model = tiny_bpe_gpt(seed=2, block_size=64)
    lm = TinylmLM(model, bpe)
    context = "Once upon a time"
    ids = [bpe.eot_token] + bpe.encode(context)
    for _ in range(12):  # the plain greedy loop
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
    greedy = bpe.decode(ids[1 + len(bpe.encode(context)):])
    stop = greedy[len(greedy) // 2: len(greedy) // 2 + 2]
    (reply,) = lm.generate_until([Instance("generate_until", {}, (context, {"until": [stop], "max_gen_toks": 12}), 0)])
    assert reply == greedy.split(stop)[0]


def test_the_command_writes_the_harness_results_and_refuses_an_unknown_task(tmp_path, bpe):
    from tinylm.train.checkpoint import model_checkpoint, save_checkpoint

    run = tmp_path / "run"
    save_checkpoint(run / "best.pt", model_checkpoint(tiny_bpe_gpt(block_size=64), bpe))
    done = run_module("tinylm.eval", ["harness", "--ckpt", str(run), "--tasks", "arc_easy", "piqa", "--limit", "6"])
    assert done.returncode == 0, done.stderr
    written = json.loads((run / "eval" / "harness-arc_easy-piqa-limit6.json").read_text())
    assert written["results"]["arc_easy"]["sample_len"] == written["results"]["piqa"]["sample_len"] == 6
    assert len(written["items"]["piqa"]) == 6
    assert all(len(item["loglikelihoods"]) == 2 and all(math.isfinite(x) for x in item["loglikelihoods"])
               for item in written["items"]["piqa"])
    assert "acc_norm" in done.stdout and "written to" in done.stdout
    bad = run_module("tinylm.eval", ["harness", "--ckpt", str(run), "--tasks", "hellaswag"])
    assert bad.returncode == 1 and bad.stderr.startswith("error: no local task file for hellaswag")
    assert "Traceback" not in bad.stderr
    unnamed = run_module("tinylm.eval", ["harness", "--ckpt", str(run), "--hub"])
    assert unnamed.returncode == 1 and "--hub runs the harness's own tasks: name them" in unnamed.stderr
