"""lm-evaluation-harness against tinylm's own scorer, item by item on the same prompts; the harness's
`local-completions` model through `python -m tinylm.serve`'s API against `eval harness`, item by item; and the harness
model class's other two requests against plain computations."""

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import tiny_bpe_gpt
from tests.preloaded import run_module
from tinylm.eval.benchmarks import named_benchmark
from tinylm.eval.scoring import evaluate_benchmark
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
    task = dataclasses.replace(named_benchmark(tinylm_name), shots=0, delimiter=delimiter)
    ours = evaluate_benchmark(model, bpe, task, limit=ITEMS)
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
    task = dataclasses.replace(named_benchmark("lambada"), shots=0)
    ours = evaluate_benchmark(model, bpe, task, limit=12, truncate=True)
    assert sum(d["truncated"] for d in ours.details) >= 6
    assert evaluate_benchmark(model, bpe, task, limit=12).left_out >= 6
    for mine, sample in zip(ours.details, theirs, strict=True):
        assert -mine["loss"] == pytest.approx(sample["filtered_resps"][0][0], rel=1e-6, abs=1e-4)


def test_local_completions_through_the_server_agree_with_eval_harness_item_by_item(bpe):
    """The real lm-eval's `local-completions` against the real server, as the course guide runs it (base_url and
    model only: the tokenizer is the server's, found at /tokenize), and `eval harness` in process, on the same items
    through the smoke profile's 32-token context, so that long LAMBADA rows are cut and some PIQA answers are
    longer than the context: every log-likelihood within float32's rounding, every greedy verdict and every
    aggregate equal."""
    pytest.importorskip("tenacity", reason="the harness's API models need lm-eval[api]: pip install 'tinylm[harness]'")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from tests.chat_fixtures import serving
    from tinylm.eval.harness import write_local_tasks
    from tinylm.serve.server import ChatServer, ServeOptions

    model, tasks, items = tiny_bpe_gpt(seed=5, block_size=32), ["piqa", "lambada_openai"], 12
    ours = run_harness(model, bpe, tasks, limit=items)
    with serving(ChatServer(ServeOptions(port=0, quiet=True), None, model=model, tokenizer=bpe, name="tiny")) as server:
        theirs = simple_evaluate("local-completions", {"base_url": f"http://127.0.0.1:{server.port}/v1/completions",
                                                       "model": "tiny"},
                                 tasks=tasks, limit=items, log_samples=True, verbosity="WARNING",
                                 task_manager=TaskManager(include_path=str(write_local_tasks(tasks)),
                                                          include_defaults=False))
    longest = max(len(bpe.encode(sample["doc"]["text"])) for sample in ours["samples"]["lambada_openai"])
    answer = max(len(bpe.encode(sample["doc"][key])) for sample in ours["samples"]["piqa"] for key in ("sol1", "sol2"))
    assert longest > 32 + 1 and answer > 32  # rows cut to the context, and answers scored in windows
    for task in tasks:
        mine, served = (sorted(out["samples"][task], key=lambda sample: sample["doc_id"]) for out in (ours, theirs))
        assert len(mine) == len(served) == items
        for a, b in zip(mine, served):
            assert [r[0] for r in a["filtered_resps"]] == pytest.approx([r[0] for r in b["filtered_resps"]], abs=1e-4)
            assert [r[1] for r in a["filtered_resps"]] == [r[1] for r in b["filtered_resps"]]
        for metric in ("acc,none", "acc_norm,none", "perplexity,none"):
            if metric in ours["results"][task]:
                assert ours["results"][task][metric] == pytest.approx(theirs["results"][task][metric], rel=1e-4)


def request(*args):
    return Instance(request_type="loglikelihood_rolling", doc={}, arguments=args, idx=0)


def chunked_loglikelihood(model, full: list[int], chunks: list[tuple[int, int]], block: int) -> float:
    """The plain loop: tokens full[start + 1 .. end] of each chunk predicted from the `block` tokens before the
    chunk's end."""
    total = 0.0
    for start, end in chunks:
        low = max(0, end - block)
        with torch.no_grad():
            logits, _ = model(torch.tensor([full[low:end]]))
        logp = F.log_softmax(logits[0].double(), -1)
        total += sum(logp[j - low, full[j + 1]].item() for j in range(start, end))
    return total


def test_rolling_loglikelihood_predicts_each_token_once_with_the_most_context(bpe):
    """A 150-token text through a 64-token context: the harness's windows against a plain loop in which token i
    is predicted from up to 64 tokens before it, chunk by chunk from the start, the last chunk with a full window.
    The same text as one continuation longer than the context, after an empty context, is chunked from its end
    instead, as the server's API scores a row, each chunk's window full but the first."""
    model = tiny_bpe_gpt(seed=1, block_size=64)
    text = " ".join(f"word{i % 37} and" for i in range(60))
    ids = bpe.encode(text)
    assert len(ids) > 2 * 64
    full = [bpe.eot_token] + ids
    from_start = [(start, min(start + 64, len(ids))) for start in range(0, len(ids), 64)]
    from_end = [(max(0, end - 64), end) for end in range(len(ids), 0, -64)]
    lm = TinylmLM(model, bpe)
    (total,) = lm.loglikelihood_rolling([request(text)])
    assert total == pytest.approx(chunked_loglikelihood(model, full, from_start, 64), abs=1e-3)
    ((whole, _),) = lm.loglikelihood([Instance("loglikelihood", {}, ("", text), 0)])
    assert whole == pytest.approx(chunked_loglikelihood(model, full, from_end, 64), abs=1e-3)


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
