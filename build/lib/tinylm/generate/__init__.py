"""Generation: a model and a prompt in, new tokens (or text, streamed) out.

`decode` is the loop (prefill once, then one token per step through the KV cache; batches of ragged prompts),
`sampling` the small functions that choose the next token (temperature, top-k, top-p, repetition penalty),
`stream` turns tokens into text as they come, with stop strings and the reason a text ended.
"""
