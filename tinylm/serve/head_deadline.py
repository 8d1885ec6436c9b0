"""A deadline for each connection's request head, beneath uvicorn: idle and trickling sockets are closed.

uvicorn has no such setting (`timeout_keep_alive` starts only after a response, and every byte restarts it), and an
ASGI middleware cannot help, since the app is called only once a head has arrived. So the deadline sits between
asyncio and uvicorn, through public interfaces only: run uvicorn's documented `Server.serve()` in a
`HeadDeadlineLoop`. An idle socket then costs a file descriptor and a small object, no thread and no request slot.
"""

from __future__ import annotations

import asyncio
import re

HEAD_END = re.compile(rb"\n\r?\n")  # the blank line after the headers, as h11 finds it


class HeadDeadline(asyncio.Protocol):
    """`protocol` (an HTTP server's connection, uvicorn's whichever implementation) with `timeout` seconds to receive
    the end of its request head: every asyncio call passes on, and the connection is closed unless the blank line
    that ends a head arrives within `timeout` seconds of opening. Only the first head is watched: tinylm.serve.server
    answers every request with `Connection: close`, so a connection carries one request."""

    def __init__(self, protocol: asyncio.Protocol, timeout: float, loop: asyncio.AbstractEventLoop):
        self.protocol, self.timeout, self.loop = protocol, timeout, loop
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes received, in case the blank line straddles two reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.timer = self.loop.call_later(self.timeout, transport.close)
        self.protocol.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            seen = self.tail + data
            if HEAD_END.search(seen):
                self.disarm()
            self.tail = seen[-2:]
        self.protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return self.protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        self.protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class HeadDeadlineLoop(asyncio.SelectorEventLoop):
    """An event loop whose servers give each connection `head_timeout` seconds to send its request head."""

    def __init__(self, head_timeout: float):
        super().__init__()
        self.head_timeout = head_timeout

    async def create_server(self, protocol_factory, *args, **kwargs) -> asyncio.Server:
        def guarded() -> HeadDeadline:
            return HeadDeadline(protocol_factory(), self.head_timeout, self)

        return await super().create_server(guarded, *args, **kwargs)
