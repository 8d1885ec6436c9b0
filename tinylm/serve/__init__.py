"""Serving: a chat model in; conversations with it out, in a terminal or a web page.

`session` keeps a conversation within the model's context (oldest exchanges dropped first, the system prompt kept)
and streams each reply; `server` is the web app (Starlette on uvicorn) that serves the page in static/ and streams
replies to it as server-sent events; `head_deadline` closes the connections that send no request head in time.

`python -m tinylm.chat` is the terminal chat (tinylm/cli/chat.py); `python -m tinylm.serve` the web one
(tinylm/cli/serve.py).
"""
