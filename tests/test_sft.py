"""SFT data and batches: the record rules, the fixed split, answer-only targets checked by hand, padding that
changes nothing, the length-bucketed loader, the mixture's proportions, and the SFTTrainer's resumable runs."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinylm.config import GPTConfig, TrainConfig
from tinylm.data.conversations import ConversationLoader, MixtureLoader, pad_conversations
from tinylm.data.instruct import (
    build_examples,
    load_records,
    read_records,
    split_records,
    split_three_ways,
    to_messages,
)
from tinylm.data.tokens import RandomWindowSampler
from tinylm.distributed import World
from tinylm.eval.loss import answer_loss_split, answer_loss_sum
from tinylm.model.gpt import GPT
from tinylm.model.losses import next_token_loss
from tinylm.posttrain.sft.trainer import SFTTrainer
from tinylm.posttrain.tasks.instruct import Instruct, InstructProblem
from tinylm.tokenizers.chat_template import ChatTemplate, RenderedChat
from tinylm.tokenizers.gpt2 import CHAT_SPECIAL_TOKENS, BPETokenizer, TrimmedBPETokenizer

WORDS = ["cat", "dog", "red", "blue", "sun", "moon", "tree", "fish", "bird", "rain", "snow", "star"]


def records(n: int, seed: int = 0) -> list[dict]:
    """Records a tiny model can learn: repeat the given words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
        out.append({"instruction": "Repeat the words.", "input": words, "output": words})
    return out


@pytest.fixture(scope="module")
def template():
    """A chat template over a vocabulary trimmed to what the test records use (small, so models are tiny)."""
    gpt2 = BPETokenizer("gpt2-chat")
    text = (" ".join(json.dumps(r) for r in records(200)) + " You are a helpful assistant.\nsystem user assistant\n"
            + Instruct.plain_prompt.format(instruction="Repeat the words."))
    ids = gpt2.encode(text) + list(CHAT_SPECIAL_TOKENS.values()) + [gpt2.eot_token]
    return ChatTemplate(TrimmedBPETokenizer.from_ids(ids, "gpt2-chat"))


def tiny_model(vocab: int, seed: int = 0, block_size: int = 64) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block_size, n_layer=2, n_head=2, n_embd=32))


def test_padded_batch_targets_are_the_next_answer_ids_and_minus_one_elsewhere():
    a = RenderedChat([5, 6, 7, 8, 9], [False, False, True, True, False])
    b = RenderedChat([1, 2, 3], [False, True, True])
    x, y = pad_conversations([a, b], pad_id=0)
    assert x.tolist() == [[5, 6, 7, 8], [1, 2, 0, 0]]
    assert y.tolist() == [[-1, 7, 8, -1], [2, 3, -1, -1]]


def test_masked_loss_equals_a_hand_computation(template):
    examples = build_examples(records(3, seed=1), template, block_size=64)
    model = tiny_model(template.tokenizer.vocab_size + 8).eval().requires_grad_(False)
    x, y = pad_conversations(examples.rendered, template.pad)
    logits, loss = model(x, y)
    nats, count = 0.0, 0
    for row, chat in enumerate(examples.rendered):  # straight from the template's mask, not from y
        log_probs = torch.log_softmax(logits[row].double(), dim=-1)
        for t in range(len(chat) - 1):
            if chat.is_answer[t + 1]:
                nats -= float(log_probs[t, chat.ids[t + 1]])
                count += 1
    assert count == sum(sum(c.is_answer[1:]) for c in examples.rendered) and count < x.numel() / 2
    assert float(loss) == pytest.approx(nats / count, rel=1e-5)
    # the same loss through an explicit mask and through answer_loss_sum
    assert float(next_token_loss(logits, y.clamp(min=0), y != -1)) == pytest.approx(nats / count, rel=1e-5)
    total, n = answer_loss_sum(model, examples.rendered, 2, "cpu", template.pad)
    assert n == count and total == pytest.approx(nats, rel=1e-5)
    # split at <|im_end|>: one per answer, the rest the answers' other tokens, the whole answer_loss_sum's (both
    # scoring the tokenizer's vocabulary only)
    split = answer_loss_split(model, examples.rendered, template.tokenizer, template.im_end)
    total, n = answer_loss_sum(model, examples.rendered, 2, "cpu", template.pad, tokenizer=template.tokenizer)
    assert split["counts"] == {"token": 3, "rest": n - 3} and split["mean"] == pytest.approx(total / n, rel=1e-5)
    assert split["token"] * 3 + split["rest"] * (n - 3) == pytest.approx(total, rel=1e-5)
    assert split["token_share"] == pytest.approx(3 * split["token"] / total, rel=1e-5) and 0 < split["token_share"] < 1


def test_padding_changes_no_real_token(template):
    """A padded batch's loss is the answer-token-weighted mean of each conversation's loss alone."""
    examples = build_examples(records(4, seed=2), template, block_size=64)
    assert len({len(c) for c in examples.rendered}) > 1, "the test needs conversations of different lengths"
    model = tiny_model(template.tokenizer.vocab_size + 8).eval().requires_grad_(False)
    _, batch_loss = model(*pad_conversations(examples.rendered, template.pad))
    alone = [(model(*pad_conversations([c], template.pad))[1], sum(c.is_answer[1:])) for c in examples.rendered]
    weighted = sum(float(loss) * n for loss, n in alone) / sum(n for _, n in alone)
    assert float(batch_loss) == pytest.approx(weighted, rel=1e-5)


def test_record_rules_are_applied_and_counted(template):
    long_words = " ".join(["tree"] * 80)
    long_chat = {"messages": [{"role": "user", "content": long_words}, {"role": "assistant", "content": "ok"},
                              {"role": "user", "content": "cat"}, {"role": "assistant", "content": "cat"}]}
    batch = [
        *records(3),
        {"instruction": "Repeat the words.", "output": ""},  # empty answer
        {"instruction": "Repeat the words.", "input": "cat"},  # no output
        {"output": "cat"},  # no instruction
        "not a record",
        {"messages": [{"role": "assistant", "content": "cat"}]},  # wrong turn order
        {"instruction": "Repeat the words.", "input": long_words, "output": long_words},  # one exchange, too long
        long_chat,  # the oldest exchange goes
    ]
    examples = build_examples(batch, template, block_size=64)
    assert examples.counts == {"kept": 4, "truncated": 1, "too_long": 1, "empty_answer": 1, "malformed": 4}
    assert all(len(c) <= 65 for c in examples.rendered)
    shortened = examples.messages[-1]
    assert [m["role"] for m in shortened] == ["system", "user", "assistant"] and shortened[1]["content"] == "cat"
    assert to_messages({"instruction": " Add. ", "input": "2, 3", "output": "5"})[1]["content"] == "Add.\n\n2, 3"


def test_the_held_out_split_is_fixed_by_content_not_order():
    data = records(400, seed=3)
    train, held_out = split_records(data, val_fraction=0.1)
    shuffled = data[::-1]
    _, held_out_again = split_records(shuffled, val_fraction=0.1)
    assert sorted(map(json.dumps, held_out)) == sorted(map(json.dumps, held_out_again))
    assert 20 <= len(held_out) <= 60 and len(train) + len(held_out) == 400
    assert not {json.dumps(r) for r in train} & {json.dumps(r) for r in held_out}


def test_a_capped_held_out_split_does_not_depend_on_the_order_either():
    data = records(6000, seed=4)  # ~600 records hash into the held-out range: the cap of 500 decides
    _, held_out = split_records(data, val_fraction=0.1, max_val=500)
    _, held_out_again = split_records(data[::-1], val_fraction=0.1, max_val=500)
    assert len(held_out) == 500
    assert sorted(map(json.dumps, held_out)) == sorted(map(json.dumps, held_out_again))
    assert held_out == [r for r in data if r in held_out]  # kept in file order


def test_the_held_out_records_split_into_validation_and_test_by_content():
    data = records(400, seed=3)
    split = split_three_ways(data, val_fraction=0.1)
    _, held_out = split_records(data, val_fraction=0.1)
    parts = [split.train, split.validation, split.test]
    assert sum(map(len, parts)) == 400 and len(split.validation) - len(split.test) in (0, 1) and split.test
    assert sorted(map(json.dumps, split.validation + split.test)) == sorted(map(json.dumps, held_out))
    assert not {json.dumps(r) for r in split.validation} & {json.dumps(r) for r in split.test}
    assert all(part == [r for r in data if r in part] for part in parts)  # each in file order
    again = split_three_ways(data[::-1], val_fraction=0.1)
    for mine, theirs in zip(parts, [again.train, again.validation, again.test]):
        assert sorted(map(json.dumps, mine)) == sorted(map(json.dumps, theirs))  # the order of the file is no matter
    keyed = split_three_ways([{**r, "extra": i} for i, r in enumerate(data)], key=lambda r: {
        k: v for k, v in r.items() if k != "extra"})
    assert [{k: v for k, v in r.items() if k != "extra"} for r in keyed.test] == split.test  # hashed by the key


def test_the_mirrors_instruction_set_loads_and_splits():
    data, description = load_records("instruct")
    assert len(data) == 1100 and "1,100" in description
    train, held_out = split_records(data)
    assert len(held_out) == sum(1 for r in data if r in held_out) and 80 <= len(held_out) <= 140
    split = split_three_ways(data)
    assert split.train == train and sorted(map(json.dumps, split.validation + split.test)) == sorted(
        map(json.dumps, held_out))


def test_files_that_are_not_records_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="neither a JSON list nor JSON lines"):
        read_records(bad)
    with pytest.raises(FileNotFoundError, match="--data instruct"):
        read_records(tmp_path / "missing.json")
    lines = tmp_path / "chats.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in records(3)) + "\n")
    assert read_records(lines) == records(3)


def test_loader_epochs_cover_every_conversation_once_with_less_padding_and_resume_exactly(template):
    examples = build_examples(records(230, seed=4), template, block_size=64)
    loader = ConversationLoader(examples.rendered, batch_size=8, pad_id=template.pad, seed=0, bucket_batches=10)
    seen = [i for batch in loader.order.tolist() for i in batch]
    assert len(seen) == len(set(seen)) == len(examples) // 8 * 8
    unsorted = ConversationLoader(examples.rendered, batch_size=8, pad_id=template.pad, seed=0, bucket_batches=1)
    assert loader.padding_fraction() < unsorted.padding_fraction() / 2
    for _ in range(40):  # into the second epoch
        loader.next_batch()
    state = loader.state_dict()
    straight = [loader.next_batch() for _ in range(5)]
    resumed = ConversationLoader(examples.rendered, batch_size=8, pad_id=template.pad, seed=99, bucket_batches=10)
    resumed.load_state_dict(state)
    assert loader.epoch == resumed.epoch == 1
    for (x1, y1), (x2, y2) in zip(straight, (resumed.next_batch() for _ in range(5))):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_ddp_ranks_take_disjoint_slices_of_the_same_global_batch(template):
    examples = build_examples(records(64, seed=5), template, block_size=64)
    ranks = [ConversationLoader(examples.rendered, 4, template.pad, seed=0, world=World(rank=r, size=2))
             for r in (0, 1)]
    alone = ConversationLoader(examples.rendered, 8, template.pad, seed=0)
    x0, x1, x = ranks[0].next_batch()[0], ranks[1].next_batch()[0], alone.next_batch()[0]
    width = x.size(1)
    padded = [F.pad(part, (0, width - part.size(1)), value=template.pad) for part in (x0, x1)]
    assert torch.equal(torch.cat(padded), x)


class Constant:
    """A loader whose batches say which source they came from."""

    def __init__(self, value: int):
        self.value, self.drawn = value, 0

    def next_batch(self, device="cpu"):
        self.drawn += 1
        return torch.full((1, 1), self.value), torch.full((1, 1), self.value)

    def state_dict(self):
        return {"drawn": self.drawn}

    def load_state_dict(self, state):
        self.drawn = state["drawn"]


def test_mixture_proportions_match_the_weights():
    weights = {"pretraining": 0.7, "chat": 0.2, "code": 0.1}
    mixture = MixtureLoader({name: Constant(i) for i, name in enumerate(weights)}, weights, seed=0)
    draws = 5000
    values = [int(mixture.next_batch()[0]) for _ in range(draws)]
    observed = np.bincount(values, minlength=3)
    expected = np.array(list(weights.values())) * draws
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 13.8, (observed, expected)  # the 99.9% quantile of chi-square with 2 degrees of freedom
    assert list(mixture.counts.values()) == observed.tolist()
    state = mixture.state_dict()
    straight = [int(mixture.next_batch()[0]) for _ in range(50)]
    resumed = MixtureLoader({name: Constant(i) for i, name in enumerate(weights)}, weights, seed=1)
    resumed.load_state_dict(state)
    assert [int(resumed.next_batch()[0]) for _ in range(50)] == straight
    with pytest.raises(ValueError, match="exactly the sources"):
        MixtureLoader({"a": Constant(0)}, {"b": 1.0})


def chat_trainer(template, examples, val, steps, out=None, mixture=False):
    cfg = TrainConfig(batch_size=8, max_steps=steps, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4, eval_interval=0,
                      log_interval=5, eval_batch_size=16, seed=0, dtype="float32")
    model = tiny_model(template.tokenizer.vocab_size + 8)
    loader = ConversationLoader(examples.rendered, cfg.batch_size, template.pad, seed=0)
    if mixture:
        text = np.array(template.render(examples.messages[0]).ids * 20, dtype=np.uint16)
        loader = MixtureLoader({"chat": loader, "text": RandomWindowSampler(text, 64, 8, seed=0)},
                               {"chat": 0.8, "text": 0.2}, seed=0)
    return SFTTrainer(model, cfg, loader, None, out_dir=out, tokenizer=template.tokenizer, device="cpu",
                       val_conversations=val.rendered, template=template)


def test_chat_trainer_learns_answers_and_validates_on_answer_tokens(template):
    examples = build_examples(records(160, seed=6), template, block_size=64)
    val = build_examples(records(24, seed=7), template, block_size=64)
    trainer = chat_trainer(template, examples, val, steps=60)
    before = trainer.evaluate()["val_loss"]
    final = trainer.fit()
    total, count = answer_loss_sum(trainer.model, val.rendered, 16, "cpu", template.pad, tokenizer=template.tokenizer)
    assert final["val_loss"] == pytest.approx(total / count, rel=1e-6)
    assert before > math.log(template.tokenizer.vocab_size) - 1  # about uniform at first
    assert final["val_loss"] < before - 1


def test_a_resumed_mixture_run_ends_where_an_uninterrupted_one_ends(template, tmp_path):
    examples = build_examples(records(80, seed=8), template, block_size=64)
    val = build_examples(records(8, seed=9), template, block_size=64)
    straight = chat_trainer(template, examples, val, steps=12, mixture=True)
    straight.fit()
    first = chat_trainer(template, examples, val, steps=12, out=tmp_path, mixture=True)
    first.fit(stop_after=5)
    first.save("last.pt")
    resumed = chat_trainer(template, examples, val, steps=12, mixture=True)
    resumed.resume(tmp_path / "last.pt")
    resumed.fit()
    assert resumed.sampler.counts == straight.sampler.counts and sum(straight.sampler.counts.values()) == 12
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        assert torch.equal(a, b)


def test_the_plain_prompt_baseline_counts_the_answer_and_end_of_text_only(template):
    from tinylm.posttrain.replies import greedy_completions

    tokenizer, plain = template.tokenizer, Instruct("smoke").plain()
    problem = InstructProblem(records(1, seed=3)[0])
    prompt = plain.prompt_ids(tokenizer, problem)
    assert tokenizer.decode(prompt) == Instruct.plain_prompt.format(instruction=problem.prompt)  # no system prompt
    [rendered] = plain.answers(tokenizer, [problem], block_size=64)
    assert rendered.ids[: len(prompt)] == prompt and not any(rendered.is_answer[: len(prompt)])
    counted = [i for i, answer in zip(rendered.ids, rendered.is_answer) if answer]
    assert counted == tokenizer.encode(" " + problem.record()["output"]) + [tokenizer.eot_token]
    completions = greedy_completions(tiny_model(tokenizer.vocab_size + 8), tokenizer, plain, [problem] * 2)
    texts = plain.reply_texts(tokenizer, completions)
    assert len(texts) == 2 and "\n\n" not in texts[0]


def test_replies_may_use_every_id_but_a_trimmed_vocabularys_unk(template):
    from tinylm.posttrain.replies import text_vocab_limit

    trimmed = template.tokenizer
    assert text_vocab_limit(trimmed) == trimmed.unk_id == trimmed.vocab_size - 1
    assert text_vocab_limit(BPETokenizer("gpt2-chat")) == BPETokenizer("gpt2-chat").vocab_size
