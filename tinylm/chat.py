"""Talking to a chat model: a conversation that fits the context, and a terminal REPL that streams the replies.

    python -m tinylm.chat --ckpt runs/chat-cpu [--system "You are a helpful assistant."] [--max-new-tokens N]
        [--temperature 0.8] [--top-k 40] [--top-p 0.95] [--repetition-penalty 1.1] [--seed 1] [--no-cache]

In the REPL, /reset starts a new conversation, Ctrl-C stops a reply, and /exit (or Ctrl-D) leaves.
--ckpt takes a fine-tuned checkpoint or run folder (python -m tinylm.finetune makes one); the sampler options
are `sample`'s.

`ChatSession` keeps the messages. Every reply is generated after the whole conversation rendered by the chat
template, and stops at <|im_end|>. A model sees at most block_size tokens, and the reply needs room too, so
before each reply the oldest user/assistant exchanges are dropped until the prompt plus `max_new_tokens` fits;
the system prompt always stays. A message that does not fit even alone is refused with the numbers, and the
conversation is left as it was.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from .chat_template import DEFAULT_SYSTEM_PROMPT, ChatFormatError, ChatTemplate, ContextOverflow, chat_token_ids
from .checkpoint import CheckpointError, load_model
from .console import HelpFormatter, examples
from .errors import run_cli
from .generate import stream
from .runtime import resolve_device, resolve_dtype


class ChatSession:
    """A conversation with a chat model. `reply(text)` streams the answer and then adds both turns to `messages`."""

    def __init__(self, model, tokenizer, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                 max_new_tokens: int | None = None, **sampling):
        if chat_token_ids(tokenizer) is None:
            raise ChatFormatError("this model's tokenizer has no chat tokens, so it was not fine-tuned for chat; "
                                  "fine-tune it first: python -m tinylm.finetune --base CHECKPOINT --out DIR")
        self.model, self.template = model, ChatTemplate(tokenizer)
        block_size = model.config.block_size
        self.max_new_tokens = max_new_tokens or min(256, block_size // 2)
        if not 0 < self.max_new_tokens < block_size:
            raise ValueError(f"max_new_tokens must be between 1 and {block_size - 1} (the context is {block_size})")
        self.sampling = sampling
        self.system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        self.messages: list[dict] = list(self.system)
        self.turns = 0

    def reset(self) -> None:
        self.messages = list(self.system)

    def fit(self, user_text: str) -> tuple[list[dict], list[int]]:
        """(messages, prompt ids) for a reply to user_text: the oldest exchanges dropped until it fits."""
        history = self.messages[len(self.system):]
        budget = self.model.config.block_size - self.max_new_tokens
        while True:
            messages = [*self.system, *history, {"role": "user", "content": user_text}]
            ids = self.template.render_prompt(messages)
            if len(ids) <= budget:
                return messages, ids
            if not history:
                raise ContextOverflow(
                    f"this message is too long: with the system prompt it takes {len(ids)} tokens, and a reply of "
                    f"up to {self.max_new_tokens} must fit too, in a context of {self.model.config.block_size}; "
                    "shorten it (or lower --max-new-tokens)")
            history = history[2:]  # one user/assistant exchange, the oldest

    def reply(self, user_text: str) -> Iterator[str]:
        """The reply's text, piece by piece; once it is complete the conversation holds the question and the answer.
        A message too long for the context raises ContextOverflow here, before anything is generated."""
        messages, ids = self.fit(user_text)
        return self.stream_reply(messages, ids)

    def stream_reply(self, messages: list[dict], ids: list[int]) -> Iterator[str]:
        """The reply to `fit`'s (messages, ids), piece by piece; at its end `messages` become the conversation."""
        seed = self.sampling.get("seed")
        options = {**self.sampling, "seed": None if seed is None else seed + self.turns}
        pieces = stream(self.model, self.template.tokenizer, ids, self.max_new_tokens,
                        stop_tokens=self.template.stop_tokens, **options)
        text = ""
        for piece in pieces:
            text += piece
            yield piece
        self.turns += 1
        self.messages = [*messages, {"role": "assistant", "content": text.strip()}]


def add_sampler_options(parser: argparse.ArgumentParser) -> None:
    """The sampler and device options `python -m tinylm.sample` takes, for chat and serve."""
    parser.add_argument("--max-new-tokens", type=int, help="longest reply (default: 256 or half the context)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 means greedy")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens (default: all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="sample among the most likely tokens that make up p")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="above 1 discourages repeated tokens")
    parser.add_argument("--seed", type=int, default=None, help="reply i uses seed + i (default: unseeded)")
    parser.add_argument("--no-cache", action="store_true", help="recompute the whole context at every token (slow)")
    parser.add_argument("--device", help="e.g. cpu, cuda, mps (default: the best available)")
    parser.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16", "float16"],
                        help="the weights' dtype while generating")
    parser.add_argument("--system", default=DEFAULT_SYSTEM_PROMPT, help="the system prompt ('' for none)")


def session_from_args(args: argparse.Namespace) -> ChatSession:
    if args.top_k is not None and args.top_k < 1:
        raise ValueError("--top-k must be at least 1; leave it out to sample from every token")
    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.ckpt, device)
    if tokenizer is None:
        raise CheckpointError(f"{args.ckpt} carries no tokenizer, so its ids cannot be turned into text")
    model.to(resolve_dtype(device, args.dtype))
    return ChatSession(model, tokenizer, args.system, args.max_new_tokens, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
                       use_cache=not args.no_cache)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.chat", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.chat --ckpt runs/chat-cpu",
                        "python -m tinylm.chat --ckpt runs/chat-cpu --temperature 0 --system 'Answer briefly.'"))
    parser.add_argument("--ckpt", required=True, help="fine-tuned checkpoint or run folder (python -m tinylm.finetune)")
    add_sampler_options(parser)
    return parser.parse_args(argv)


def main(argv=None) -> ChatSession:
    args = parse_args(argv)
    session = session_from_args(args)
    print(f"chatting with {args.ckpt} (context {session.model.config.block_size} tokens; "
          "/reset starts over, /exit or Ctrl-D leaves)", flush=True)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            print(flush=True)
            return session
        if text in ("/exit", "/quit"):
            return session
        if text == "/reset":
            session.reset()
            print("(a new conversation)", flush=True)
            continue
        if not text:
            continue
        try:
            pieces = session.reply(text)
            print("bot> ", end="", flush=True)
            for piece in pieces:
                print(piece, end="", flush=True)
            print(flush=True)
        except ContextOverflow as error:
            print(f"(not sent: {error})", flush=True)
        except KeyboardInterrupt:  # Ctrl-C during a reply stops it; the conversation goes on without it
            print("\n(reply stopped; it is not part of the conversation)", flush=True)


def cli(argv=None) -> None:
    """`python -m tinylm.chat`: main(), its anticipated errors one line each (tinylm.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
