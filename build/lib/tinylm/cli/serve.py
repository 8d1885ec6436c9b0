"""Command line: a small web demo where a visitor chats with a fine-tuned model, answers streamed as they are made.

    python -m tinylm.serve --ckpt runs/chat-cpu [--port 8000] [--host 127.0.0.1] [--max-chars 4000]
        [--max-concurrent 4] [sampler options of python -m tinylm.chat]

Standard library only: `http.server.ThreadingHTTPServer` answers each connection in a thread of its own, so
several visitors chat at once (up to --max-concurrent replies are generated together; beyond that a request
gets 503 and the page says to try again). The server keeps no state: the page sends the whole conversation
with every message, and the server fits it into the context as `python -m tinylm.chat` does (oldest exchanges
dropped first, the system prompt kept).

    GET  /      the chat page (HTML and a little JavaScript)
    POST /chat  {"messages": [{"role": "user", "content": "..."}, ...]}: the conversation, ending with the
                visitor's new message (roles user and assistant; the system prompt is the server's).
                The answer comes as server-sent events: `data: {"text": "..."}` per piece, then
                `data: {"done": true, "dropped": N}`, N being how many earlier messages did not fit.

Bad requests get a JSON body {"error": "..."}: 400 for malformed JSON or a malformed conversation, 404 for
another path, 411 without a Content-Length, 413 for a body over 64 KiB, messages over --max-chars characters
or a message too long for the context, 503 when every generation slot is busy.
"""

from __future__ import annotations

import argparse
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..chat.session import ChatSession
from ..chat.template import ChatFormatError, ContextOverflow, check_messages
from .chat import add_sampler_options, session_from_args
from .console import HelpFormatter, examples
from .errors import run_cli

MAX_BODY_BYTES = 64 * 1024

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tinylm chat</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
#log div { margin: .6rem 0; white-space: pre-wrap; } .user { color: #174ea6; } .error { color: #b00020; }
form { display: flex; gap: .5rem; } textarea { flex: 1; height: 3.5rem; font: inherit; }
</style></head>
<body><h1>tinylm chat</h1><p>__INFO__</p><div id="log"></div>
<form id="form"><textarea id="text" placeholder="Ask something (Enter sends)"></textarea>
<button>Send</button><button type="button" id="reset">New chat</button></form>
<script>
const messages = [], log = document.getElementById("log"), form = document.getElementById("form");
const box = document.getElementById("text");
function line(role, text) {
  const div = document.createElement("div");
  div.className = role; div.textContent = text; log.appendChild(div); return div;
}
document.getElementById("reset").onclick = () => { messages.length = 0; log.textContent = ""; };
box.addEventListener("keydown", e => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
});
form.onsubmit = async (event) => {
  event.preventDefault();
  const text = box.value.trim();
  if (!text) return;
  box.value = ""; line("user", "you: " + text);
  const bubble = line("assistant", "bot: ");
  const response = await fetch("/chat", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({messages: [...messages, {role: "user", content: text}]})});
  if (!response.ok) { bubble.className = "error"; bubble.textContent = (await response.json()).error; return; }
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "", reply = "", dropped = 0;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    const events = buffer.split("\\n\\n");
    buffer = events.pop();
    for (const event of events) {
      const data = JSON.parse(event.slice("data: ".length));
      if (data.text) { reply += data.text; bubble.textContent = "bot: " + reply; }
      if (data.done) dropped = data.dropped;
    }
  }
  messages.splice(0, dropped);  // what the model no longer sees need not be sent again
  messages.push({role: "user", content: text}, {role: "assistant", content: reply.trim()});
};
</script></body></html>
"""


class RequestError(Exception):
    """A request the server refuses, with its HTTP status."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class ChatServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that holds the model, the sampler options and the limits."""

    daemon_threads = True  # a visitor who never finishes a request does not keep the server from stopping

    def __init__(self, address, session: ChatSession, max_chars: int = 4000, max_concurrent: int = 4,
                 info: str = "a tinylm chat model", quiet: bool = False):
        super().__init__(address, ChatHandler)
        self.session, self.max_chars, self.quiet = session, max_chars, quiet
        self.slots = threading.BoundedSemaphore(max_concurrent)
        self.page = PAGE.replace("__INFO__", info.replace("&", "&amp;").replace("<", "&lt;")).encode("utf-8")

    def new_session(self, history: list[dict]) -> ChatSession:
        """A ChatSession for one request: the shared model and options, the visitor's history."""
        shared = self.session
        session = ChatSession(shared.model, shared.template.tokenizer, None, shared.max_new_tokens, **shared.sampling)
        session.system = shared.system
        session.messages = [*shared.system, *history]
        return session


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer

    def do_GET(self) -> None:
        if self.path != "/":
            return self._error(HTTPStatus.NOT_FOUND, f"no page at {self.path}; the chat is at /")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.server.page)))
        self.end_headers()
        self.wfile.write(self.server.page)

    def do_POST(self) -> None:
        if self.path != "/chat":
            return self._error(HTTPStatus.NOT_FOUND, f"nothing to POST at {self.path}; send conversations to /chat")
        try:
            messages = self._read_conversation()
            if not self.server.slots.acquire(blocking=False):
                raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "every generation slot is busy; try again shortly")
        except RequestError as error:
            return self._error(error.status, str(error))
        try:
            self._stream_reply(messages)
        finally:
            self.server.slots.release()

    def _read_conversation(self) -> list[dict]:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the JSON body with a Content-Length header")
        if int(length) > MAX_BODY_BYTES:
            if int(length) <= 16 * MAX_BODY_BYTES:  # read it, so that closing does not reset the connection
                self.rfile.read(int(length))  # before the visitor has read the answer
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"the request has {int(length):,} bytes; the limit is {MAX_BODY_BYTES:,}")
        try:
            body = json.loads(self.rfile.read(int(length)))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON ({error})") from None
        messages = body.get("messages") if isinstance(body, dict) else None
        try:
            if not isinstance(messages, list) or not messages:
                raise ChatFormatError('expected {"messages": [{"role": "user", "content": "..."}, ...]}')
            if any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
                raise ChatFormatError("the system prompt is the server's; send user and assistant messages only")
            check_messages(messages)
            if messages[-1]["role"] != "user":
                raise ChatFormatError("the conversation must end with the user's new message")
        except ChatFormatError as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, str(error)) from None
        characters = sum(len(m["content"]) for m in messages)
        if characters > self.server.max_chars:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the conversation has {characters:,} "
                               f"characters; the limit is {self.server.max_chars:,}: start a new chat")
        return messages

    def _stream_reply(self, messages: list[dict]) -> None:
        session = self.server.new_session(messages[:-1])
        try:
            fitted, ids = session.fit(messages[-1]["content"])
        except ContextOverflow as error:
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(error))
        pieces = session.stream_reply(fitted, ids)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            for piece in pieces:
                self._event({"text": piece})
            self._event({"done": True, "dropped": len(messages) + len(session.system) - len(fitted)})
        except (BrokenPipeError, ConnectionResetError):  # the visitor left: stop generating for them
            pieces.close()

    def _event(self, data: dict) -> None:
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode("utf-8"))
        self.wfile.flush()

    def _error(self, status: HTTPStatus, message: str) -> None:
        body = json.dumps({"error": message}).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, message_format: str, *args) -> None:
        if not self.server.quiet:
            super().log_message(message_format, *args)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.serve", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.serve --ckpt runs/chat-cpu --port 8000",
                        "python -m tinylm.serve --ckpt runs/chat-cpu --host 0.0.0.0 --max-concurrent 2"))
    parser.add_argument("--ckpt", required=True, help="fine-tuned checkpoint or run folder (python -m tinylm.finetune)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to let other machines connect")
    parser.add_argument("--max-chars", type=int, default=4000, help="longest conversation accepted, in characters")
    parser.add_argument("--max-concurrent", type=int, default=4, help="replies generated at the same time")
    add_sampler_options(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.max_chars < 1 or args.max_concurrent < 1:
        raise ValueError("--max-chars and --max-concurrent must be at least 1")
    session = session_from_args(args)
    server = ChatServer((args.host, args.port), session, args.max_chars, args.max_concurrent,
                        info=f"{args.ckpt}: context {session.model.config.block_size} tokens, replies up to "
                             f"{session.max_new_tokens}")
    host, port = server.server_address[:2]
    print(f"serving {args.ckpt} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()


def cli(argv=None) -> None:
    """`python -m tinylm.serve`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
