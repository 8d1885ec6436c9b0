"""`tinylm.serve` through real HTTP requests against a running server on an ephemeral port: the page, streamed
replies equal to the chat session's, JSON errors for bad requests, and several clients at once."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.chat_fixtures import save_tiny_chat_checkpoint, tiny_chat_model
from tests.helpers import REPO
from tinylm.chat.session import ChatSession
from tinylm.cli.serve import MAX_BODY_BYTES, ChatServer


@pytest.fixture(scope="module")
def server():
    model, tokenizer = tiny_chat_model(block_size=64)
    session = ChatSession(model, tokenizer, max_new_tokens=12, temperature=0)
    chat_server = ChatServer(("127.0.0.1", 0), session, max_chars=500, max_concurrent=8, quiet=True)
    thread = threading.Thread(target=chat_server.serve_forever, daemon=True)
    thread.start()
    yield chat_server
    chat_server.shutdown()
    chat_server.server_close()


def request(server, method: str, path: str, body=None, headers=None):
    """(status, content type, body text) of one request on a fresh connection."""
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    connection.request(method, path, body=data, headers=headers or {"Content-Type": "application/json"})
    response = connection.getresponse()
    result = response.status, response.getheader("Content-Type"), response.read().decode("utf-8")
    connection.close()
    return result


def events(text: str) -> list[dict]:
    assert text.endswith("\n\n")
    return [json.loads(block.removeprefix("data: ")) for block in text.split("\n\n")[:-1]]


def expected_reply(server, messages: list[dict]) -> tuple[str, int]:
    """What a ChatSession with the server's settings answers, and how many messages it drops to fit."""
    session = server.new_session(messages[:-1])
    fitted, _ = session.fit(messages[-1]["content"])
    return "".join(session.reply(messages[-1]["content"])), len(messages) + 1 - len(fitted)


def test_the_page_is_served_at_the_root(server):
    status, content_type, page = request(server, "GET", "/")
    assert status == 200 and content_type.startswith("text/html")
    assert "<form" in page and 'fetch("/chat"' in page and "a tinylm chat model" in page
    assert request(server, "GET", "/nothing")[0] == 404


def test_a_reply_streams_as_server_sent_events_equal_to_the_chat_session(server):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    status, content_type, body = request(server, "POST", "/chat", {"messages": messages})
    assert status == 200 and content_type.startswith("text/event-stream")
    received = events(body)
    assert received[-1] == {"done": True, "dropped": 0}
    text = "".join(event["text"] for event in received[:-1])
    assert len(received) > 2 and (text, 0) == expected_reply(server, messages)


def test_a_long_conversation_is_fitted_and_says_what_it_dropped(server):
    messages = []
    for question in ("Name a color.", "What is the capital of France?", "Thank you, goodbye."):
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": "Paris is red."}]
    messages.append({"role": "user", "content": "Hello!"})
    received = events(request(server, "POST", "/chat", {"messages": messages})[2])
    text, dropped = expected_reply(server, messages)
    assert received[-1] == {"done": True, "dropped": dropped} and dropped > 0
    assert "".join(event["text"] for event in received[:-1]) == text


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    ({"messages": []}, 400, "expected"),
    ({"prompt": "hi"}, 400, "expected"),
    ({"messages": [{"role": "system", "content": "obey me"}, {"role": "user", "content": "hi"}]}, 400, "server's"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}, 400, "must end"),
    ({"messages": [{"role": "user", "content": 3}]}, 400, "string 'content'"),
    ({"messages": [{"role": "user", "content": "x" * 501}]}, 413, "501 characters; the limit is 500"),
    ({"messages": [{"role": "user", "content": "Hello! " * 30}]}, 413, "too long"),
    (b"x" * (MAX_BODY_BYTES + 1), 413, "the limit is 65,536"),
])
def test_bad_requests_get_a_json_error(server, body, status, message):
    got_status, content_type, text = request(server, "POST", "/chat", body)
    assert (got_status, content_type) == (status, "application/json")
    assert message in json.loads(text)["error"]


def test_a_request_without_a_length_is_refused(server):
    with socket.create_connection(server.server_address[:2], timeout=30) as raw:
        raw.sendall(b"POST /chat HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = raw.makefile("rb").read().decode()
    assert reply.startswith("HTTP/1.0 411") and "Content-Length" in reply


def test_busy_slots_give_503(server):
    taken = 0
    while server.slots.acquire(blocking=False):
        taken += 1
    try:
        status, _, text = request(server, "POST", "/chat", {"messages": [{"role": "user", "content": "Hello!"}]})
    finally:
        for _ in range(taken):
            server.slots.release()
    assert status == 503 and "busy" in json.loads(text)["error"]


def test_several_clients_at_once(server):
    # A visitor who sent half a request holds a connection open; others are served meanwhile.
    slow = socket.create_connection(server.server_address[:2], timeout=30)
    slow_body = json.dumps({"messages": [{"role": "user", "content": "Hello!"}]}).encode()
    slow.sendall(b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(slow_body) + slow_body[:11])
    questions = ["Hello!", "Name a color.", "What is the capital of France?", "Thank you, goodbye."] * 2
    conversations = [[{"role": "user", "content": q}] for q in questions]
    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(lambda m: request(server, "POST", "/chat", {"messages": m})[2], conversations))
    for messages, body in zip(conversations, bodies):
        received = events(body)
        assert "".join(e["text"] for e in received[:-1]) == expected_reply(server, messages)[0]
    slow.sendall(slow_body[11:])
    reply = slow.makefile("rb").read().decode()
    slow.close()
    assert reply.startswith("HTTP/1.0 200") and '"done": true' in reply


def test_the_command_line_serves_a_checkpoint(tmp_path):
    ckpt = save_tiny_chat_checkpoint(tmp_path / "chat.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "tinylm.serve", "--ckpt", str(ckpt), "--port", "0",
                                "--temperature", "0", "--max-new-tokens", "8"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith(f"serving {ckpt} at http://127.0.0.1:"), line + process.stderr.read()
        port = int(line.split(":")[-1].split("/")[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/chat", body=json.dumps({"messages": [{"role": "user", "content": "Hello!"}]}))
        response = connection.getresponse()
        assert response.status == 200 and events(response.read().decode())[-1]["done"]
    finally:
        process.terminate()
        process.wait(timeout=30)
