"""OpenAI's API, the part that clients use to talk to a local model: /v1/models, /v1/completions and
/v1/chat/completions (https://platform.openai.com/docs/api-reference).

With it the `openai` Python client, chat front-ends and lm-evaluation-harness's `local-completions` model work
against a tinylm checkpoint. The harness scores a multiple-choice answer without generating: it sends the question
and the answer as one prompt with `echo` and `logprobs`, and reads back each prompt token's log-probability, which
is why those are computed here exactly as tinylm.eval.scoring computes them (one forward, log-softmax over the
tokenizer's vocabulary). Completions work for any model, a base model too; chat needs one fine-tuned with chat tokens.
This module checks the requests and builds the responses; tinylm.serve.server routes them.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from starlette.exceptions import HTTPException

from ..errors import InputError
from ..eval.loss import target_losses
from ..runtime import model_device

MAX_LOGPROBS = 5  # OpenAI's limit on top alternatives per token
MAX_STOPS = 4
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


class RequestError(InputError):
    """A request this API refuses, with a message that says what to send instead (answered as a 400)."""


@dataclass(frozen=True)
class RequestSettings:
    """What a completion request asks of generation, checked: its length, sampler and stop strings."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None


def _number(body: dict, name: str, default, low: float, high: float, kind=float):
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and int(value) != value):
        raise RequestError(f"'{name}' must be {'an integer' if kind is int else 'a number'}, got {value!r:.40}")
    if not low <= value <= high:
        raise RequestError(f"'{name}' must be between {low:g} and {high:g}, got {value}")
    return kind(value)


def request_settings(body: dict, default_max_tokens: int, max_tokens_limit: int) -> RequestSettings:
    """The generation settings of a request, checked (OpenAI's ranges; max_tokens up to the context)."""
    stop = body.get("stop")
    stop = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stop) > MAX_STOPS or not all(isinstance(s, str) and s for s in stop):
        raise RequestError(f"'stop' must be a non-empty string or a list of at most {MAX_STOPS} of them")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", default_max_tokens, 0, max_tokens_limit, int)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(f"'seed' must be an integer, got {seed!r:.40}")
    if body.get("n", 1) != 1:
        raise RequestError("'n' must be 1: this server makes one completion per prompt")
    return RequestSettings(max_tokens, _number(body, "temperature", 1.0, 0.0, 2.0),
                           _number(body, "top_p", 1.0, 1e-9, 1.0), stop, seed)


def prompts_of(body: dict, tokenizer) -> list[list[int]]:
    """The prompts of a completion request as token ids: a string, a list of strings, a list of token ids, or a
    list of such lists (the harness sends token ids, in batches)."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompt = [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        prompt = [prompt]
    if not isinstance(prompt, list) or not prompt:
        raise RequestError("'prompt' must be a string, a list of strings, or token ids")
    ids = []
    for item in prompt:
        if isinstance(item, str):
            ids.append(tokenizer.encode(item))
        elif isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            if not all(0 <= t < tokenizer.vocab_size for t in item):
                raise RequestError(f"a token id is outside this model's vocabulary of {tokenizer.vocab_size:,}")
            ids.append(list(item))
        else:
            raise RequestError("each prompt must be a non-empty string or a non-empty list of token ids")
    if any(not row for row in ids):
        raise RequestError("a prompt is empty: send at least one token")
    return ids


def logprobs_count(body: dict) -> int | None:
    value = body.get("logprobs")
    if value is None or value is False:
        return None
    return _number(body, "logprobs", 0, 0, MAX_LOGPROBS, int)


@torch.no_grad()
def token_logprobs(model, tokenizer, ids: list[int], top: int) -> tuple[list[float | None], list[dict | None]]:
    """Each token's log-probability given those before it (None for the first, which has no context): minus its loss
    as every scorer in tinylm counts it (`target_losses`: a trimmed vocabulary's <unk> costs its `unk_penalty` more),
    so a client scoring through this endpoint gets `eval`'s figures; and the `top` likeliest tokens at each position
    as {text: log-probability} (None for the first)."""
    x = torch.tensor([ids[:-1]], device=model_device(model))
    logits = model(x)[0][0, :, : tokenizer.vocab_size].float()  # (T - 1, vocab)
    targets = torch.tensor(ids[1:], device=logits.device)
    chosen = (-target_losses(logits, targets, tokenizer)).tolist()
    logp = F.log_softmax(logits, dim=-1)
    tops: list[dict | None] = [None]
    if top:
        values, indices = logp.topk(top, dim=-1)
        for row_values, row_indices in zip(values.tolist(), indices.tolist()):
            tops.append({tokenizer.decode([i]): v for i, v in zip(row_indices, row_values)})
    else:
        tops += [None] * len(chosen)
    return [None, *chosen], tops


def logprobs_block(model, tokenizer, ids: list[int], top: int, first: int) -> dict[str, Any]:
    """OpenAI's `logprobs` object for ids[first:] (the prompt's too with echo): tokens, their log-probabilities,
    the top alternatives and each token's character offset in the text."""
    chosen, tops = token_logprobs(model, tokenizer, ids, top)
    tokens = [tokenizer.decode([i]) for i in ids]
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return {"tokens": tokens[first:], "token_logprobs": chosen[first:],
            "top_logprobs": tops[first:] if top else None, "text_offset": offsets[first:]}


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def with_default_system(messages, tokenizer):
    """The messages as the model's own chat template renders them: an imported model whose template writes a system
    prompt where a conversation has none (SmolLM2's) gets it here too."""
    system = getattr(tokenizer, "system_prompt", None)
    if system and isinstance(messages, list) and messages and isinstance(messages[0], dict) and \
            messages[0].get("role") != "system":
        return [{"role": "system", "content": system}, *messages]
    return messages


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_response(model_name: str, choices: list[dict], prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": completion_id("cmpl"), "object": "text_completion", "created": int(time.time()),
            "model": model_name, "choices": choices, "usage": usage(prompt_tokens, completion_tokens)}


def chat_response(model_name: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": completion_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": model_name, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                              "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chat_chunk(chunk_id: str, model_name: str, delta: dict, finish_reason: str | None) -> dict:
    return {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def finish_reason(stop_reason: str | None) -> str:
    """OpenAI's name for why a text ended: "length" at the token limit, else "stop"."""
    return "length" if stop_reason == "max_new_tokens" else "stop"


def error_body(message: str, kind: str = "invalid_request_error") -> dict:
    """OpenAI's error object, which its client raises with the message."""
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class OpenAIRoutes:
    """The /v1 routes of a ChatApp (tinylm.serve.server), which reads and limits the requests and counts the
    generation slots; `model` and `tokenizer` answer completions, `app.session` (None for a base model) chat."""

    def __init__(self, app, model, tokenizer, name: str):
        self.app, self.model, self.tokenizer, self.name = app, model, tokenizer, name
        self.block_size = model.config.block_size

    def routes(self) -> list:
        from starlette.routing import Route

        return [Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"])]

    async def models(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"object": "list", "data": [{"id": self.name, "object": "model", "created": 0,
                                                         "owned_by": "tinylm"}]})

    async def completions(self, request):
        """POST /v1/completions: the prompt's continuation, with each token's log-probability on request
        (`logprobs`, and the prompt's too with `echo`)."""
        from starlette.responses import JSONResponse

        body = await self.app.read_json(request)
        try:
            if body.get("stream"):
                raise RequestError("'stream' is not supported on /v1/completions; /v1/chat/completions streams")
            prompts = prompts_of(body, self.tokenizer)
            settings = request_settings(body, DEFAULT_MAX_TOKENS, self.block_size - 1)
            top, echo = logprobs_count(body), bool(body.get("echo", False))
            for ids in prompts:
                self.check_fits(len(ids), settings.max_tokens)
        except InputError as error:
            raise HTTPException(400, str(error)) from None
        choices = await self.app.generate(lambda: [self.complete(ids, settings, top, echo) for ids in prompts])
        for index, choice in enumerate(choices):
            choice["index"] = index
        return JSONResponse(completion_response(self.name, choices, sum(map(len, prompts)),
                                                sum(c.pop("generated") for c in choices)))

    def check_fits(self, prompt_tokens: int, max_tokens: int) -> None:
        if prompt_tokens + max_tokens > self.block_size:
            raise RequestError(f"the prompt has {prompt_tokens:,} tokens and max_tokens is {max_tokens:,}, but the "
                               f"model's context is {self.block_size:,} tokens: shorten the prompt or lower max_tokens")

    def complete(self, ids: list[int], settings: RequestSettings, top: int | None, echo: bool) -> dict:
        from ..generate.stream import stream

        text, kept, reason = "", [], "max_new_tokens"
        if settings.max_tokens:
            unk = getattr(self.tokenizer, "unk_id", None)  # a trimmed vocabulary's <unk> is no text: never drawn
            pieces = stream(self.model, self.tokenizer, ids, settings.max_tokens, stop=settings.stop,
                            temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed,
                            excluded_tokens=() if unk is None else (unk,))
            text = "".join(pieces)
            reason = pieces.stop_reason
            kept = list(pieces.new_ids)  # the tokens whose text was returned: a stop string cuts inside them
            while kept and len(self.tokenizer.decode(kept)) > len(text):
                kept.pop()
        prompt_text = self.tokenizer.decode(ids)
        choice = {"text": prompt_text + text if echo else text, "finish_reason": finish_reason(reason),
                  "logprobs": None, "generated": len(kept)}
        if top is not None:
            choice["logprobs"] = logprobs_block(self.model, self.tokenizer, ids + kept, top, 0 if echo else len(ids))
        return choice

    async def chat_completions(self, request):
        """POST /v1/chat/completions: the assistant's reply to `messages` through the chat template, whole or, with
        `stream`, as server-sent chunks ending with `data: [DONE]`."""
        import json

        from starlette.responses import JSONResponse

        from ..tokenizers.chat_template import ChatFormatError
        from .reply import Reply

        session = self.app.session
        if session is None:
            raise HTTPException(400, "this model has no chat tokens, so it was not fine-tuned for chat: use "
                                       "/v1/completions, or serve a model fine-tuned with python -m tinylm.sft")
        body = await self.app.read_json(request)
        try:
            ids = session.template.render_prompt(with_default_system(body.get("messages"), session.template.tokenizer))
            default = min(session.max_new_tokens, self.block_size - len(ids))
            settings = request_settings(body, max(default, 1), self.block_size - 1)
            self.check_fits(len(ids), settings.max_tokens)
        except (InputError, ChatFormatError) as error:
            raise HTTPException(400, str(error)) from None
        pieces = session.reply_stream(ids, settings.max_tokens, temperature=settings.temperature,
                                      top_p=settings.top_p, seed=settings.seed, stop=settings.stop)
        if not body.get("stream"):
            text = await self.app.generate(lambda: "".join(pieces))
            return JSONResponse(chat_response(self.name, text, finish_reason(pieces.stop_reason), len(ids),
                                              len(pieces.new_ids)))
        chunk_id = completion_id("chatcmpl")

        async def chunks():
            import anyio

            yield f"data: {json.dumps(chat_chunk(chunk_id, self.name, {'role': 'assistant', 'content': ''}, None))}\n\n"
            iterator = iter(pieces)
            while (piece := await anyio.to_thread.run_sync(next, iterator, None)) is not None:
                yield f"data: {json.dumps(chat_chunk(chunk_id, self.name, {'content': piece}, None))}\n\n"
            done = chat_chunk(chunk_id, self.name, {}, finish_reason(pieces.stop_reason))
            yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n"

        return Reply(chunks(), self.app.take_slot(pieces.close))
