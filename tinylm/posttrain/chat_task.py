"""A task that a chat model answers in ChatML: instructions in, replies checked. The stories, instruct and preference
tasks are such tasks; a subclass gives its problems (each with a `prompt`, the user's turn, and a `record()` with the
reference answer, as tinylm.data.instruct reads records) and `score_replies`, its check of reply texts.

The same task asks a base model that never saw the chat tokens in plain text (`plain`): the prompt as pretraining
text would put it, the reply ending where text ends (<|endoftext|>, or a blank line for tasks that say so). That is
SFT's fair baseline: a base asked in ChatML cannot end its reply, which says nothing of what it knows.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

from ..data.instruct import InstructDataError, build_examples, to_messages
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ROLES, ChatFormatError, ChatTemplate, RenderedChat
from .replies import text_vocab_limit
from .task import PostTrainingTask, Score, TaskError


def chat_template(tokenizer) -> ChatTemplate:
    try:
        return ChatTemplate(tokenizer)
    except ChatFormatError as error:
        raise TaskError("this model has no chat tokens: start from a chat model, a run of python -m tinylm.sft "
                        "(--base)") from error


class ChatTask(PostTrainingTask):
    """Problems answered by a chat model's reply after `system_prompt` and the user's turn."""

    plain_prompt: ClassVar[str] = "{instruction}\n"  # the base's prompt in plain text: a story follows its title
    plain_answer_prefix: ClassVar[str] = ""  # what stands between that prompt and the answer
    plain_ends_at_blank_line: ClassVar[bool] = False  # whether a blank line ends a plain reply as <|endoftext|> does

    def __init__(self, profile: str, data: str | None = None, system_prompt: str | None = None):
        super().__init__(data)
        self.profile, self.system_prompt = profile, system_prompt or DEFAULT_SYSTEM_PROMPT

    # -- what SFT trains on ----------------------------------------------------------------------------------------
    def train_records(self) -> list[dict]:
        """The conversations SFT trains on, as records (tinylm.data.instruct)."""
        return [p.record() for p in self.train_problems()]

    def train_problems(self) -> list:
        """The training problems: what DPO samples on-policy pairs from and GRPO's rollouts draw."""
        raise NotImplementedError

    def sample(self, rng):
        return rng.choice(self.train_problems())

    def pair_records(self) -> dict[str, list[dict]] | None:
        """The task's own preference records ({instruction, chosen, rejected}) per split, for DPO; None: DPO makes
        pairs on-policy with the task's check (tinylm.posttrain.on_policy)."""
        return None

    def source(self) -> str:
        """Where the records come from, as the start of a run says it: `read_from`, where the task read a data set."""
        return self.read_from

    def pretraining_text(self, tokenizer):
        """Token windows of pretraining text that SFT mixes in at the recipe's pretraining_share (None: none)."""
        return None

    def vocabulary_texts(self) -> list[str]:
        """Every text the chat template will encode for this task's training records: what a trimmed base vocabulary
        must cover. An error where no record can become a conversation."""
        texts = [self.system_prompt, "\n", *(f"{role}\n" for role in ROLES), self.plain_prompt.format(instruction="")]
        usable = 0
        for record in self.train_records():
            try:
                texts += [m["content"] for m in to_messages(record, self.system_prompt)]
                usable += 1
            except ValueError:  # a record the rules skip adds nothing
                continue
        if not usable:
            raise InstructDataError(f"{self.source()} leaves no usable conversation for training: every record is "
                                    "malformed or has an empty answer (records need instruction and output, or "
                                    "messages)")
        return texts

    # -- the policy's view ---------------------------------------------------------------------------------------
    def messages(self, problem) -> list[dict]:
        """The conversation of a problem, the reference answer last."""
        return to_messages(problem.record(), self.system_prompt)

    def prompt_ids(self, tokenizer, problem) -> list[int]:
        return chat_template(tokenizer).render_prompt(self.messages(problem)[:-1])

    def generation(self, tokenizer) -> dict:
        template = chat_template(tokenizer)
        return {"stop_tokens": template.stop_tokens, "vocab_limit": text_vocab_limit(tokenizer),
                "excluded_tokens": template.not_text}

    def _ended(self, tokenizer, completions: list[list[int]]) -> list[bool]:
        stops = set(self.generation(tokenizer)["stop_tokens"])
        return [bool(ids) and ids[-1] in stops for ids in completions]

    def reply_texts(self, tokenizer, completions: list[list[int]]) -> list[str]:
        ended = self._ended(tokenizer, completions)
        return [tokenizer.decode(ids[:-1] if stop else ids).strip() for ids, stop in zip(completions, ended)]

    def score_completions(self, tokenizer, problems: Sequence, completions: list[list[int]]) -> list[Score]:
        return self.score_replies(problems, self.reply_texts(tokenizer, completions),
                                  self._ended(tokenizer, completions))

    def score_replies(self, problems: Sequence, texts: list[str], ended: list[bool]) -> list[Score]:
        """The task's check of each reply text; `ended`: whether the reply ended (a stop token within the cap)."""
        raise NotImplementedError

    def answers(self, tokenizer, problems: Sequence, block_size: int) -> list[RenderedChat]:
        return build_examples([p.record() for p in problems], chat_template(tokenizer), block_size,
                              self.system_prompt).rendered

    def check_start(self, model, tokenizer, where: str, method: str, recipe) -> None:
        if method != "sft":  # SFT adds the chat tokens; DPO and GRPO start from a chat model
            chat_template(tokenizer)

    def plain(self) -> PostTrainingTask:
        return PlainPrompts(self)


class PlainPrompts(PostTrainingTask):
    """A chat task asked of a base model in plain text (`ChatTask.plain_prompt`), scored by the task's own check."""

    def __init__(self, task: ChatTask):
        self.task, self.name, self.reply_tokens = task, f"{task.name} (in plain text)", task.reply_tokens

    def prompt_ids(self, tokenizer, problem) -> list[int]:
        return tokenizer.encode(self.task.plain_prompt.format(instruction=problem.prompt))

    def generation(self, tokenizer) -> dict:
        return {"stop_tokens": (tokenizer.eot_token,), "vocab_limit": text_vocab_limit(tokenizer)}

    def _texts(self, tokenizer, completions) -> tuple[list[str], list[bool]]:
        texts, ended = [], []
        for ids in completions:
            stop = bool(ids) and ids[-1] == tokenizer.eot_token
            text = tokenizer.decode(ids[:-1] if stop else ids)
            if self.task.plain_ends_at_blank_line and "\n\n" in text:
                text, stop = text.split("\n\n")[0], True
            texts.append(text.strip())
            ended.append(stop)
        return texts, ended

    def reply_texts(self, tokenizer, completions: list[list[int]]) -> list[str]:
        return self._texts(tokenizer, completions)[0]

    def score_completions(self, tokenizer, problems: Sequence, completions: list[list[int]]) -> list[Score]:
        return self.task.score_replies(problems, *self._texts(tokenizer, completions))

    def answers(self, tokenizer, problems: Sequence, block_size: int) -> list[RenderedChat]:
        """The plain prompt, the answer and <|endoftext|>: the answer loss counts the answer and <|endoftext|>, as the
        chat format counts the answer and <|im_end|> (compare per token: the counts differ a little)."""
        rendered = []
        for problem in problems:
            prompt = self.prompt_ids(tokenizer, problem)
            answer = tokenizer.encode(self.task.plain_answer_prefix + self.task.messages(problem)[-1]["content"])
            answer += [tokenizer.eot_token]
            if len(prompt) + len(answer) <= block_size + 1:
                rendered.append(RenderedChat(prompt + answer, [False] * len(prompt) + [True] * len(answer)))
        return rendered

    def describe(self, problem) -> str:
        return self.task.describe(problem)
