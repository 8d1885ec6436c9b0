"""The network: token ids in, next-token logits (and a loss) out.

`gpt` is the model, read top to bottom, for GPT-2 and the Llama-style family; each part the config chooses between
has a module of its own, and `lora` wraps its linear layers for fine-tuning. `reference` is a plain GPT-2, the
yardstick the model is timed and checked against.
"""
