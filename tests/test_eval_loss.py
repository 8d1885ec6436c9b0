"""evaluate_loss_sum: the same sums as a float64 computation window by window, one host sync however many windows,
and the model's training mode back even when a forward pass fails."""

import copy
import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinylm.eval.loss import evaluate_loss_sum, evaluation_windows, target_losses

# A trimmed vocabulary, as TrimmedBPETokenizer has: ids >= 30 are padding columns, id 29 is <unk>.
TRIMMED = SimpleNamespace(vocab_size=30, unk_id=29, unk_penalty=2.5)


@torch.no_grad()
def float64_reference(model, tokens, block_size, tokenizer=None):
    """(nats, targets) window by window, in float64 throughout: each window's scored targets summed by hand."""
    model = copy.deepcopy(model).double().eval()
    window = min(block_size, len(tokens) - 1)
    nats, count = 0.0, 0
    for start, first_scored in evaluation_windows(len(tokens), block_size):
        chunk = torch.from_numpy(tokens[start : start + window + 1].astype(np.int64))
        logits = model(chunk[None, :-1])[0][0]  # (T, vocab)
        targets = chunk[1:]
        if tokenizer is not None:
            logits = logits[:, : tokenizer.vocab_size]
        losses = F.cross_entropy(logits, targets, reduction="none")
        if tokenizer is not None:
            losses = losses + tokenizer.unk_penalty * (targets == tokenizer.unk_id)
        nats += losses[first_scored:].sum().item()
        count += window - first_scored
    return nats, count


def split(length, vocab_size=30, seed=0):
    return np.random.default_rng(seed).integers(0, vocab_size, length).astype(np.uint16)


@pytest.mark.parametrize("tokenizer", [None, TRIMMED])
@pytest.mark.parametrize("length, batch_size", [(203, 3), (161, 64), (17, 2)])
def test_sums_equal_a_float64_computation_window_by_window(make_model, tokenizer, length, batch_size):
    model = make_model()
    tokens = split(length)
    nats, count = evaluate_loss_sum(model, tokens, 16, batch_size, "cpu", tokenizer=tokenizer)
    expected_nats, expected_count = float64_reference(model, tokens, 16, tokenizer)
    assert count == expected_count == length - 1
    assert nats == pytest.approx(expected_nats, rel=1e-6)


def test_the_ranks_shares_add_up_to_the_whole_split(make_model):
    model, tokens = make_model(), split(300)
    whole = evaluate_loss_sum(model, tokens, 16, 4, "cpu")
    shares = [evaluate_loss_sum(model, tokens, 16, 4, "cpu", rank=r, world_size=3) for r in range(3)]
    assert sum(count for _, count in shares) == whole[1]
    assert sum(nats for nats, _ in shares) == pytest.approx(whole[0], rel=1e-6)


def test_the_host_waits_for_the_device_once_however_many_windows(make_model, monkeypatch):
    """Reading a number off a tensor (item, tolist, float, int, bool) waits for the device to finish; a loss read
    per window stalls a GPU between its batches. 3 windows or 40, one batch each: the same number of reads."""
    model = make_model()
    reads = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            reads.append(1)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    counts = []
    for windows in (3, 40):
        reads.clear()
        evaluate_loss_sum(model, split(16 * windows + 1), 16, 1, "cpu")
        counts.append(len(reads))
    assert counts[0] == counts[1] <= 1, counts


@pytest.mark.parametrize("training", [True, False])
def test_a_forward_pass_that_fails_leaves_the_training_mode_as_it_was(make_model, training):
    model = make_model().train(training)
    forwards = []

    def fail_on_the_second_batch(module, inputs):
        forwards.append(module.training)
        if len(forwards) == 2:
            raise RuntimeError("out of memory")

    model.register_forward_pre_hook(fail_on_the_second_batch)
    with pytest.raises(RuntimeError, match="out of memory"):
        evaluate_loss_sum(model, split(100), 16, 1, "cpu")
    assert forwards == [False, False], "evaluation runs in eval mode"
    assert model.training is training


def test_skip_unk_scores_only_the_other_targets(make_model):
    """The sum over targets that are not <unk>: the whole split's sum less the <unk> targets' (each its
    cross-entropy plus the penalty), from the float64 reference's per-target losses."""
    model, tokens = make_model(), split(203)
    nats, count = evaluate_loss_sum(model, tokens, 16, 3, "cpu", tokenizer=TRIMMED, skip_unk=True)
    reference = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        kept_nats, kept = 0.0, 0
        for start, first_scored in evaluation_windows(len(tokens), 16):
            chunk = torch.from_numpy(tokens[start : start + 17].astype(np.int64))
            losses = F.cross_entropy(reference(chunk[None, :-1])[0][0][:, : TRIMMED.vocab_size], chunk[1:],
                                     reduction="none")[first_scored:]
            known = chunk[1:][first_scored:] != TRIMMED.unk_id
            kept_nats += losses[known].sum().item()
            kept += int(known.sum())
    assert 0 < kept < len(tokens) - 1, "the split should hold some <unk> targets and some others"
    assert count == kept
    assert nats == pytest.approx(kept_nats, rel=1e-6)


class Letters:
    """A trimmed vocabulary as TrimmedBPETokenizer has one: a-z are ids 0-25, a space 26, anything else <unk> (29);
    ids 30 and up are the embedding's padding columns."""

    vocab_size, unk_id, unk_penalty = 30, 29, 2.5

    def encode(self, text: str) -> list[int]:
        return [ord(c) - 97 if "a" <= c <= "z" else 26 if c == " " else 29 for c in text]


def test_every_scorer_charges_a_continuation_what_target_losses_says(make_model):
    """One rule for the loss of a continuation (logits past the vocabulary left out, <unk> at its penalty), followed
    by the benchmarks' scorer (HellaSwag's too), the harness bridge, the OpenAI endpoint's log-probabilities and the
    text loss alike: each gives the by-hand float64 figure."""
    from tinylm.eval.scoring import score_rows
    from tinylm.serve.openai_api import token_logprobs

    model, tokenizer = make_model(vocab_size=64).eval(), Letters()
    context, continuation = tokenizer.encode("the cat"), tokenizer.encode(" sat!")  # "!" is <unk>
    row = context + continuation
    with torch.no_grad():
        logits = model(torch.tensor([row[:-1]]))[0][0].double()[:, : tokenizer.vocab_size]  # (T, vocab)
    targets = torch.tensor(row[1:])
    by_hand = -torch.log_softmax(logits, -1).gather(1, targets[:, None])[:, 0] + 2.5 * (targets == 29)  # (T,)
    assert (targets == 29).sum() == 1
    expected = by_hand[len(context) - 1:].sum().item()  # position t predicts token t + 1

    assert target_losses(logits.float(), targets, tokenizer).double() == pytest.approx(by_hand, rel=1e-5)
    scored = {"score_rows": score_rows(model, tokenizer, [(context, continuation)], "cpu")[0][0],
              "token_logprobs": -sum(token_logprobs(model, tokenizer, row, 0)[0][len(context):])}
    if importlib.util.find_spec("lm_eval") is not None:
        from tinylm.eval.harness import TinylmLM

        scored["harness"] = -TinylmLM(model, tokenizer).token_scores([(context, continuation)])[0][0]
    for name, nats in scored.items():
        assert float(nats) == pytest.approx(expected, rel=1e-5), name
    nats, count = evaluate_loss_sum(model, np.array(row), 16, 1, "cpu", tokenizer=tokenizer)
    assert count == len(row) - 1 and nats == pytest.approx(by_hand.sum().item(), rel=1e-5)
