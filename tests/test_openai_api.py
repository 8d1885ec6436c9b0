"""The server's OpenAI API, through OpenAI's own Python client: a completion of a base model with its
log-probabilities equal to tinylm's own scoring, the harness's echo request (a prompt longer than the context too), a
chat reply whole and streamed equal to the chat session's with its usage on request, the model name rule, clear 4xx
answers in OpenAI's error object, and vLLM's tokenizer endpoints."""

import json

import openai
import pytest

from tests.chat_fixtures import serving, tiny_chat_model
from tinylm.eval.scoring import score_rows, start_ids
from tinylm.serve.server import ChatServer, ServeOptions
from tinylm.serve.session import ChatSession


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return tiny_chat_model(block_size=64)


@pytest.fixture(scope="module")
def chat_server(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    session = ChatSession(model, tokenizer, max_new_tokens=12, temperature=0)
    with serving(ChatServer(ServeOptions(port=0, quiet=True), session, name="tiny")) as server:
        yield server


@pytest.fixture(scope="module")
def base_server(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with serving(ChatServer(ServeOptions(port=0, quiet=True), None, model=model, tokenizer=tokenizer,
                            name="tiny-base")) as server:
        yield server


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_served_model(base_server):
    (served,) = client(base_server).models.list()
    assert served.id == "tiny-base" and served.max_model_len == 64


def test_a_completion_of_a_base_model_with_logprobs_equals_tinylms_scoring(base_server, model_and_tokenizer):
    """The prompt is read after the end-of-text token, as `eval` reads a text: its first token has a log-probability
    too. A text that ends at the end-of-text token lists it last, as OpenAI's does."""
    model, tokenizer = model_and_tokenizer
    prompt = "Hello! What is the capital of France?"
    reply = client(base_server).completions.create(model="tiny-base", prompt=prompt, max_tokens=5, temperature=0,
                                                    logprobs=2, echo=True)
    choice = reply.choices[0]
    ids, start = tokenizer.encode(prompt), start_ids(tokenizer)
    assert start == [tokenizer.eot_token]
    assert choice.text.startswith(prompt) and reply.usage.prompt_tokens == len(ids)
    generated = reply.usage.completion_tokens
    assert choice.finish_reason in ("length", "stop") and generated <= 5
    lp = choice.logprobs
    assert len(lp.tokens) == len(ids) + generated and lp.text_offset[1] == len(lp.tokens[0])
    ended = tokenizer.decode(start) if choice.finish_reason == "stop" else ""
    assert "".join(lp.tokens) == choice.text + ended
    # each prompt token's log-probability, as tinylm.eval.scoring computes the loss of a continuation
    for t in range(len(ids)):
        (loss, count, greedy), = score_rows(model, tokenizer, [(start + ids[:t], ids[t:t + 1])], "cpu")
        assert lp.token_logprobs[t] == pytest.approx(-loss, abs=1e-4) and len(lp.top_logprobs[t]) == 2
        assert greedy == (lp.tokens[t] == max(lp.top_logprobs[t], key=lp.top_logprobs[t].get))
    for t in range(len(ids), len(lp.tokens)):  # greedy decoding: every generated token was the likeliest
        assert lp.token_logprobs[t] == max(lp.top_logprobs[t].values())


def test_the_harness_request_scores_a_continuation_without_generating_it(base_server, model_and_tokenizer):
    """lm-evaluation-harness's local-completions sends token ids with echo, logprobs=1 and max_tokens=1, and reads
    token_logprobs[context:-1]: the continuation's log-likelihood, as `eval` scores it after the end-of-text token.
    A row longer than the 64-token context is scored as `eval harness` scores it: the continuation from the 64
    tokens before its end."""
    model, tokenizer = model_and_tokenizer
    start = start_ids(tokenizer)
    continuation = tokenizer.encode(" Red is a color.")
    for context in (tokenizer.encode("Name a color."), tokenizer.encode(" Name a color." * 20)):
        reply = client(base_server).completions.create(model="tiny-base", prompt=[context + continuation],
                                                        echo=True, logprobs=1, max_tokens=1, temperature=0)
        logprobs = reply.choices[0].logprobs
        assert len(logprobs.tokens) == len(context + continuation) + 1  # one generated token, however it ended
        read = logprobs.token_logprobs[len(context):-1]
        row = (start + context + continuation)[-(64 + 1):]  # what the model sees: the last 64 positions
        (loss, count, greedy), = score_rows(model, tokenizer, [(row[:-len(continuation)], continuation)], "cpu")
        assert len(read) == count == len(continuation) and sum(read) == pytest.approx(-loss, abs=1e-4)
        tops = logprobs.top_logprobs[len(context):-1]
        assert greedy == all(value == max(top.values()) for value, top in zip(read, tops))


def test_a_chat_reply_whole_and_streamed_equals_the_chat_session(chat_server, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    messages = [{"role": "user", "content": "Hello!"}]
    session = ChatSession(model, tokenizer, system_prompt=None, max_new_tokens=12, temperature=0)
    expected = "".join(session.reply("Hello!"))
    api = client(chat_server)
    whole = api.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=12)
    assert whole.choices[0].message.content == expected and whole.choices[0].message.role == "assistant"
    pieces = [chunk.choices[0].delta.content or "" for chunk in
              api.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=12,
                                          stream=True)]
    assert "".join(pieces) == expected and len(pieces) > 2


def test_a_streamed_reply_ends_with_its_usage_when_asked(chat_server):
    """OpenAI's stream_options.include_usage: one more chunk before [DONE], its choices empty, its usage the whole
    request's (as the reply sent whole counts it); every chunk before it has usage null."""
    api, messages = client(chat_server), [{"role": "user", "content": "Hello!"}]
    whole = api.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=12)
    chunks = list(api.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=12,
                                              stream=True, stream_options={"include_usage": True}))
    *replies, last = chunks
    assert last.choices == [] and last.usage.model_dump() == whole.usage.model_dump()
    assert all(chunk.usage is None and len(chunk.choices) == 1 for chunk in replies)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in replies) == whole.choices[0].message.content
    plain = list(api.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=12,
                                             stream=True))
    assert len(plain) == len(replies) and all(chunk.usage is None and chunk.choices for chunk in plain)


def test_a_request_names_the_served_model_or_none(chat_server):
    """As vLLM's server: the served id, or no "model" at all; another name is OpenAI's 404 model_not_found."""
    api, messages = client(chat_server), [{"role": "user", "content": "Hi"}]
    assert api.completions.create(model="tiny", prompt="Hi", max_tokens=2).model == "tiny"
    assert api.with_options().completions.create(model=openai.omit, prompt="Hi", max_tokens=2).model == "tiny"
    for call in (lambda: api.completions.create(model="gpt-4o", prompt="Hi", max_tokens=2),
                 lambda: api.chat.completions.create(model="gpt-4o", messages=messages)):
        with pytest.raises(openai.NotFoundError) as raised:
            call()
        assert raised.value.code == "model_not_found" and "serves 'tiny'" in raised.value.message


@pytest.mark.parametrize("call, status, message", [
    (lambda api: api.chat.completions.create(model="tiny-base", messages=[{"role": "user", "content": "Hi"}]), 400,
     "no chat tokens"),
    (lambda api: api.completions.create(model="tiny-base", prompt="Hi", temperature=5), 400, "'temperature' must be"),
    (lambda api: api.completions.create(model="tiny-base", prompt="Hi", logprobs=9), 400, "'logprobs' must be"),
    (lambda api: api.completions.create(model="tiny-base", prompt="Hi", max_tokens=64), 400, "'max_tokens' must be"),
    (lambda api: api.completions.create(model="tiny-base", prompt=[], max_tokens=1), 400, "'prompt' must be")])
def test_bad_requests_get_a_clear_4xx(base_server, call, status, message):
    with pytest.raises(openai.APIStatusError) as raised:
        call(client(base_server))
    assert raised.value.status_code == status and message in raised.value.message
    assert raised.value.type == "invalid_request_error"


@pytest.mark.parametrize("call, message", [
    (lambda api: api.chat.completions.create(model="tiny",
                                             messages=[{"role": "user", "content": "Red is a color. " * 20}]),
     "context is 64 tokens"),
    (lambda api: api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                             stream_options={"include_usage": True}),
     "'stream_options' is only allowed when 'stream' is true")])
def test_bad_chat_requests_get_a_clear_400(chat_server, call, message):
    with pytest.raises(openai.BadRequestError) as raised:
        call(client(chat_server))
    assert message in raised.value.message


def test_a_refusal_before_any_route_is_openais_error_object_under_v1(base_server):
    """A foreign Host (DNS rebinding) is refused before routing: under /v1/ in OpenAI's error object too."""
    import http.client

    for path, read in (("/v1/models", lambda body: body["error"]["message"]), ("/chat", lambda body: body["error"])):
        connection = http.client.HTTPConnection("127.0.0.1", base_server.port, timeout=30)
        connection.request("GET", path, headers={"Host": f"evil.example:{base_server.port}"})
        response = connection.getresponse()
        body = json.loads(response.read())
        assert response.status == 403 and read(body).startswith("the Host header 'evil.example")
    assert body == {"error": body["error"]} and isinstance(body["error"], str)  # the chat page's shape off /v1/


def test_the_tokenizer_endpoints_answer_as_vllms(base_server, model_and_tokenizer):
    """/tokenizer_info, /tokenize and /detokenize, which the harness's local-completions finds and uses as the model's
    tokenizer (tokenizer_backend=remote): the end-of-text token's text reads as that token."""
    import requests

    _, tokenizer = model_and_tokenizer
    root = f"http://127.0.0.1:{base_server.port}"
    info = requests.get(f"{root}/tokenizer_info", timeout=30).json()
    assert info["eos_token"] == "<|endoftext|>" and info["model_max_length"] == 64
    text = "Hello! Red is a color."
    tokens = requests.post(f"{root}/tokenize", json={"prompt": text + info["eos_token"] + text}, timeout=30).json()
    assert tokens["tokens"] == tokenizer.encode(text) + [tokenizer.eot_token] + tokenizer.encode(text)
    back = requests.post(f"{root}/detokenize", json={"tokens": tokenizer.encode(text)}, timeout=30).json()
    assert back == {"prompt": text}


def test_a_base_model_has_no_chat_page_and_says_where_its_api_is(base_server):
    import http.client

    def answer(method: str, path: str, body: str | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", base_server.port, timeout=30)
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())["error"]

    status, message = answer("GET", "/")
    assert status == 404 and "no chat page" in message and "/v1/completions" in message
    status, message = answer("POST", "/chat", json.dumps({"messages": [{"role": "user", "content": "Hi"}]}))
    assert status == 400 and "/v1/completions" in message
    status, message = answer("GET", "/chat.js")
    assert status == 404 and "the chat page is at /" not in message


def test_an_imported_models_default_system_prompt_is_written_as_its_template_writes_it():
    from types import SimpleNamespace

    from tinylm.serve.openai_api import with_default_system

    own = SimpleNamespace(system_prompt="You are SmolLM.")
    asked = [{"role": "user", "content": "Hi"}]
    assert with_default_system(asked, own) == [{"role": "system", "content": "You are SmolLM."}, *asked]
    given = [{"role": "system", "content": "Be brief."}, *asked]
    assert with_default_system(given, own) == given  # a conversation's own system prompt wins
    assert with_default_system(asked, SimpleNamespace()) == asked  # the course's models: as sent
    assert with_default_system("not a list", own) == "not a list"  # the template refuses it in one line
