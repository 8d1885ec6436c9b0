"""LoRA: equal to the base at step 0, only adapters train, merging keeps the function and the names."""

import pytest
import torch

from tinylm.config import GPTConfig
from tinylm.generate.decode import generate_batch
from tinylm.model.gpt import GPT
from tinylm.model.lora import (
    LoRAError,
    LoRALinear,
    TokenRows,
    adapter_state,
    apply_lora,
    load_adapters,
    lora_settings,
    merge_lora,
    read_adapters,
    save_adapters,
    trainable_share,
)
from tinylm.train.checkpoint import load_model, model_checkpoint, save_checkpoint


def tiny_gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32, **overrides))


def test_wrapped_model_equals_base_at_step_zero():
    model = tiny_gpt()
    idx = torch.randint(0, 50, (3, 16))
    before, _ = model(idx)
    wrapped = apply_lora(model, rank=4, targets=("attn.c_attn", "mlp.c_fc"))
    assert wrapped == ["transformer.h.0.attn.c_attn", "transformer.h.0.mlp.c_fc",
                       "transformer.h.1.attn.c_attn", "transformer.h.1.mlp.c_fc"]
    after, _ = model(idx)
    assert torch.equal(before, after)  # B = 0: not close, identical


def test_only_adapters_train_and_first_gradient_reaches_b():
    model = tiny_gpt()
    apply_lora(model, rank=2, alpha=8)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    idx = torch.randint(0, 50, (2, 16))
    _, loss = model(idx, idx)
    loss.backward()
    layer = model.transformer.h[0].attn.c_attn
    assert layer.lora_A.grad.abs().max() == 0  # dL/dA is Bᵀ(...) and B is zero
    assert layer.lora_B.grad.abs().max() > 0
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2).step()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name


def test_lora_forward_matches_formula():
    torch.manual_seed(1)
    base = torch.nn.Linear(6, 5)
    layer = LoRALinear(base, rank=3, alpha=6)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 6)
    expected = x @ base.weight.T + base.bias + 2.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_merge_keeps_logits_and_names():
    model = tiny_gpt(mlp="swiglu", bias=False)
    names = [n for n, _ in model.named_parameters()]
    apply_lora(model, rank=4, alpha=16, targets=("attn.c_attn", "attn.c_proj", "mlp.c_gate", "mlp.c_proj"))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.normal_(std=0.1)  # as after training: a real update
    idx = torch.randint(0, 50, (2, 16))
    unmerged, _ = model(idx)
    assert merge_lora(model) == 8
    merged, _ = model(idx)
    assert (merged - unmerged).abs().max() < 1e-5
    assert [n for n, _ in model.named_parameters()] == names
    assert not any(isinstance(m, LoRALinear) for m in model.modules())


def test_adapters_round_trip_onto_fresh_base():
    model = tiny_gpt()
    apply_lora(model, rank=2, targets=("attn.c_proj",))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.normal_()
    state = adapter_state(model)
    assert lora_settings(model) == {"rank": 2, "alpha": 2, "targets": ["attn.c_proj"], "token_ids": []}
    assert set(state["tensors"]) == {f"transformer.h.{i}.attn.c_proj.lora_{m}" for i in (0, 1) for m in "AB"}
    fresh = tiny_gpt()
    load_adapters(fresh, state)
    idx = torch.randint(0, 50, (2, 16))
    assert torch.equal(model(idx)[0], fresh(idx)[0])
    adapters, total = trainable_share(fresh)
    assert adapters == 2 * (2 * 32 + 32 * 2) and total == sum(p.numel() for p in fresh.parameters())


@pytest.mark.parametrize("rank, targets, message", [
    (0, ("attn.c_attn",), "rank 0 does not fit"),
    (33, ("attn.c_attn",), "from 1 to 32"),
    (2, ("attn.q_proj",), "unknown LoRA target"),
    (2, (), "unknown LoRA target"),
])
def test_bad_settings_say_what_to_do(rank, targets, message):
    with pytest.raises(LoRAError, match=message):
        apply_lora(tiny_gpt(), rank=rank, targets=targets)


def test_no_matching_layer_and_double_wrap_are_refused():
    moe = tiny_gpt(n_experts=4, n_experts_active=2)
    with pytest.raises(LoRAError, match="no linear layer"):
        apply_lora(moe, rank=2, targets=("mlp.c_fc",))
    model = tiny_gpt()
    apply_lora(model, rank=2)
    with pytest.raises(LoRAError, match="already has LoRA"):
        apply_lora(model, rank=2)
    other = tiny_gpt()
    apply_lora(other, rank=2, targets=("mlp.c_fc",))
    with pytest.raises(LoRAError, match="other layers"):
        load_adapters(tiny_gpt(), adapter_state(other) | {"settings": {"rank": 2, "alpha": 2,
                                                                       "targets": ["attn.c_attn"]}})


def _trained(model: GPT) -> GPT:
    """As after some training: every adapter and token row moved away from its start."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.normal_(std=0.1)
            if isinstance(module, TokenRows):
                module.rows.normal_()
    return model


def test_token_rows_start_equal_and_only_their_rows_change():
    model = tiny_gpt()
    idx = torch.randint(0, 47, (3, 16))
    idx[0, :4] = torch.tensor([47, 48, 49, 47])
    before, _ = model(idx)
    apply_lora(model, rank=2, token_ids=[47, 48])
    assert torch.equal(model(idx)[0], before)
    rows = model.transformer.wte.rows
    assert rows is model.lm_head.rows  # tied weights: one set of rows for the embedding and the head
    with torch.no_grad():
        rows.normal_()  # the rows alone move (B stays zero)
    after, _ = model(idx)
    assert ((after - before).abs().amax(dim=(0, 1)) > 0)[[47, 48]].all()  # their logits moved
    # rows 1 and 2 never read ids 47 or 48, so every other token's logit is what the base gave
    assert torch.equal(after[1:, :, :47], before[1:, :, :47]) and torch.equal(after[1:, :, 49], before[1:, :, 49])
    assert not torch.equal(after[0], before[0])  # row 0 reads them
    trainable, _ = trainable_share(model)
    per_layer = 2 * (32 + 96) + 2 * (32 + 32)  # c_attn 32 -> 96 and c_proj 32 -> 32, rank 2
    assert trainable == 2 * per_layer + 2 * 32


def test_token_rows_follow_an_embedding_lookup_and_a_head_by_hand():
    torch.manual_seed(3)
    embedding, head = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False)
    ids = torch.tensor([2, 7])
    rows = torch.nn.Parameter(torch.randn(2, 4))
    table = embedding.weight.detach().clone()
    table[ids] = rows.detach()
    x = torch.tensor([[2, 3, 7, 7]])
    assert torch.allclose(TokenRows(embedding, ids, rows)(x), table[x], atol=1e-6)
    weight = head.weight.detach().clone()
    weight[ids] = rows.detach()
    h = torch.randn(1, 4, 4)
    assert torch.allclose(TokenRows(head, ids, rows)(h), h @ weight.T, atol=1e-6)


def test_merged_model_with_token_rows_keeps_logits_and_names():
    model = tiny_gpt()
    names = [n for n, _ in model.named_parameters()]
    apply_lora(model, rank=4, token_ids=[48, 49])
    _trained(model)
    idx = torch.randint(0, 50, (2, 16))
    unmerged, _ = model(idx)
    assert merge_lora(model) == 6  # 2 layers x 2 targets, the embedding and the head
    merged, _ = model(idx)
    assert (merged - unmerged).abs().max() < 1e-5
    assert [n for n, _ in model.named_parameters()] == names
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied


def test_adapters_file_with_token_rows_round_trips(tmp_path):
    model = tiny_gpt()
    apply_lora(model, rank=2, token_ids=[49])
    _trained(model)
    size = save_adapters(tmp_path / "adapters.pt", model, base="tiny")
    saved = read_adapters(tmp_path / "adapters.pt")
    assert saved["base"] == "tiny" and saved["settings"]["token_ids"] == [49]
    assert size < 4 * sum(p.numel() for p in model.parameters()) / 2  # well under the fp32 weights' bytes
    fresh = tiny_gpt()  # the same base: tiny_gpt seeds its weights
    load_adapters(fresh, saved)
    idx = torch.randint(0, 50, (2, 16))
    assert torch.equal(model(idx)[0], fresh(idx)[0])


def test_checkpoint_of_a_lora_model_loads_merged(tmp_path):
    model = tiny_gpt()
    apply_lora(model, rank=2, targets=("attn.c_attn", "mlp.c_fc"), token_ids=[48, 49])
    _trained(model)
    save_checkpoint(tmp_path / "best.pt", model_checkpoint(model))
    loaded, _, state = load_model(tmp_path / "best.pt")
    assert state["lora"] == lora_settings(model)
    assert not any(isinstance(m, (LoRALinear, TokenRows)) for m in loaded.modules())
    model.eval()
    idx = torch.randint(0, 50, (2, 16))
    assert (loaded(idx)[0] - model(idx)[0]).abs().max() < 1e-5
    # greedy decoding (KV cache, the CPU head copy) reads the wrapped model too, and agrees with the merged one
    prompts = [[1, 2, 3], [4, 5]]
    assert generate_batch(model, prompts, 6, temperature=0.0) == generate_batch(loaded, prompts, 6, temperature=0.0)
