"""The instruction task: Alpaca-style instructions with reference answers (tinylm.data.instruct, split three ways
by content), for SFT. No program checks a reply, so the validation answer loss chooses best.pt; a report counts the
replies that end (<|im_end|> within the cap) and their overlap with the references (token F1, ROUGE-L).

The gpu profile fine-tunes OpenAI's GPT-2 124M. A laptop cannot train that in minutes, and the tinystories model's
vocabulary cannot read most instructions, so on cpu and smoke `--base pretrain` pretrains a small base first (`chat
base`): on the TinyStories sample and the 120 FineWeb-Edu documents, in GPT-2's tokens trimmed to every token of the
training instructions plus the corpus tokens seen MIN_COUNT times (nearly halving the output layer, by far the
largest cost at this width). SFT mixes the same corpus in (`pretraining_text`), so the model keeps its language.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ...config import ModelShape, TrainConfig
from ...data.corpora import TINYSTORIES_SAMPLE, PreparedData, split_stories
from ...data.fineweb import FINEWEB_EDU_SAMPLE
from ...data.instruct import InstructDataError, load_records, split_three_ways, to_messages
from ...download import fetch, mirror_dir
from ...eval.overlap import rouge_l, token_f1
from ...paths import data_dir, runs_dir
from ...tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT
from ...tokenizers.gpt2 import BPETokenizer, TrimmedBPETokenizer
from ...train.prerequisite import Prerequisite
from ...train.recipes import Recipe, Track
from ...train.run import Pretraining
from ..chat_task import ChatTask
from ..recipes import SMOKE_BASE, SFTRecipe
from ..task import HeldOut, Score

MIN_COUNT = 3  # corpus tokens seen fewer times are left out of the chat base's trimmed vocabulary
HELD_OUT_EVERY = 20  # every 20th corpus document is validation text

# (model shape, pretraining recipe) of the chat base per profile; the vocabulary comes from the trimmed tokenizer.
CHAT_BASE_RECIPES = {
    "smoke": SMOKE_BASE,
    "cpu": (ModelShape(block_size=128, n_layer=4, n_head=4, n_embd=128),
            TrainConfig(batch_size=16, max_steps=450, warmup_steps=50, learning_rate=4e-3, min_lr=1e-4, beta2=0.99,
                        eval_interval=0, log_interval=50, eval_batch_size=64, dtype="float32")),
}

RECIPES = {
    "sft": {
        "smoke": SFTRecipe(base="pretrain", pretraining_share=0.2, held_out=8, lora_learning_rate=1e-2,
                           train=TrainConfig(batch_size=8, max_steps=20, warmup_steps=2, learning_rate=3e-3,
                                             min_lr=3e-4, eval_interval=10, log_interval=5, eval_batch_size=64,
                                             dtype="float32")),
        # ~10 epochs over the 991 training conversations (80% of 800 steps of 16), best.pt chosen on held-out answers
        "cpu": SFTRecipe(base="pretrain", pretraining_share=0.2, lora_learning_rate=1e-2,
                         train=TrainConfig(batch_size=16, max_steps=800, warmup_steps=20, learning_rate=1e-3,
                                           min_lr=1e-4, beta2=0.99, eval_interval=50, log_interval=25,
                                           eval_batch_size=64, dtype="float32")),
        # GPT-2 124M: two epochs at a small learning rate, as in most SFT recipes for models of this size
        "gpu": SFTRecipe(base="gpt2", pretraining_share=0.1, epochs=2.0, lora_learning_rate=5e-4,
                         train=TrainConfig(batch_size=16, max_steps=1000, warmup_steps=20, learning_rate=5e-5,
                                           min_lr=5e-6, weight_decay=0.1, eval_interval=50, log_interval=10,
                                           eval_batch_size=32)),
    },
}


def corpus_texts() -> list[str]:
    """The TinyStories sample's stories, then the FineWeb-Edu sample's documents (from the mirror, or the first
    120 documents of the stream online)."""
    folder = data_dir() / "chat_base"
    stories = split_stories(fetch(TINYSTORIES_SAMPLE, folder / "tinystories_sample.txt").read_text(encoding="utf-8"))
    if mirror_dir() is not None:
        with open(fetch(FINEWEB_EDU_SAMPLE, folder / "fineweb_edu_120docs.jsonl"), encoding="utf-8") as f:
            return stories + [json.loads(line)["text"] for line in f if line.strip()]
    import datasets

    stream = datasets.load_dataset("HuggingFaceFW/fineweb-edu", name="sample-10BT", split="train", streaming=True)
    return stories + [row["text"] for row in itertools.islice(stream, 120)]


def _encode(texts: list[str], tokenizer) -> list[np.ndarray]:
    """Each text's ids followed by the end-of-text token."""
    if isinstance(tokenizer, TrimmedBPETokenizer):
        return [tokenizer.compact(ids) for ids in _encode(texts, tokenizer.base)]
    if hasattr(tokenizer, "encoding"):  # tiktoken: encode in its thread pool
        encoded = tokenizer.encoding.encode_ordinary_batch(texts)
    else:
        encoded = [tokenizer.encode(text) for text in texts]
    eot = getattr(tokenizer, "eot_token", None)
    return [np.array(ids + ([eot] if eot is not None else []), dtype=np.int64) for ids in encoded]


def pretraining_tokens(tokenizer, texts: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) token arrays of the chat base's corpus in `tokenizer`'s ids (uint16 where they fit)."""
    documents = _encode(corpus_texts() if texts is None else texts, tokenizer)
    train = np.concatenate([d for i, d in enumerate(documents) if i % HELD_OUT_EVERY])
    val = np.concatenate(documents[::HELD_OUT_EVERY])
    dtype = np.uint16 if tokenizer.vocab_size <= 65536 else np.int64
    return train.astype(dtype), val.astype(dtype)


def base_tokenizer(texts: list[str], instruction_texts: list[str], min_count: int = MIN_COUNT) -> TrimmedBPETokenizer:
    """GPT-2's BPE trimmed to the instruction texts' tokens and the corpus tokens seen at least min_count times."""
    gpt2 = BPETokenizer("gpt2")
    counts = Counter(i for ids in gpt2.encoding.encode_ordinary_batch(texts) for i in ids)
    kept = {i for i, n in counts.items() if n >= min_count} | {gpt2.eot_token}
    kept |= {i for ids in gpt2.encoding.encode_ordinary_batch(instruction_texts) for i in ids}
    return TrimmedBPETokenizer(sorted(kept))


def chat_base_track(instruction_texts: list[str]) -> Track:
    """The chat base's track: the corpus in GPT-2's tokens trimmed to what it and the instruction texts use
    (prepared in memory: it takes seconds)."""

    def prepare(profile: str) -> PreparedData:
        texts = corpus_texts()
        tokenizer = base_tokenizer(texts, instruction_texts)
        train, val = pretraining_tokens(tokenizer, texts)
        return PreparedData(data_dir() / "chat_base", train, val, tokenizer,
                            {"source": "TinyStories sample + FineWeb-Edu sample"})

    return Track(name="chat-base", prepare_data=prepare, recipes=CHAT_BASE_RECIPES, vocab_multiple=64)


@dataclass(frozen=True)
class InstructProblem:
    """An instruction record as a problem: its `prompt` is the user's last turn."""

    source: dict

    @property
    def prompt(self) -> str:
        return [m for m in to_messages(self.source) if m["role"] == "user"][-1]["content"]

    def record(self) -> dict:
        return self.source


class Instruct(ChatTask):
    name = "instruct"
    recipes = RECIPES
    reply_tokens = 200  # a reply "ends" when <|im_end|> comes within this many tokens
    takes_data = True
    default_data = "instruct"
    choose_by_pass_rate = False
    measure_name = f"replies that end (<|im_end|> within {reply_tokens} tokens)"
    plain_prompt = "Question: {instruction}\nAnswer:"  # a shape FAQ pages and quizzes in FineWeb-Edu have
    plain_answer_prefix = " "
    plain_ends_at_blank_line = True

    def __init__(self, profile: str, data: str | None = None, system_prompt: str | None = None):
        super().__init__(profile, data, system_prompt)
        records, self.read_from = load_records(self.data)
        self.split = split_three_ways(records)

    def train_records(self) -> list[dict]:
        return self.split.train

    def train_problems(self) -> list[InstructProblem]:
        return self._problems(self.split.train)

    def held_out(self, validation: int | None, test: int | None) -> HeldOut:
        return HeldOut(self._problems(self.split.validation[:validation]), self._problems(self.split.test[:test]))

    def _problems(self, records: list) -> list[InstructProblem]:
        kept = []
        for record in records:
            try:
                to_messages(record)
            except ValueError:  # malformed, or an empty answer: no problem to score
                continue
            kept.append(InstructProblem(record))
        return kept

    def pretraining_text(self, tokenizer) -> np.ndarray:
        return pretraining_tokens(tokenizer)[0]

    def prerequisite(self, method: str, base: str, profile: str, recipe) -> Prerequisite | None:
        """--base pretrain: the chat base, trimmed to this data's instruction texts, in runs/chat-base-<profile> for
        the course's data and system prompt, else runs/chat-base-<digest of the texts>-<profile>."""
        if base != "pretrain":
            return None
        if profile not in CHAT_BASE_RECIPES:
            raise InstructDataError(f"--base pretrain trains the small chat base of the cpu and smoke profiles; the "
                                    f"{profile} profile starts from --base gpt2, a run folder or a checkpoint")
        texts = self.vocabulary_texts()
        course = self.data == "instruct" and self.system_prompt == DEFAULT_SYSTEM_PROMPT
        digest = "" if course else hashlib.sha256(json.dumps(texts).encode("utf-8")).hexdigest()[:8] + "-"
        shape, cfg = CHAT_BASE_RECIPES[profile]
        return Prerequisite(label="chat base", out=runs_dir() / f"chat-base-{digest}{profile}", profile=profile,
                            steps=cfg.max_steps,
                            job=lambda run: Pretraining(Recipe(track=chat_base_track(texts), run=run, shape=shape,
                                                               train=cfg)))

    def score_replies(self, problems, texts: list[str], ended: list[bool]) -> list[Score]:
        """correct: the reply ended; figures: its token F1 and ROUGE-L against the reference answer."""
        references = [self.messages(p)[-1]["content"] for p in problems]
        return [Score(reward=float(stop), correct=stop, well_formed=stop,
                      figures={"token_f1": token_f1(text, ref), "rouge_l": rouge_l(text, ref)})
                for text, stop, ref in zip(texts, ended, references)]


TASK = Instruct
