"""Serving: a chat model in; conversations with it out, in a terminal or a web page.

A session keeps a conversation within the model's context and streams each reply; the web server (Starlette on
uvicorn) serves the page in static/ and streams replies to it as server-sent events. `python -m tinylm.chat` is the
terminal chat and `python -m tinylm.serve` the web one.
"""
