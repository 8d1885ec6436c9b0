"""DPO training on a tiny chat model: the trainer's loss is DPO's loss computed by hand, the precomputed reference
equals a frozen copy, micro-batches weigh by pairs, a resumed run equals an uninterrupted one, and a few dozen steps
teach a preference that held-out pairs show. The preference data's split is SFT's, on the real files."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from tests.chat_fixtures import tiny_chat_model
from tinylm.config import TrainConfig
from tinylm.data.instruct import split_three_ways
from tinylm.data.preference import PreferenceDataError, build_pairs, check_preferences, split_preferences
from tinylm.download import mirror_dir
from tinylm.posttrain.dpo.objective import pair_logprobs
from tinylm.posttrain.dpo.trainer import DPOTrainer, PairLoader
from tinylm.tokenizers.chat_template import ChatTemplate
from tinylm.train.checkpoint import load_training_checkpoint

BETA = 0.5
CHOSEN = ("Thank you! The capital of France is Paris.", "Hello! Red is a color. Thank you.",
          "The capital of France is Paris. Thank you, goodbye.")
REJECTED = ("Red.", "Paris Paris Paris.", "goodbye")
QUESTIONS = ("What is the capital of France?", "Name a color.", "Hello!", "Thank you.")


def records(n: int, offset: int = 0) -> list[dict]:
    """Preference records over the tiny vocabulary: a polite answer preferred to a curt one."""
    return [{"instruction": QUESTIONS[i % len(QUESTIONS)], "input": "x" * (i + offset),
             "chosen": CHOSEN[i % len(CHOSEN)], "rejected": REJECTED[(i // 3) % len(REJECTED)]} for i in range(n)]


def setup(seed: int = 0, train: int = 24, validation: int = 12, **overrides):
    """(model, template, train pairs, held-out pairs, train reference, held-out reference, TrainConfig)."""
    model, tokenizer = tiny_chat_model(block_size=64, seed=seed)
    model.train()
    template = ChatTemplate(tokenizer)
    train_pairs = build_pairs(records(train), template, 64).pairs
    val_pairs = build_pairs(records(validation, offset=100), template, 64).pairs
    score = dict(pad_id=template.pad, batch_size=8, device="cpu", vocab_limit=tokenizer.vocab_size)
    cfg = TrainConfig(**{**dict(batch_size=4, max_steps=6, warmup_steps=1, learning_rate=3e-3, min_lr=3e-4,
                                eval_interval=0, log_interval=100, eval_batch_size=8, seed=seed, dtype="float32",
                                weight_decay=0.0), **overrides})
    return (model, template, train_pairs, val_pairs, pair_logprobs(model, train_pairs, **score),
            pair_logprobs(model, val_pairs, **score), cfg)


def trainer_for(model, template, train_pairs, val_pairs, reference, val_reference, cfg, **kwargs) -> DPOTrainer:
    loader = PairLoader(train_pairs, reference, cfg.batch_size, template.pad, seed=cfg.seed)
    return DPOTrainer(model, cfg, loader, None, tokenizer=template.tokenizer, device="cpu", beta=BETA,
                      template=template, val_pairs=val_pairs, val_reference=val_reference, **kwargs)


def logprob_by_hand(model, conversation, vocab_limit: int) -> torch.Tensor:
    """log π(answer | prompt) of one unpadded conversation, token by token."""
    ids = torch.tensor(conversation.ids)
    logits, _ = model(ids[None, :-1])
    logp = F.log_softmax(logits[0, :, :vocab_limit], dim=-1)
    return sum(logp[t, ids[t + 1]] for t in range(len(ids) - 1) if conversation.is_answer[t + 1])


def test_the_trainers_loss_is_dpo_loss_computed_by_hand():
    model, template, train_pairs, val_pairs, reference, val_reference, cfg = setup()
    trainer = trainer_for(model, template, train_pairs, val_pairs, reference, val_reference, cfg)
    for _ in range(2):  # move the policy away from the reference, so that the margins are not all 0
        trainer._optimizer_step()
    order = trainer.sampler.order[trainer.sampler.cursor].tolist()  # the pairs of the next batch
    batch = trainer.sampler.next_batch()
    vocab = template.tokenizer.vocab_size
    expected = []
    for i in order:
        pair = train_pairs[i]
        chosen = logprob_by_hand(model, pair.chosen, vocab) - reference[i, 0]
        rejected = logprob_by_hand(model, pair.rejected, vocab) - reference[i, 1]
        expected.append(-torch.log(torch.sigmoid(BETA * (chosen - rejected))))
    torch.testing.assert_close(trainer.batch_loss(batch), torch.stack(expected).mean(), atol=1e-5, rtol=0)
    assert trainer.batch_weight(batch).item() == cfg.batch_size  # a micro-batch weighs its pairs


def test_the_precomputed_reference_equals_a_frozen_copy_while_the_policy_moves():
    model, template, train_pairs, val_pairs, reference, val_reference, cfg = setup()
    frozen, vocab = copy.deepcopy(model).eval(), template.tokenizer.vocab_size
    trainer = trainer_for(model, template, train_pairs, val_pairs, reference, val_reference, cfg)
    trainer.fit()
    with torch.no_grad():
        for i in (0, 5, len(train_pairs) - 1):
            by_copy = torch.stack([logprob_by_hand(frozen, train_pairs[i].chosen, vocab),
                                   logprob_by_hand(frozen, train_pairs[i].rejected, vocab)])
            torch.testing.assert_close(trainer.sampler.reference[i], by_copy, atol=1e-4, rtol=0)
    policy = pair_logprobs(model, train_pairs, template.pad, 8, "cpu", vocab_limit=template.tokenizer.vocab_size)
    assert (policy - reference).abs().max() > 0.1, "the policy trained away from the reference"


class FixedBatches:
    """A sampler that hands out the given batches in turn (what the accumulation test compares)."""

    def __init__(self, batches, reference):
        self.batches, self.reference, self.cursor = batches, reference, 0

    def next_batch(self, device="cpu"):
        self.cursor += 1
        return self.batches[self.cursor - 1]

    def state_dict(self):
        return {}


def step_gradients(model, template, val_pairs, val_reference, cfg, batches) -> dict[str, torch.Tensor]:
    trainer = DPOTrainer(model, cfg, FixedBatches(batches, None), None, tokenizer=template.tokenizer,
                         device="cpu", beta=BETA, template=template, val_pairs=val_pairs, val_reference=val_reference)
    grads = {}
    trainer.optimizer.zero_grad = lambda set_to_none=True: grads.update(
        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    trainer._optimizer_step()
    return grads


def test_two_micro_batches_weigh_by_pairs_and_equal_one_batch_of_both():
    from tinylm.data.preference import pad_pairs

    model, template, train_pairs, val_pairs, reference, val_reference, cfg = setup(grad_clip=None)
    split = 3  # 3 pairs, then 5: equal weights per micro-batch would give the first pair more say
    parts = [range(0, split), range(split, 8)]
    micro = [(*pad_pairs([train_pairs[i] for i in part], template.pad), reference[list(part)]) for part in parts]
    whole = [(*pad_pairs(train_pairs[:8], template.pad), reference[:8])]
    accumulated = step_gradients(copy.deepcopy(model), template, val_pairs, val_reference,
                                 TrainConfig(**{**cfg.to_dict(), "grad_accum_steps": 2}), micro)
    one = step_gradients(copy.deepcopy(model), template, val_pairs, val_reference, cfg, whole)
    assert accumulated.keys() == one.keys() and one
    for name in one:
        torch.testing.assert_close(accumulated[name], one[name], atol=1e-6, rtol=1e-4, msg=name)
    assert max(g.abs().max() for g in one.values()) > 1e-6, "the step was not trivially zero"


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight = setup()
    trainer_for(*straight).fit()
    model, template, train_pairs, val_pairs, reference, val_reference, cfg = setup()
    first = trainer_for(model, template, train_pairs, val_pairs, reference, val_reference, cfg, out_dir=tmp_path)
    first.fit(stop_after=3)
    saved = load_training_checkpoint(tmp_path / "last.pt")
    assert torch.equal(saved["dpo"]["reference"], reference) and saved["dpo"]["beta"] == BETA
    fresh, *_ = setup(seed=1)  # other weights: the checkpoint must bring its own
    resumed = trainer_for(fresh, template, train_pairs, val_pairs, saved["dpo"]["reference"],
                          saved["dpo"]["val_reference"], cfg, out_dir=tmp_path)
    resumed.load_state_dict(saved)
    resumed.fit()
    for (name, a), b in zip(straight[0].state_dict().items(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_few_dozen_steps_teach_a_preference_that_held_out_pairs_show(seed):
    model, template, train_pairs, val_pairs, reference, val_reference, cfg = setup(
        seed=seed, train=48, max_steps=30, learning_rate=1e-2, min_lr=1e-3)
    trainer = trainer_for(model, template, train_pairs, val_pairs, reference, val_reference, cfg)
    before = trainer.preference(val_pairs, val_reference)
    assert before["accuracy"] == 0.5 and before["ties"] == len(val_pairs)  # the reference: every margin is 0
    assert before["loss"] == pytest.approx(0.6931, abs=1e-4)
    final = trainer.fit()
    after = trainer.val_preference
    assert final["preference_accuracy"] == after["accuracy"] >= 0.9
    assert after["margin"] > 1.0 and after["loss"] < 0.4
    assert after["chosen_reward"] > after["rejected_reward"]


def test_a_record_without_a_preference_is_named():
    good = records(3)
    bad = [*good, {"instruction": "Name a color.", "chosen": "Red."}]
    with pytest.raises(PreferenceDataError, match=r"record 4 \('Name a color.'\) has no text for 'rejected'"):
        check_preferences(bad, "prefs.json")
    check_preferences(good, "prefs.json")


@pytest.mark.skipif(mirror_dir() is None, reason="needs the offline mirror's two instruction files")
def test_preference_records_are_held_out_exactly_as_sft_holds_out_their_instructions():
    sft = json.loads((mirror_dir() / "instruct" / "instruction-data.json").read_text())
    preference = json.loads((mirror_dir() / "instruct" / "instruction-data-with-preference.json").read_text())
    key = lambda r: (r["instruction"], r["input"], r["output"])  # noqa: E731
    sft_split, split = split_three_ways(sft), split_preferences(preference)
    for part in ("train", "validation", "test"):  # the same instructions in each part
        assert sorted(map(key, getattr(split, part))) == sorted(map(key, getattr(sft_split, part))), part
    assert len(split.validation) + len(split.test) > 80 and len(split.validation) - len(split.test) in (0, 1)
    shuffled = split_preferences(preference[::-1])
    for part in ("validation", "test"):
        assert sorted(map(key, getattr(shuffled, part))) == sorted(map(key, getattr(split, part))), "order-free"
