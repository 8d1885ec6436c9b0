"""The server's OpenAI API, through OpenAI's own Python client: a completion of a base model with its
log-probabilities equal to tinylm's own scoring, the harness's echo request, a chat reply whole and streamed equal
to the chat session's, and clear 4xx answers."""

import json

import openai
import pytest

from tests.chat_fixtures import serving, tiny_chat_model
from tinylm.eval.scoring import score_rows
from tinylm.serve.server import ChatServer
from tinylm.serve.session import ChatSession


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return tiny_chat_model(block_size=64)


@pytest.fixture(scope="module")
def chat_server(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    session = ChatSession(model, tokenizer, max_new_tokens=12, temperature=0)
    with serving(ChatServer(("127.0.0.1", 0), session, quiet=True, name="tiny")) as server:
        yield server


@pytest.fixture(scope="module")
def base_server(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with serving(ChatServer(("127.0.0.1", 0), None, quiet=True, model=model, tokenizer=tokenizer,
                            name="tiny-base")) as server:
        yield server


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_served_model(base_server):
    assert [m.id for m in client(base_server).models.list()] == ["tiny-base"]


def test_a_completion_of_a_base_model_with_logprobs_equals_tinylms_scoring(base_server, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompt = "Hello! What is the capital of France?"
    reply = client(base_server).completions.create(model="tiny-base", prompt=prompt, max_tokens=5, temperature=0,
                                                    logprobs=2, echo=True)
    choice = reply.choices[0]
    ids = tokenizer.encode(prompt)
    assert choice.text.startswith(prompt) and reply.usage.prompt_tokens == len(ids)
    generated = reply.usage.completion_tokens
    assert choice.finish_reason in ("length", "stop") and generated <= 5
    lp = choice.logprobs
    assert len(lp.tokens) == len(ids) + generated and lp.token_logprobs[0] is None
    assert "".join(lp.tokens) == choice.text and lp.text_offset[1] == len(lp.tokens[0])
    # each prompt token's log-probability, as tinylm.eval.scoring computes the loss of a continuation
    for t in range(1, len(ids)):
        (loss, count, greedy), = score_rows(model, tokenizer, [(ids[:t], ids[t:t + 1])], "cpu")
        assert lp.token_logprobs[t] == pytest.approx(-loss, abs=1e-4) and len(lp.top_logprobs[t]) == 2
        assert greedy == (lp.tokens[t] == max(lp.top_logprobs[t], key=lp.top_logprobs[t].get))
    for t in range(len(ids), len(lp.tokens)):  # greedy decoding: every generated token was the likeliest
        assert lp.token_logprobs[t] == pytest.approx(max(lp.top_logprobs[t].values()), abs=1e-6)


def test_the_harness_request_scores_a_continuation_without_generating_it(base_server, model_and_tokenizer):
    """lm-evaluation-harness's local-completions sends token ids with echo, logprobs=1 and max_tokens=1, and reads
    token_logprobs[context:-1]: the continuation's log-likelihood."""
    model, tokenizer = model_and_tokenizer
    context, continuation = tokenizer.encode("Name a color."), tokenizer.encode(" Red is a color.")
    reply = client(base_server).completions.create(model="tiny-base", prompt=[context + continuation], echo=True,
                                                    logprobs=1, max_tokens=1, temperature=0)
    read = reply.choices[0].logprobs.token_logprobs[len(context):-1]
    (loss, count, _), = score_rows(model, tokenizer, [(context, continuation)], "cpu")
    assert len(read) == count == len(continuation) and sum(read) == pytest.approx(-loss, abs=1e-4)


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


@pytest.mark.parametrize("call, status, message", [
    (lambda api: api.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}]), 400,
     "no chat tokens"),
    (lambda api: api.completions.create(model="m", prompt="Hello! What is the capital of France?", max_tokens=60),
     400, "context is 64 tokens"),
    (lambda api: api.completions.create(model="m", prompt="Hi", temperature=5), 400, "'temperature' must be"),
    (lambda api: api.completions.create(model="m", prompt="Hi", logprobs=9), 400, "'logprobs' must be"),
    (lambda api: api.completions.create(model="m", prompt=[], max_tokens=1), 400, "'prompt' must be")])
def test_bad_requests_get_a_clear_4xx(base_server, call, status, message):
    with pytest.raises(openai.APIStatusError) as raised:
        call(client(base_server))
    assert raised.value.status_code == status and message in raised.value.message


def test_the_chat_page_of_a_base_model_points_at_the_api(base_server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", base_server.port, timeout=30)
    connection.request("POST", "/chat", body=json.dumps({"messages": [{"role": "user", "content": "Hi"}]}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 400 and "/v1/completions" in json.loads(response.read())["error"]


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
