"""OpenAI's API, the part that clients use to talk to a local model: /v1/models, /v1/completions and
/v1/chat/completions (https://platform.openai.com/docs/api-reference), and vLLM's /tokenize, /detokenize and
/tokenizer_info, through which lm-evaluation-harness's `local-completions` uses the model's own tokenizer.

The harness scores a multiple-choice answer without generating: it sends the question and the answer as one prompt
with `echo` and `logprobs`, and reads back each prompt token's log-probability. So a prompt is read as `eval harness`
reads a row, and the two give the same figures item by item: after the tokenizer's end-of-text token (a document's
start), each token costing what `target_losses` says, a prompt longer than the context scored in windows from its
end. A request may leave out "model"; one that names another is refused with OpenAI's 404 `model_not_found`.
Completions work for any model, chat needs one fine-tuned with chat tokens. tinylm.serve.server routes the requests.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import anyio
import torch
import torch.nn.functional as F
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import InputError, TinyLMError
from ..eval.loss import target_losses
from ..eval.scoring import start_ids
from ..generate.sampling import Sampling
from ..runtime import model_device
from ..tokenizers.chat_template import ChatFormatError
from .reply import Reply

MAX_LOGPROBS = 5  # OpenAI's limit on top alternatives per token
MAX_STOPS = 4
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


class RequestError(InputError):
    """A request this API refuses, with a message that says what to send instead (answered as a 400)."""


@dataclass(frozen=True)
class RequestSettings:
    """What a completion request asks of generation, checked: its length, sampler and stop strings."""

    max_tokens: int
    sampling: Sampling  # its temperature, top_p and seed
    stop: tuple[str, ...]


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
    return RequestSettings(max_tokens, Sampling(temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
                                                top_p=_number(body, "top_p", 1.0, 1e-9, 1.0), seed=seed), stop)


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


def as_document(tokenizer, ids: list[int]) -> list[int]:
    """A prompt as the model saw documents in training, and as `eval harness` scores a row: after the end-of-text
    token (start_ids), unless it starts with one."""
    start = start_ids(tokenizer)
    return list(ids) if ids[: len(start)] == start else start + list(ids)


def stream_usage(body: dict) -> bool:
    """Whether a streamed chat reply ends with a usage chunk (OpenAI's stream_options.include_usage)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not body.get("stream"):
        raise RequestError("'stream_options' is only allowed when 'stream' is true")
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise RequestError('\'stream_options\' must be {"include_usage": true} or {"include_usage": false}')
    return options.get("include_usage", False)


@torch.no_grad()
def token_logprobs(model, tokenizer, ids: list[int], top: int, scored_from: int = 0
                   ) -> tuple[list[float | None], list[dict | None]]:
    """The log-probability of each of ids[scored_from:] given those before it, read as a document (as_document; None
    for a first token that has nothing before it): minus its loss as every scorer in tinylm counts it
    (`target_losses`: a trimmed vocabulary's <unk> costs its `unk_penalty` more), so a client scoring through this
    endpoint gets `eval`'s figures; and the `top` likeliest tokens at each position as {text: log-probability}.
    A text longer than the context is scored in windows from its end, each seeing the context's worth of tokens
    before the window's end, as `eval harness` scores an answer after a long question."""
    row = as_document(tokenizer, ids)
    first = len(row) - len(ids) + scored_from  # the first scored token's place in the row
    block = model.config.block_size
    chosen: list[float | None] = [None] if first == 0 else []
    tops: list[dict | None] = [None] if first == 0 else []
    for end in reversed(range(len(row), max(first, 1), -block)):  # the windows, first to last
        begin, inputs = max(first, 1, end - block), row[max(0, end - 1 - block): end - 1]
        logits = model(torch.tensor([inputs], device=model_device(model)))[0][0, begin - end:, : tokenizer.vocab_size]
        logits = logits.float()  # position t predicts token t + 1
        chosen += (-target_losses(logits, torch.tensor(row[begin:end], device=logits.device), tokenizer)).tolist()
        if top:
            values, indices = F.log_softmax(logits, dim=-1).topk(top, dim=-1)
            tops += [{tokenizer.decode([i]): v for i, v in zip(row_indices, row_values)}
                     for row_values, row_indices in zip(values.tolist(), indices.tolist())]
        else:
            tops += [None] * (end - begin)
    return chosen, tops


def logprobs_block(model, tokenizer, ids: list[int], generated: list[int], top: int, echo: bool) -> dict[str, Any]:
    """OpenAI's `logprobs` object for the generated tokens (the prompt's too with echo): tokens, their
    log-probabilities, the top alternatives and each token's character offset in the text. The prompt's tokens are
    scored up to the prompt's end, as `eval harness` scores a row; the generated ones after all of it."""
    prompt = token_logprobs(model, tokenizer, ids, top) if echo else ([], [])
    new = token_logprobs(model, tokenizer, ids + generated, top, len(ids)) if generated else ([], [])
    tokens = [tokenizer.decode([i]) for i in ids + generated]
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    first = 0 if echo else len(ids)
    return {"tokens": tokens[first:], "token_logprobs": prompt[0] + new[0],
            "top_logprobs": prompt[1] + new[1] if top else None, "text_offset": offsets[first:]}


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


def server_sent(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


def finish_reason(stop_reason: str | None) -> str:
    """OpenAI's name for why a text ended: "length" at the token limit, else "stop"."""
    return "length" if stop_reason == "max_new_tokens" else "stop"


def error_body(message: str, code: str | None = None) -> dict:
    """OpenAI's error object, which its client raises with the message."""
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


class APIError(TinyLMError, HTTPException):
    """A refusal answered in OpenAI's error object with its `code` (e.g. model_not_found)."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(status, message)
        self.code = code


class OpenAIRoutes:
    """The /v1 routes of a ChatApp (tinylm.serve.server), which reads and limits the requests and counts the
    generation slots; `model` and `tokenizer` answer completions, `app.session` (None for a base model) chat."""

    def __init__(self, app, model, tokenizer, name: str):
        self.app, self.model, self.tokenizer, self.name = app, model, tokenizer, name
        self.block_size = model.config.block_size

    def routes(self) -> list:
        return [Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/tokenizer_info", self.tokenizer_info, methods=["GET"]),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/detokenize", self.detokenize, methods=["POST"])]

    async def models(self, request):
        return JSONResponse({"object": "list", "data": [{"id": self.name, "object": "model", "created": 0,
                                                         "owned_by": "tinylm", "max_model_len": self.block_size}]})

    def check_model(self, body: dict) -> None:
        """The one model served answers a request that names it or names none (as vLLM's server does); another
        name is refused as OpenAI refuses it."""
        asked = body.get("model")
        if asked is not None and asked != self.name:
            raise APIError(404, f"The model {str(asked)[:80]!r} does not exist: this server serves {self.name!r} "
                                "(GET /v1/models); name it, or leave out 'model'", "model_not_found")

    async def completions(self, request):
        """POST /v1/completions: the prompt's continuation, with each token's log-probability on request
        (`logprobs`, and the prompt's too with `echo`). A prompt longer than the context is kept from its end for
        generating, as the harness's own models and llama.cpp's server keep it, and scored whole."""
        body = await self.app.read_json(request)
        self.check_model(body)
        try:
            if body.get("stream"):
                raise RequestError("'stream' is not supported on /v1/completions; /v1/chat/completions streams")
            prompts = prompts_of(body, self.tokenizer)
            settings = request_settings(body, DEFAULT_MAX_TOKENS, self.block_size - 1)
            top, echo = logprobs_count(body), bool(body.get("echo", False))
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
        """One choice. Its generated tokens are those whose text it returns, and the end-of-text token when the
        text ended there: OpenAI's and vLLM's echo of a prompt and max_tokens=1 always holds one more token, which
        is how the harness finds the prompt's end."""
        from ..generate.stream import stream

        text, generated, reason = "", [], "max_new_tokens"
        if settings.max_tokens:
            unk = getattr(self.tokenizer, "unk_id", None)  # a trimmed vocabulary's <unk> is no text: never drawn
            context = as_document(self.tokenizer, ids)[settings.max_tokens - self.block_size:]
            pieces = stream(self.model, self.tokenizer, context, settings.max_tokens, stop=settings.stop,
                            sampling=settings.sampling, excluded_tokens=() if unk is None else (unk,))
            text = "".join(pieces)
            reason = pieces.stop_reason
            generated = list(pieces.new_ids)  # the tokens whose text was returned: a stop string cuts inside them
            while generated and len(self.tokenizer.decode(generated)) > len(text):
                generated.pop()
            if reason == "stop_token":
                generated.append(self.tokenizer.eot_token)
        prompt_text = self.tokenizer.decode(ids)
        choice = {"text": prompt_text + text if echo else text, "finish_reason": finish_reason(reason),
                  "logprobs": None, "generated": len(generated)}
        if top is not None:
            choice["logprobs"] = logprobs_block(self.model, self.tokenizer, ids, generated, top, echo)
        return choice

    async def chat_completions(self, request):
        """POST /v1/chat/completions: the assistant's reply to `messages` through the chat template, whole or, with
        `stream`, as server-sent chunks ending with `data: [DONE]` (with stream_options.include_usage, a last chunk
        before it holds the usage, its choices empty, as OpenAI sends it)."""
        session = self.app.session
        if session is None:
            raise HTTPException(400, "this model has no chat tokens, so it was not fine-tuned for chat: use "
                                     "/v1/completions, or serve a model fine-tuned with python -m tinylm.sft")
        body = await self.app.read_json(request)
        self.check_model(body)
        try:
            ids = session.template.render_prompt(with_default_system(body.get("messages"), session.template.tokenizer))
            default = min(session.max_new_tokens, self.block_size - len(ids))
            settings = request_settings(body, max(default, 1), self.block_size - 1)
            self.check_fits(len(ids), settings.max_tokens)
            include_usage = stream_usage(body)
        except (InputError, ChatFormatError) as error:
            raise HTTPException(400, str(error)) from None
        # the request's temperature, top_p and seed; the server's top-k and repetition penalty
        sampling = dataclasses.replace(settings.sampling, top_k=session.sampling.top_k,
                                       repetition_penalty=session.sampling.repetition_penalty)
        pieces = session.reply_to_prompt(ids, settings.max_tokens, sampling, settings.stop)
        if not body.get("stream"):
            text = await self.app.generate(lambda: "".join(pieces))
            return JSONResponse(chat_response(self.name, text, finish_reason(pieces.stop_reason), len(ids),
                                              len(pieces.new_ids)))
        chunk_id = completion_id("chatcmpl")

        def event(delta: dict, finish: str | None = None) -> str:
            chunk = chat_chunk(chunk_id, self.name, delta, finish)
            return server_sent(chunk | {"usage": None} if include_usage else chunk)  # null until the last chunk

        async def chunks():
            yield event({"role": "assistant", "content": ""})
            iterator = iter(pieces)
            while (piece := await anyio.to_thread.run_sync(next, iterator, None)) is not None:
                yield event({"content": piece})
            yield event({}, finish_reason(pieces.stop_reason))
            if include_usage:
                last = chat_chunk(chunk_id, self.name, {}, None)
                yield server_sent(last | {"choices": [], "usage": usage(len(ids), len(pieces.new_ids))})
            yield "data: [DONE]\n\n"

        return Reply(chunks(), self.app.take_slot(pieces.close))

    async def tokenizer_info(self, request):
        """GET /tokenizer_info, as vLLM answers it: the end-of-text token's text, which the harness reads."""
        eot = getattr(self.tokenizer, "eot_token", None)
        eos = self.tokenizer.decode([eot]) if eot is not None else None
        return JSONResponse({"eos_token": eos or None, "bos_token": None, "pad_token": None,
                             "model_max_length": self.block_size, "tokenizer_class": type(self.tokenizer).__name__})

    async def tokenize(self, request):
        """POST /tokenize {"prompt": text} -> {"tokens": ids}, as vLLM answers it: the end-of-text token's text
        reads as that token, as a Hugging Face tokenizer reads its special tokens."""
        text = (await self.app.read_json(request)).get("prompt")
        if not isinstance(text, str):
            raise HTTPException(400, 'send {"prompt": "text"}')
        eot = getattr(self.tokenizer, "eot_token", None)
        mark = self.tokenizer.decode([eot]) if eot is not None else ""
        parts = text.split(mark) if mark else [text]
        tokens = [*self.tokenizer.encode(parts[0])]
        for part in parts[1:]:
            tokens += [eot, *self.tokenizer.encode(part)]
        return JSONResponse({"tokens": tokens, "count": len(tokens), "max_model_len": self.block_size})

    async def detokenize(self, request):
        """POST /detokenize {"tokens": ids} -> {"prompt": text}, as vLLM answers it."""
        tokens = (await self.app.read_json(request)).get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and 0 <= t < self.tokenizer.vocab_size
                                                   for t in tokens):
            raise HTTPException(400, 'send {"tokens": [ids in the vocabulary]}')
        return JSONResponse({"prompt": self.tokenizer.decode(tokens)})
