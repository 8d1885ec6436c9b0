"""The story task: its instructions hold for their own stories, and its verifier passes stories and fails hacks."""

import json
import random
import re
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from tinylm.config import GPTConfig, TrainConfig
from tinylm.data.story_instructions import (
    MIN_SENTENCES,
    Constraint,
    StoryInstruction,
    character_names,
    count_sentences,
    make_instruction,
    split_stories_three_ways,
    story_instructions,
)
from tinylm.errors import InputError
from tinylm.model.gpt import GPT
from tinylm.posttrain.task import pass_rate_line, pass_rate_table, summarize
from tinylm.posttrain.tasks.stories import OpeningPrompts, Stories, opening_line, story_base, verifier_base
from tinylm.posttrain.verifier import REPEATS_QUANTILE, Verifier, loss_per_token, repeated_share
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.trainer import Trainer

STORIES = [
    "Once upon a time, there was a girl named Lily. Lily had a red ball. She threw the ball to her dog. The dog ran.",
    "One day, a boy named Tom saw a cat. The cat was on a tree. Tom said, \"Come down!\" The cat jumped to Tom.",
    "Ben and his mom went to the park. Ben had a kite. The kite flew high. Ben was happy.",
    "There was a little bird. The bird sang every day. One day it rained. The bird was sad.",
]


def test_split_is_by_story_disjoint_and_independent_of_order():
    stories = [f"Story {i}. It was fun. The end." for i in range(2000)]
    parts = split_stories_three_ways(stories)
    assert sum(len(p) for p in parts.values()) == 2000 and not set(parts["test"]) & set(parts["train"])
    assert split_stories_three_ways(list(reversed(stories)))["test"] == list(reversed(parts["test"]))
    assert 0.12 < len(parts["test"]) / 2000 < 0.18 and 0.03 < len(parts["validation"]) / 2000 < 0.07


def test_every_instruction_holds_for_its_own_story_and_renames_everywhere():
    names = ("Lily", "Tom", "Ben", "Zoe", "Max", "Mia")
    made = story_instructions(STORIES * 5, names, str.split, seed=0, variants=3, max_tokens=100)
    assert made and all(c.holds(i.story) for i in made for c in i.constraints)
    for instruction in made:
        kinds = [c.kind for c in instruction.constraints]
        assert len(kinds) >= 2 and len(set(kinds)) == len(kinds)
        assert instruction.instruction == " ".join(["Write a story."] * (kinds[0] != "name")
                                                   + [c.phrase() for c in instruction.constraints])
        assert count_sentences(instruction.story) >= MIN_SENTENCES
    renamed = [i for i in made if i.constraints[0].kind == "name" and "Lily" not in i.constraints[0].value
               and "red" in i.story]
    assert renamed and all(not re.search(r"\bLily\b", i.story) for i in renamed)


def test_a_word_is_swapped_with_its_plural_and_capital_kept():
    rng = random.Random(1)
    made = make_instruction("The dog saw two dogs. Dog was fun. It ran.", rng, names=("Zoe", "Max"))
    word = [c.value for c in made.constraints if c.kind == "word"][0]
    assert word != "dog" and f"The {word} saw two {word}s. {word.capitalize()} was fun." in made.story


def test_names_come_from_named_introductions():
    assert character_names(STORIES * 3) == ("Lily", "Tom")


def test_constraint_checks():
    assert Constraint("name", "Zoe").holds("Zoe ran.") and not Constraint("name", "Zoe").holds("Zoey ran.")
    assert Constraint("word", "kite").holds("Two Kites flew.") and not Constraint("word", "kite").holds("A kitten.")
    assert Constraint("sentences", 2).holds("One. Two.") and not Constraint("sentences", 2).holds("A. B. C.")


@pytest.fixture(scope="module")
def judge():
    """A small character model trained a few hundred steps on story-like text: enough to tell a story from a list."""
    text = " ".join(STORIES * 40)
    tokenizer = CharTokenizer.from_text(text + "ZoeMaxKkitedgcb")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=64))
    data = torch.tensor(tokenizer.encode(text)).numpy()
    cfg = TrainConfig(batch_size=16, max_steps=300, warmup_steps=10, learning_rate=3e-3, min_lr=3e-4,
                      eval_interval=0, log_interval=1000, eval_batch_size=16, dtype="float32")
    Trainer(model, cfg, data, data[-2000:], device="cpu").fit()
    tokenizer.eot_token = tokenizer.encode(" ")[0]  # a story follows a space in this text
    return model.eval(), tokenizer


def test_loss_per_token_is_the_mean_cross_entropy_after_the_start_token(judge):
    model, tokenizer = judge
    text = "Ben had a kite."
    ids = torch.tensor([[tokenizer.eot_token, *tokenizer.encode(text)]])
    logits, _ = model(ids[:, :-1])
    expected = F.cross_entropy(logits[0], ids[0, 1:]).item()
    assert loss_per_token(model, tokenizer, [text, "", text])[0] == pytest.approx(expected, rel=1e-5)
    assert loss_per_token(model, tokenizer, [""]) == [float("inf")]


def test_the_verifier_passes_a_story_that_meets_its_instruction_and_fails_the_hacks(judge):
    model, tokenizer = judge
    verifier = Verifier(model, tokenizer)
    verifier.calibrate(STORIES, STORIES)
    instruction = StoryInstruction("Write a story about a character named Ben. The story has a kite.",
                                   (Constraint("name", "Ben"), Constraint("word", "kite")), STORIES[2])
    replies = {
        "the story itself": STORIES[2],
        "the words listed": "Ben kite.",
        "the words listed as sentences": "Kite. Ben kite. Kite ben.",
        "scrambled words": "kite Ben. had park. happy the high. flew his",
        "cut off mid-sentence": "Ben and his mom went to the park. Ben had a kite. The kite flew",
        "the wrong name": STORIES[2].replace("Ben", "Tom"),
    }
    verdicts = dict(zip(replies, verifier.check(list(replies.values()), [instruction] * len(replies))))
    assert verdicts["the story itself"].passed
    assert not any(v.passed for name, v in verdicts.items() if name != "the story itself"), verdicts
    assert not verdicts["scrambled words"].fluent and verdicts["scrambled words"].holds == {"name": True, "word": True}
    weak = Verifier(model, tokenizer, guards=False)  # the loophole of notebook 11: constraints only
    assert weak.check(["Ben kite."], [instruction])[0].passed


def test_the_repeated_share_counts_word_3_grams_seen_before_in_the_same_text():
    def by_counting(text):  # the same share, counted another way: each 3-gram beyond its first occurrence
        words = re.findall(r"[a-z0-9']+", text.lower())
        grams = list(zip(words, words[1:], words[2:]))
        return sum(n - 1 for n in Counter(grams).values()) / len(grams) if grams else 0.0

    loop = "Ben had a big cake. " * 6
    for text in [*STORIES, loop, "Ben, ben BEN ben.", "Hi.", ""]:
        assert repeated_share(text) == pytest.approx(by_counting(text))
    assert repeated_share(STORIES[0]) == 0 and repeated_share(loop) == pytest.approx((30 - 5 - 2) / (30 - 2))


def test_the_repetition_guard_fails_a_loop_that_meets_every_other_check(judge):
    model, tokenizer = judge
    verifier = Verifier(model, tokenizer)
    openings = [*STORIES, "Tom ran and ran and ran. He was fast. The end."]
    verifier.calibrate(STORIES, openings)
    shares = sorted(repeated_share(story) for story in openings)
    assert verifier.max_repeats in shares and sum(s <= verifier.max_repeats for s in shares) >= REPEATS_QUANTILE * 5
    instruction = StoryInstruction("x", (Constraint("name", "Ben"), Constraint("word", "kite")), STORIES[2])
    loop = "Ben had a kite. " * 5
    verifier.max_loss = float("inf")  # the fluency guard set aside: only the repetition guard is left to judge
    strict = verifier.check([loop], [instruction])[0]
    lax = Verifier(model, tokenizer, max_loss=1e9, max_repeats=1.0).check([loop], [instruction])[0]
    assert strict.holds == {"name": True, "word": True} and strict.ends and strict.fluent
    assert strict.repeats > verifier.max_repeats and not strict.varied and not strict.passed
    assert lax.varied and lax.passed  # with the bound at 1, the same loop passes: the guard alone refused it


def test_the_prompted_base_is_scored_on_its_opening_line_and_what_follows(judge):
    model, tokenizer = judge
    task = Stories("smoke")
    task.verifier = Verifier(model, tokenizer, guards=False)
    asked = [StoryInstruction("x", (Constraint("name", "Ben"), Constraint("word", "kite")), STORIES[2]),
             StoryInstruction("x", (Constraint("name", "Ben"), Constraint("sentences", 3)), STORIES[2]),
             StoryInstruction("x", (Constraint("word", "kite"), Constraint("sentences", 2)), STORIES[2])]
    for instruction in [*asked, *task.splits.test]:
        line = opening_line(instruction)
        assert count_sentences(line) == 1
        assert all(c.holds(line) for c in instruction.constraints if c.kind != "sentences"), line
    prompted = OpeningPrompts(task)
    assert prompted.prompt_ids(tokenizer, asked[0]) == [tokenizer.eot_token, *tokenizer.encode(opening_line(asked[0]))]
    completions = [tokenizer.encode(" The dog ran. The cat sat.") + [tokenizer.eot_token]] * 3  # no Ben, no kite
    assert prompted.reply_texts(tokenizer, completions)[0] == "The dog ran. The cat sat."
    scores = prompted.score_completions(tokenizer, asked, completions)
    assert [s.correct for s in scores] == [True, True, False]  # the line's sentence counts: 3 where 2 are allowed
    assert prompted.answers(tokenizer, asked, 64) == []


def test_the_report_counts_each_check_where_asked_and_gives_the_wilson_interval(judge):
    model, tokenizer = judge
    task = Stories("smoke")
    task.verifier = Verifier(model, tokenizer, guards=False)
    instruction = StoryInstruction("x", (Constraint("name", "Ben"), Constraint("word", "kite")), STORIES[2])
    replies = ["Ben had a kite. It flew. He ran.", "Ben ran. He sat. It was fun.", "Tom had a kite. It flew. Ha."]
    scores = task.score_replies([instruction] * 3, replies, [True, True, False])
    summary = summarize(["x"] * 3, scores, replies)
    assert summary["passed"] == 1 and summary["problems"] == 3 and summary["low"] < 1 / 3 < summary["high"]
    assert summary["passed_each"] == [True, False, False]  # the third never ended: it cannot pass
    assert summary["kinds"]["name"] == {"held": 2 / 3, "asked": 3} and summary["kinds"]["word"]["held"] == 2 / 3
    assert summary["kinds"]["ends"] == {"held": 2 / 3, "asked": 3}
    table = pass_rate_table({"policy": summary}, ("name", "sentences")).splitlines()
    assert table[:2] == ["| model | test pass rate [95% Wilson] | name held | sentences held |", "|---|---|---|---|"]
    assert table[2] == f"| policy | {pass_rate_line(summary)} | 67% | nan% |"  # no sentence count was asked


def test_a_policy_started_from_a_run_is_judged_by_the_story_base_it_names(tmp_path, monkeypatch):
    """A run's settings.json names its verifier's story base; a run copied elsewhere,
    whose named base is gone, falls back to runs/stories-base-<profile>, and with neither there the error says what
    makes one."""
    monkeypatch.setenv("TINYLM_RUNS_DIR", str(tmp_path / "runs"))
    run = tmp_path / "copied-sft"
    run.mkdir()
    (run / "settings.json").write_text(json.dumps({"task": {"verifier": str(tmp_path / "elsewhere" / "best.pt")}}))
    with pytest.raises(InputError, match="tinylm.sft --task stories --profile smoke"):
        verifier_base(run, "smoke")
    story_base("smoke").out.mkdir(parents=True)
    assert verifier_base(run / "best.pt", "smoke") == story_base("smoke").out
    named = tmp_path / "named-base"
    named.mkdir()
    (run / "settings.json").write_text(json.dumps({"task": {"verifier": str(named)}}))
    assert verifier_base(run, "smoke") == named


def test_sft_from_a_story_model_makes_it_the_verifier_and_from_a_chat_run_takes_the_one_it_names(tmp_path,
                                                                                                     monkeypatch):
    """SFT from the story base judges by that base; SFT from a chat run (on its chosen replies) by the base the run
    names, as DPO and GRPO do: a chat model's loss is no fluency guard for stories."""
    built = []

    class Built:
        model = torch.nn.Linear(1, 1)

    monkeypatch.setattr("tinylm.posttrain.tasks.stories.story_verifier",
                        lambda base, splits: built.append(base) or Built)
    base, chat, named = tmp_path / "story-base", tmp_path / "chat-sft", tmp_path / "named-base"
    for folder in (base, chat, named):
        folder.mkdir()
    (chat / "settings.json").write_text(json.dumps({"task": {"verifier": str(named)}}))
    task = Stories("smoke")
    for start, method in ((base, "sft"), (chat, "sft"), (chat / "best.pt", "dpo")):
        task.prepare(start, "cpu", method)
    assert built == [base, named, named]
