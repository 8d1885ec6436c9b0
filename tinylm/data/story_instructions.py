"""Story instructions a program can check, made from TinyStories: the post-training task of the cpu profile.

Eldan & Li (2023) trained small models to follow instructions by putting before each story what it meets (words it
uses, features). Here each instruction is drawn from its own story, so the story is a correct reply by construction:
the reply is the story's opening with its main character renamed and a noun swapped for another of its kind, so that
neither can be guessed, and the instruction asks for at least two of the new name, the new noun and at most N
sentences. `Constraint.holds` checks each kind; tinylm.posttrain.verifier adds its guards and the pass rate.
"""

from __future__ import annotations

import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import InputError

SPLIT_PERCENT = {"test": 15, "validation": 5}  # of the stories, by hash; the rest is train
KINDS = ("name", "word", "sentences")
MIN_SENTENCES = 3  # an opening, and so a reply that passes, has at least this many sentences
THINGS = {  # nouns that can stand in for each other in a TinyStories sentence, none starting with a vowel ("a ...")
    "animal": ("dog", "cat", "bird", "bunny", "frog", "duck", "bear", "fish", "horse", "cow", "pig", "mouse", "puppy",
               "kitten", "lion", "monkey", "turtle", "bee"),
    "thing": ("ball", "kite", "doll", "car", "truck", "boat", "train", "balloon", "box", "hat", "book", "cake",
              "cookie", "flower", "drum", "bike", "robot", "toy"),
}
KIND_OF = {noun: kind for kind, nouns in THINGS.items() for noun in nouns}
SENTENCE = re.compile(r'.*?[.!?]+["\']?(?=\s|$)', re.S)  # a sentence and its closing quote, if any
SENTENCE_END = re.compile(r'[.!?]+["\']?(?=\s|$)')
ENDS_PROPERLY = re.compile(r'[.!?]["\']?\s*$')


@dataclass(frozen=True)
class Constraint:
    kind: str  # one of KINDS
    value: str | int  # the name, the word, or the most sentences

    def phrase(self) -> str:
        return {"name": f"Write a story about a character named {self.value}.",
                "word": f"The story has a {self.value}.",
                "sentences": f"Use at most {self.value} sentences."}[self.kind]

    def holds(self, reply: str) -> bool:
        if self.kind == "sentences":
            return 1 <= count_sentences(reply) <= int(self.value)
        return self.mentions(reply) > 0

    def mentions(self, reply: str) -> int:
        """How often the reply names the character, or uses the word (or its plural); 0 for a sentence limit."""
        if self.kind == "name":
            return len(re.findall(rf"\b{self.value}\b", reply))
        if self.kind == "word":
            return len(re.findall(rf"\b{self.value}s?\b", reply, re.IGNORECASE))
        return 0


@dataclass(frozen=True)
class StoryInstruction:
    """An instruction, the constraints it states, and the story opening that meets them (the SFT target)."""

    instruction: str
    constraints: tuple[Constraint, ...]
    story: str

    def record(self) -> dict:
        """As tinylm.data.instruct's records: what SFT's conversations are built from."""
        return {"instruction": self.instruction, "output": self.story}


def count_sentences(text: str) -> int:
    return len(SENTENCE_END.findall(text))


def ends_properly(text: str) -> bool:
    """Whether the text ends as a sentence does (., ! or ?, then perhaps a closing quote)."""
    return ENDS_PROPERLY.search(text.strip()) is not None


def split_stories_three_ways(stories: Sequence[str]) -> dict[str, list[str]]:
    """train / validation / test by a hash of each story's text, so that a story's split never depends on order."""
    parts: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for story in stories:
        bucket = zlib.crc32(story.encode("utf-8")) % 100
        test, validation = SPLIT_PERCENT["test"], SPLIT_PERCENT["test"] + SPLIT_PERCENT["validation"]
        parts["test" if bucket < test else "validation" if bucket < validation else "train"].append(story)
    return parts


def character_names(stories: Sequence[str], min_count: int = 3) -> tuple[str, ...]:
    """The names the stories introduce ("a girl named Lily") at least min_count times, sorted."""
    counts = Counter(name for story in stories for name in re.findall(r"\bnamed ([A-Z][a-z]+)\b", story))
    names = tuple(sorted(name for name, count in counts.items() if count >= min_count))
    if len(names) < 2:
        raise InputError(f"the stories introduce {len(names)} name(s) ('named X') at least {min_count} times; the "
                         "story task needs at least 2 to rename a character: use more stories")
    return names


def opening(story: str, rng: random.Random, encode: Callable[[str], list[int]], max_tokens: int) -> str | None:
    """The story's first 3 to 6 sentences (drawn), fewer while they exceed max_tokens; None below MIN_SENTENCES."""
    sentences = [match.group(0).strip() for match in SENTENCE.finditer(story)]
    for count in range(min(rng.randint(MIN_SENTENCES, 6), len(sentences)), MIN_SENTENCES - 1, -1):
        text = " ".join(sentences[:count])
        if len(encode(text)) <= max_tokens:
            return text
    return None


def _main_character(story: str, names: Sequence[str]) -> str | None:
    counts = Counter(word for word in re.findall(r"\b[A-Z][a-z]+\b", story) if word in names)
    return counts.most_common(1)[0][0] if counts else None


def _swap_thing(story: str, rng: random.Random) -> tuple[str, str | None]:
    """The story with one listed noun (and its plural) swapped for another of its kind; the new noun, or None."""
    present = sorted(noun for noun in KIND_OF if re.search(rf"\b{noun}s?\b", story, re.IGNORECASE))
    if not present:
        return story, None
    old = rng.choice(present)
    new = rng.choice([n for n in THINGS[KIND_OF[old]] if not re.search(rf"\b{n}", story, re.IGNORECASE)])

    def swapped(match: re.Match) -> str:
        return (new.capitalize() if match.group(0)[0].isupper() else new) + match.group(1)

    return re.sub(rf"\b{old}(s?)\b", swapped, story, flags=re.IGNORECASE), new


def make_instruction(story: str, rng: random.Random, names: Sequence[str],
                     sentences_share: float = 0.4) -> StoryInstruction | None:
    """An instruction drawn from `story` (an opening), with the story rewritten to meet it; None when the story
    offers fewer than two constraints. The main character is renamed everywhere to one of `names` (those the
    training stories introduce), one noun of a small list (animals, toys and things) is swapped for another of its
    kind everywhere, and a sentence bound allows the opening's count plus one."""
    constraints = []
    if (old := _main_character(story, names)) is not None:
        new = rng.choice([name for name in names if name not in story])
        story = re.sub(rf"\b{old}\b", new, story)
        constraints.append(Constraint("name", new))
    story, noun = _swap_thing(story, rng)
    if noun is not None:
        constraints.append(Constraint("word", noun))
    if len(constraints) < 2 or rng.random() < sentences_share:
        constraints.append(Constraint("sentences", count_sentences(story) + 1))
    if len(constraints) < 2:
        return None
    instruction = " ".join(c.phrase() for c in constraints)
    if constraints[0].kind != "name":
        instruction = "Write a story. " + instruction
    return StoryInstruction(instruction, tuple(constraints), story)


def story_instructions(stories: Sequence[str], names: Sequence[str], encode: Callable[[str], list[int]],
                       seed: int, variants: int = 1, max_tokens: int = 96) -> list[StoryInstruction]:
    """`variants` instructions per story (each its own opening, names and word), reproducible for a seed."""
    rng = random.Random(seed)
    made = []
    for story in stories:
        for _ in range(variants):
            text = opening(story, rng, encode, max_tokens)
            if text is not None and (instruction := make_instruction(text, rng, names)) is not None:
                made.append(instruction)
    return made
