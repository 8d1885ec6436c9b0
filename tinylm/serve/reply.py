"""A streamed reply that frees its generation slot however it ends: the chat page's and the OpenAI API's."""

from __future__ import annotations

from starlette.responses import StreamingResponse


class Reply(StreamingResponse):
    """A stream of server-sent events that calls `finished` when it ends: sent, failed, or cancelled because the
    visitor left (Starlette cancels the stream when the client disconnects, possibly before its first event)."""

    def __init__(self, content, finished):
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.finished = finished

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.finished()
