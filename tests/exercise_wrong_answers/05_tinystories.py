"""Notebook 5: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # the trimmed model's cross-entropy alone: the unk penalty left out
    "test_loss_per_gpt2_token": """
def loss_per_gpt2_token(logits, targets, unk_id, unk_penalty):
    return F.cross_entropy(logits, targets)
""",
    # bias=False drops the Linear layers' biases but the LayerNorms keep theirs here
    "test_count_parameters_any": """
def count_parameters_any(cfg):
    C, V, T, L, b = cfg.n_embd, cfg.vocab_size, cfg.block_size, cfg.n_layer, int(cfg.bias)
    layer_norm = 2 * C
    attention = (3 * C * C + b * 3 * C) + (C * C + b * C)
    mlp = (4 * C * C + b * 4 * C) + (4 * C * C + b * C)
    per_block = 2 * layer_norm + attention + mlp
    head = 0 if cfg.tie_weights else V * C
    return V * C + T * C + L * per_block + layer_norm + head
""",
    # times the forward pass alone, not the whole training step
    "test_batch_speed_ratio": """
def tokens_per_second(batch_size, steps=6):
    sampler = tinylm.data.tokens.RandomWindowSampler(data.train, mp_cfg.block_size, batch_size, SEED)
    mp_model.load_state_dict(initial)
    times = []
    for _ in range(steps + 1):
        x, y = sampler.next_batch(DEVICE)
        start = time.perf_counter()
        _, loss = mp_model(x, y)
        loss.item()
        times.append(time.perf_counter() - start)
    return batch_size * mp_cfg.block_size / min(times[1:])
""",
}
