"""The network: token ids in, next-token logits (and a loss) out.

`gpt` is the model, reading top to bottom as config -> blocks -> head, for GPT-2 and the Llama-style family.
Its parts each have a module: `attention` (causal self-attention, grouped-query too), `norms` (LayerNorm,
RMSNorm), `rope` (rotary positions), `mlp` (GELU and SwiGLU), `moe` (a mixture of experts with its
balancing), `kv_cache` (keys and values kept for decoding), `losses` (next-token cross-entropy, masked) and
`lora` (low-rank adapters around its linear layers, which checkpoints save apart and merge on load).
`reference` is a plain GPT-2 with nanoGPT's optimizer setup, the yardstick for speed benchmarks.
"""
