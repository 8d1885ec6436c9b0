"""The chat page's web server: a visitor chats with a fine-tuned model, each reply streamed as it is made; beside it
OpenAI's API for any model (tinylm.serve.openai_api).

A Starlette app on uvicorn: one event loop answers every connection, and each reply is generated in a worker thread,
up to `max_concurrent` at once (beyond that, 503); `ServeOptions` holds such settings, each a flag of the command.
The server keeps no state: the page sends the whole conversation with each message. It is meant for this machine
or a trusted network: a Host that is not this server's (DNS rebinding) and a POST that is not JSON (a cross-site
form) are refused, and a connection has `idle_timeout` seconds to send its head and as long again for its body, so
that idle or trickling sockets hold no thread and no slot.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import html
import ipaddress
import json
import socket
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable
from urllib.parse import urlsplit

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import InputError, TinyLMError
from ..generate.calculator import ToolText
from ..settings import option
from ..tokenizers.chat_template import ChatFormatError, ContextOverflow, check_messages
from .head_deadline import HeadDeadlineLoop
from .openai_api import APIError, OpenAIRoutes, error_body, server_sent
from .reply import Reply
from .session import ChatSession

MAX_BODY_BYTES = 64 * 1024
MAX_TARGET_BYTES = 2048  # a longer path is refused with 414
MAX_HEAD_BYTES = 16 * 1024  # headers whose names and values add up to more are refused with 431
MAX_HEADERS = 100  # more header fields are refused with 431 (a browser sends about 20)
WILDCARD_HOSTS = ("", "0.0.0.0", "::")
STATIC_FILES = {  # path -> (file in static/, content type)
    "/": ("chat.html", "text/html; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
}
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff"}


def port_number(text: str) -> int:
    """An argparse `type`: a port, 0..65535 (anything else is a usage error)."""
    port = int(text) if text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be 0..65535 (0 picks any free port)")
    return port


@dataclass(frozen=True)
class ServeOptions:
    """Where the server listens, its limits and its log: `python -m tinylm.serve`'s options, declared once."""

    port: int = option("0 picks a free port", 8000, type=port_number)
    host: str = option("0.0.0.0 opens it to all, unauthenticated", "127.0.0.1")
    max_chars: int = option("longest conversation, in characters", 4000, metavar="N", minimum=1)
    max_concurrent: int = option("replies generated at once", 4, metavar="N", minimum=1)
    idle_timeout: float = option("seconds for a request's head, then body", 30.0, metavar="S")
    quiet: bool = option("no line per request", False)

    def __post_init__(self):
        if self.max_chars < 1 or self.max_concurrent < 1:
            raise InputError("max_chars and max_concurrent must be at least 1")


class ServerAddressError(TinyLMError, OSError):
    """The server cannot listen at the host and port asked for; the message says why and what to do instead."""


def static_file(name: str) -> bytes:
    """A file of the page (tinylm/serve/static/), from the installed package."""
    return (resources.files(__package__) / "static" / name).read_bytes()


class ChatApp:
    """The web app: the page, POST /chat, the Host check and the limits, around one shared ChatSession (the model
    and sampler options every request gets). `host` is what the server listens on: the names a request's Host
    header may use follow from it. Every response says `Connection: close` (one request per connection).

    Refusals, as JSON (OpenAI's error object under /v1/): 400 a malformed conversation or JSON; 403 a Host that does
    not name this server; 404 another path, or / of a base model, which has no chat page;
    405 another method (with Allow); 408 a body that stops arriving; 411 no Content-Length; 413 a body over 64 KiB,
    a conversation over `max_chars` characters or a message too long for the context; 414 a URL over 2 KiB; 415 a
    POST that is not JSON; 431 headers over 16 KiB or more than 100 of them; 503 every generation slot busy.
    uvicorn itself refuses what is not HTTP, or a head still incomplete after 16 KiB (400, as text)."""

    def __init__(self, options: ServeOptions, session: ChatSession | None, info: str = "a tinylm chat model",
                 model=None, tokenizer=None, name: str = "tinylm"):
        if session is None and (model is None or tokenizer is None):
            raise TinyLMError("a server needs a chat session, or a model and its tokenizer")
        self.session, self.max_chars, self.body_timeout = session, options.max_chars, options.idle_timeout
        self.free_slots = options.max_concurrent  # replies that may start now; the event loop alone changes it
        page = static_file("chat.html").decode("utf-8").replace("{{info}}", html.escape(info)).encode("utf-8")
        self.files = {path: (page if name == "chat.html" else static_file(name), content_type)
                      for path, (name, content_type) in STATIC_FILES.items()}
        host = options.host.lower()
        self.host_names = {"localhost", "127.0.0.1", "::1", host}
        self.any_address = host in WILDCARD_HOSTS
        if self.any_address:  # visitors from other machines name it by an IP address or this machine's name
            self.host_names.add(socket.gethostname().lower())
        if session is None:  # a base model: the page would only fail, so / says where its completions are
            routes = [Route("/", self.no_chat_page, methods=["GET"])]
        else:
            routes = [Route(path, self.send_file, methods=["GET"]) for path in STATIC_FILES]
        routes.append(Route("/chat", self.chat, methods=["POST"]))
        model, tokenizer = (model, tokenizer) if session is None else (session.model, session.template.tokenizer)
        routes += OpenAIRoutes(self, model, tokenizer, name).routes()
        self.app = Starlette(routes=routes, exception_handlers={HTTPException: self.json_error})

    async def __call__(self, scope, receive, send) -> None:
        async def send_and_close(message) -> None:  # the head deadline watches a connection's first head only
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await (self.refusal(scope) or self.app)(scope, receive, send_and_close)

    def refusal(self, scope) -> JSONResponse | None:
        """What to answer before any route looks at a request: a target or head too long, a Host not this one."""
        path = scope["path"]
        if len(scope["raw_path"]) + len(scope["query_string"]) > MAX_TARGET_BYTES:
            return error_response(path, 414, f"the URL is longer than {MAX_TARGET_BYTES:,} bytes")
        if sum(len(name) + len(value) for name, value in scope["headers"]) > MAX_HEAD_BYTES:
            return error_response(path, 431, f"the headers add up to more than {MAX_HEAD_BYTES:,} bytes")
        if len(scope["headers"]) > MAX_HEADERS:
            return error_response(path, 431, f"the request has {len(scope['headers']):,} headers; the limit is "
                                             f"{MAX_HEADERS}")
        header = dict(scope["headers"]).get(b"host")
        if not self.host_allowed(header, scope.get("server")):
            port = scope["server"][1] if scope.get("server") else ""
            return error_response(path, 403, f"the Host header {(header or b'').decode('latin-1')!r} does not name "
                                             f"this server; open http://127.0.0.1:{port}/")
        return None

    def host_allowed(self, header: bytes | None, server: tuple[str, int] | None) -> bool:
        """Whether a request's Host header names this server: a loopback name or the --host given, at its port (an
        IP address too when it listens on every network, a DNS name being what a rebinding attack needs)."""
        if not header or server is None:
            return False
        try:
            parts = urlsplit(f"//{header.decode('ascii')}")
            name, port = parts.hostname, parts.port or 80
        except (UnicodeDecodeError, ValueError):  # not ASCII, a port that is no number, or out of range
            return False
        if name is None or port != server[1]:
            return False
        return name in self.host_names or (self.any_address and _is_ip_address(name))

    async def json_error(self, request: Request, error: HTTPException) -> JSONResponse:
        message = error.detail
        if error.status_code == 404 and not isinstance(error, APIError):  # no route: say where the routes are
            page = "the chat page is at /, " if self.session else ""
            message = f"nothing at {request.url.path}; {page}OpenAI's API at /v1/"
        elif error.status_code == 405:
            methods = [m.strip() for m in error.headers["Allow"].split(",") if m.strip() != "HEAD"]
            message = f"{request.url.path} takes {' or '.join(methods)} only"
        return error_response(request.url.path, error.status_code, message, error.headers, getattr(error, "code", None))

    async def no_chat_page(self, request: Request) -> Response:
        return error_response("/", 404, "this is a base model (no chat tokens), so it has no chat page; its "
                                        "completions are at /v1/completions (GET /v1/models names it)")

    async def send_file(self, request: Request) -> Response:
        body, content_type = self.files[request.url.path]
        return Response(body, headers={**PAGE_HEADERS, "Content-Type": content_type})

    async def chat(self, request: Request) -> Reply:
        """POST /chat: {"messages": [{"role": "user", "content": "..."}, ...]} as application/json, the whole
        conversation, fitted into the context as `ChatSession` does (oldest exchanges dropped first). The reply comes
        as server-sent events, `data: {"text": "..."}` per piece (with `"tool": true` for a calculator's text), then
        `data: {"done": true, "dropped": N}`."""
        if self.session is None:
            raise HTTPException(400, "this model has no chat tokens, so it was not fine-tuned for chat; its "
                                     "completions are at /v1/completions")
        messages = self.check_length(await self.read_conversation(request))
        session = self.session.with_history(messages[:-1])
        try:
            fitted, ids = session.fit_to_context(messages[-1]["content"])
        except ContextOverflow as error:
            raise HTTPException(413, str(error)) from None
        pieces = session.reply_to_fitted(fitted, ids)
        finished = self.take_slot(pieces.close)
        dropped = len(messages) + len(session.system) - len(fitted)
        return Reply(events(pieces, dropped, ToolText() if "tool" in session.options else None), finished)

    def take_slot(self, close) -> Callable[[], None]:
        """A generation slot (503 when none is free), and the callback that frees it and calls `close`: a streamed
        reply calls it however the response ends, even before it began."""
        if self.free_slots == 0:
            raise HTTPException(503, "every generation slot is busy; try again shortly")
        self.free_slots -= 1

        def finished() -> None:
            close()
            self.free_slots += 1

        return finished

    async def generate(self, work: Callable[[], Any]) -> Any:
        """`work()` in a worker thread, holding a generation slot while it runs."""
        finished = self.take_slot(lambda: None)
        try:
            return await anyio.to_thread.run_sync(work)
        finally:
            finished()

    async def read_conversation(self, request: Request) -> list[dict]:
        body = await self.read_json(request)
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
            raise HTTPException(400, str(error)) from None
        return messages

    async def read_json(self, request: Request) -> dict:
        """The request's JSON object, within the size and time limits (415, 411, 413, 408, 400 otherwise)."""
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise HTTPException(415, "send the request as JSON, with Content-Type: application/json")
        length = request.headers.get("content-length")
        if length is None:
            raise HTTPException(411, "send the JSON body with a Content-Length header")
        if int(length) > MAX_BODY_BYTES:  # uvicorn has checked that it is a number of bytes
            raise HTTPException(413, f"the request has {int(length):,} bytes; the limit is {MAX_BODY_BYTES:,}")
        try:
            body = await asyncio.wait_for(request.body(), self.body_timeout)
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
            raise HTTPException(408, f"the body stopped arriving for {self.body_timeout:g} seconds; send it "
                                     "again") from None
        except ClientDisconnect:  # the visitor left before sending it all: nobody reads the answer
            raise HTTPException(400, "the connection closed before the body arrived") from None
        try:
            body = json.loads(body)
        except RecursionError:
            raise HTTPException(400, "the JSON is nested too deeply; send the conversation as "
                                     '{"messages": [{"role": "user", "content": "..."}, ...]}') from None
        except ValueError as error:  # malformed JSON or UTF-8, or a number too long to convert
            raise HTTPException(400, f"the body is not valid JSON ({error})") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return body

    def check_length(self, messages: list[dict]) -> list[dict]:
        """At most max_chars characters, refused with the remedy that works: a shorter message when it alone is
        too long, a new chat when the earlier messages take the room."""
        limit, new = self.max_chars, len(messages[-1]["content"])
        earlier = sum(len(m["content"]) for m in messages[:-1])
        if new > limit:
            raise HTTPException(413, f"your message has {new:,} characters; the limit is {limit:,}: shorten it")
        if earlier + new > limit:
            shorter = f", or shorten your message to {limit - earlier:,} characters" if earlier < limit else ""
            raise HTTPException(413, f"the conversation so far has {earlier:,} characters and your message "
                                     f"{new:,}; the limit is {limit:,}: start a new chat{shorter}")
        return messages


def error_response(path: str, status: int, message: str, headers=None, code: str | None = None) -> JSONResponse:
    """A refusal as JSON: OpenAI's error object under /v1/, where its clients read it; {"error": message} elsewhere,
    where the chat page reads it."""
    body = error_body(message, code) if path.startswith("/v1/") else {"error": message}
    return JSONResponse(body, status, headers=headers)


async def events(pieces, dropped: int, marker: ToolText | None = None):
    """The reply as server-sent events, each piece generated in a worker thread; with a calculator, its text apart
    (`"tool": true`). A visitor who leaves cancels this at the piece under way, and the generation stops there."""
    while (piece := await anyio.to_thread.run_sync(next, pieces, None)) is not None:
        parts = marker.parts(piece) if marker else [(piece, False)]
        for text, by_tool in parts:
            yield server_sent({"text": text, "tool": True} if by_tool else {"text": text})
    yield server_sent({"done": True, "dropped": dropped})


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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


class ChatServer:
    """The app on a socket bound now (port 0: a free one; `port` says which), served by `serve_forever` until
    `shutdown` (or Ctrl-C, in the main thread). The options' idle_timeout: seconds a connection has to send a
    request's head, and again its body; quiet: no access log. Binding fails with ServerAddressError, which says what
    to do. `session` None: a base model's API only, from `model` and `tokenizer` (ChatApp's)."""

    def __init__(self, options: ServeOptions, session: ChatSession | None, info: str = "a tinylm chat model",
                 model=None, tokenizer=None, name: str = "tinylm"):
        host, port = options.host, options.port
        self.app = ChatApp(options, session, info, model, tokenizer, name)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError as error:
            self.socket.close()
            raise _address_error(error, host, port) from error
        self.socket.listen(2048)  # connections queue here until serve_forever accepts them
        self.server_address = self.socket.getsockname()
        self.port = self.server_address[1]
        self.idle_timeout = options.idle_timeout
        # No limit_concurrency: it counts idle connections too, so they would take the slots that requests need.
        config = uvicorn.Config(self.app, http="h11", ws="none", lifespan="off", server_header=False,
                                h11_max_incomplete_event_size=MAX_HEAD_BYTES, access_log=not options.quiet,
                                log_level="warning" if options.quiet else "info", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)

    def serve_forever(self) -> None:
        loop = HeadDeadlineLoop(self.idle_timeout)
        try:
            loop.run_until_complete(self.server.serve(sockets=[self.socket]))
        finally:  # as asyncio.run ends: the callbacks still due run (anyio's worker threads stop), then it closes
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def shutdown(self) -> None:
        self.server.should_exit = True

    def server_close(self) -> None:
        self.socket.close()
