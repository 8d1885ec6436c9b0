"""A small web demo: a page where visitors chat with a fine-tuned model, the replies streamed as they are made.

Standard library only: `http.server.ThreadingHTTPServer` answers each connection in a thread of its own, so
several visitors chat at once (up to `max_concurrent` replies are generated together; beyond that a request
gets 503 and the page says to try again). The server keeps no state: the page sends the whole conversation
with every message, and the server fits it into the context as `ChatSession` does (oldest exchanges dropped
first, the system prompt kept).

    GET  /          the chat page, static/chat.html (with chat.js and chat.css beside it)
    POST /chat      {"messages": [{"role": "user", "content": "..."}, ...]}: the conversation, ending with the
                    visitor's new message (roles user and assistant; the system prompt is the server's), sent
                    as Content-Type: application/json. The answer comes as server-sent events:
                    `data: {"text": "..."}` per piece, then `data: {"done": true, "dropped": N}`, N being how
                    many earlier messages did not fit.

Every refusal is a JSON body {"error": "..."}, the standard library's own ones included: 400 for a malformed
request, JSON or conversation, 403 for a Host header that is not this server's, 404 for another path, 405 for
another method (with Allow), 408 for a body that stops arriving, 411 without a Content-Length, 413 for a body
over 64 KiB, a conversation over `max_chars` characters or a message too long for the context, 415 for a POST
that is not JSON, 503 when every generation slot is busy.

The server is meant for this machine, or a trusted network with --host 0.0.0.0. A web page elsewhere that
the visitor's browser runs must not use it: a request whose Host names another site (a DNS name rebound to
127.0.0.1) is refused, and so is a POST that is not JSON (a cross-site form or `text/plain` fetch needs none of
the browser's permission checks; a JSON one does, and this server grants none). A connection that stays silent
for `idle_timeout` seconds is closed, so idle sockets cannot pile up threads.

`python -m tinylm.serve` runs it from a checkpoint; its command line is tinylm/cli/serve.py.
"""

from __future__ import annotations

import errno
import html
import ipaddress
import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

from ..errors import InputError, TinyLMError
from ..tokenizers.chat_template import ChatFormatError, ContextOverflow, check_messages
from .session import ChatSession

MAX_BODY_BYTES = 64 * 1024
WILDCARD_HOSTS = ("", "0.0.0.0", "::")
STATIC_FILES = {  # path -> (file in static/, content type)
    "/": ("chat.html", "text/html; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
}
ALLOWED_METHODS = {**{path: "GET" for path in STATIC_FILES}, "/chat": "POST"}


class RequestError(Exception):
    """A request the server refuses, with its HTTP status."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class ServerAddressError(TinyLMError, OSError):
    """The server cannot listen at the host and port asked for; the message says why and what to do instead."""


def static_file(name: str) -> bytes:
    """A file of the page (tinylm/serve/static/), from the installed package."""
    return (resources.files(__package__) / "static" / name).read_bytes()


def _address_error(error: OSError, host: str, port: int) -> ServerAddressError:
    where = f"{host}:{port}"
    if isinstance(error, socket.gaierror):
        return ServerAddressError(f"cannot listen at {where}: {host!r} is not an address or name this machine "
                                  "knows; use --host 127.0.0.1 (this machine only) or 0.0.0.0 (every network)")
    if error.errno == errno.EADDRINUSE:
        return ServerAddressError(f"port {port} is already in use at {host} (another server listens there); choose "
                                  "another with --port (0 picks a free one), or stop the other server")
    if error.errno == errno.EACCES:
        return ServerAddressError(f"cannot listen at {where}: ports below 1024 need administrator rights; choose "
                                  "another with --port (e.g. 8000; 0 picks a free one)")
    if error.errno == errno.EADDRNOTAVAIL:
        return ServerAddressError(f"cannot listen at {where}: {host} is not an address of this machine; use --host "
                                  "127.0.0.1 (this machine only) or 0.0.0.0 (every network)")
    return ServerAddressError(f"cannot listen at {where}: {error.strerror or error}; try another --host or --port")


class ChatServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that holds the model and sampler options (a ChatSession whose settings every request
    gets), the limits, and the page.

    address: (host, port), port 0 for a free one. max_chars: the longest conversation accepted, in characters.
    max_concurrent: replies generated at once. info: a line the page shows under its title. quiet: no request log.
    idle_timeout: seconds a connection may stay silent. Binding fails with ServerAddressError, which says what to do.
    """

    daemon_threads = True  # a visitor who never finishes a request does not keep the server from stopping

    def __init__(self, address: tuple[str, int], session: ChatSession, max_chars: int = 4000,
                 max_concurrent: int = 4, info: str = "a tinylm chat model", quiet: bool = False,
                 idle_timeout: float = 30.0):
        if max_chars < 1 or max_concurrent < 1:
            raise InputError("max_chars and max_concurrent must be at least 1")
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ChatHandler)
        self.session, self.max_chars, self.quiet, self.idle_timeout = session, max_chars, quiet, idle_timeout
        self.slots = threading.BoundedSemaphore(max_concurrent)
        page = static_file("chat.html").decode("utf-8").replace("{{info}}", html.escape(info)).encode("utf-8")
        self.files = {path: (page if name == "chat.html" else static_file(name), content_type)
                      for path, (name, content_type) in STATIC_FILES.items()}
        host, self.port = address[0].lower(), self.server_address[1]
        self.host_names = {"localhost", "127.0.0.1", "::1", host}
        self.any_address = host in WILDCARD_HOSTS
        if self.any_address:  # visitors from other machines name it by an IP address or this machine's name
            self.host_names.add(socket.gethostname().lower())

    def server_bind(self) -> None:
        try:
            super().server_bind()
        except OSError as error:
            host, port = self.server_address[:2]
            raise _address_error(error, host, port) from error

    def host_allowed(self, header: str | None) -> bool:
        """Whether a request's Host header names this server: a loopback name or the --host given, at its port (an
        IP address too when it listens on every network, a DNS name being what a rebinding attack needs)."""
        if not header:
            return False
        try:
            parts = urlsplit(f"//{header}")
            name, port = parts.hostname, parts.port or 80
        except ValueError:  # a port that is no number, or out of range
            return False
        if name is None or port != self.port:
            return False
        return name in self.host_names or (self.any_address and _is_ip_address(name))

    def new_session(self, history: list[dict]) -> ChatSession:
        """A ChatSession for one request: the shared model and options, the visitor's history."""
        shared = self.session
        session = ChatSession(shared.model, shared.template.tokenizer, None, shared.max_new_tokens, **shared.sampling)
        session.system = shared.system
        session.messages = [*shared.system, *history]
        return session


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # StreamRequestHandler gives the connection this timeout
        super().setup()

    def version_string(self) -> str:
        return "tinylm"  # not the Python version: a visitor needs no map of this machine's software

    def _answer(self) -> None:
        """Check the Host header and that the path takes this method, then respond, or send the refusal."""
        self.unread_body = self._declared_length() or 0
        try:
            if not self.server.host_allowed(self.headers.get("Host")):
                raise RequestError(HTTPStatus.FORBIDDEN, f"the Host header {self.headers.get('Host', '')!r} does "
                                   f"not name this server; open http://127.0.0.1:{self.server.port}/")
            allowed = ALLOWED_METHODS.get(self.path)
            if allowed is None:
                raise RequestError(HTTPStatus.NOT_FOUND, f"nothing at {self.path}; the chat page is at /")
            if allowed != self.command:
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.path} takes {allowed} only")
            if self.command == "POST":
                self._chat()
            else:
                self._send_file()
        except RequestError as error:
            self._discard_unread_body()
            self._send_json_error(error.status, str(error), allow=ALLOWED_METHODS.get(self.path))

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _answer

    def _send_file(self) -> None:
        body, content_type = self.server.files[self.path]
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _chat(self) -> None:
        messages = self._read_conversation()
        if not self.server.slots.acquire(blocking=False):
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "every generation slot is busy; try again shortly")
        try:
            self._stream_reply(messages)
        finally:
            self.server.slots.release()

    def _declared_length(self) -> int | None:
        """The Content-Length, or None when it is missing or no number of bytes (int() takes "²" and " 1_0 ")."""
        length = self.headers.get("Content-Length", "")
        return int(length) if length.isascii() and length.isdigit() else None

    def _discard_unread_body(self) -> None:
        """Read a refused request's body, so that closing the connection does not reset it before the visitor has
        read the refusal (up to 1 MiB; a bigger one gets the reset)."""
        if 0 < self.unread_body <= 16 * MAX_BODY_BYTES:
            try:
                self.rfile.read(self.unread_body)
            except OSError:  # a visitor who stopped sending, or left, reads no refusal either
                pass
        self.unread_body = 0

    def _read_conversation(self) -> list[dict]:
        if self.headers.get_content_type() != "application/json":
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                               "send the conversation as JSON, with Content-Type: application/json")
        length = self._declared_length()
        if length is None and "Content-Length" not in self.headers:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the JSON body with a Content-Length header")
        if length is None:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"the Content-Length {self.headers['Content-Length'][:40]!r} is not a number of bytes")
        if length > MAX_BODY_BYTES:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"the request has {length:,} bytes; the limit is {MAX_BODY_BYTES:,}")
        self.unread_body = 0
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT, f"the body stopped arriving for "
                               f"{self.server.idle_timeout:g} seconds; send it again") from None
        try:
            body = json.loads(body)
        except RecursionError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "the JSON is nested too deeply; send the conversation as "
                               '{"messages": [{"role": "user", "content": "..."}, ...]}') from None
        except ValueError as error:  # malformed JSON or UTF-8, or a number too long to convert
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
        self._check_length(messages)
        return messages

    def _check_length(self, messages: list[dict]) -> None:
        """At most max_chars characters, refused with the remedy that works: a shorter message when it alone is
        too long, a new chat when the earlier messages take the room."""
        limit, new = self.server.max_chars, len(messages[-1]["content"])
        earlier = sum(len(m["content"]) for m in messages[:-1])
        if new > limit:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"your message has {new:,} characters; the limit is {limit:,}: shorten it")
        if earlier + new > limit:
            shorter = f", or shorten your message to {limit - earlier:,} characters" if earlier < limit else ""
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"the conversation so far has {earlier:,} characters and your message {new:,}; the "
                               f"limit is {limit:,}: start a new chat{shorter}")

    def _stream_reply(self, messages: list[dict]) -> None:
        session = self.server.new_session(messages[:-1])
        try:
            fitted, ids = session.fit(messages[-1]["content"])
        except ContextOverflow as error:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(error)) from None
        pieces = session.stream_reply(fitted, ids)
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            for piece in pieces:
                self._event({"text": piece})
            self._event({"done": True, "dropped": len(messages) + len(session.system) - len(fitted)})
        except OSError:  # the visitor left, or stopped reading for idle_timeout seconds: stop generating
            pieces.close()
            self.close_connection = True

    def _event(self, data: dict) -> None:
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode("utf-8"))
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own refusals (a malformed request line, headers too long, a method no do_*
        handles) as JSON, like every other."""
        status = HTTPStatus(code)
        self._send_json_error(status, message or status.phrase)

    def _send_json_error(self, status: HTTPStatus, message: str, allow: str | None = None) -> None:
        body = json.dumps({"error": message}).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", allow)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, message_format: str, *args) -> None:
        if not self.server.quiet:
            super().log_message(message_format, *args)
