"""A mixture of experts under torch.compile(fullgraph=True): one graph without breaks (no host sync, no control flow
on routed counts), the same logits, losses and gradients as eager, and the same load bookkeeping (counts, loss-free
biases) over a few training steps."""

import copy
import dataclasses

import pytest
import torch

from tinylm.config import GPTConfig, with_architecture
from tinylm.model.gpt import GPT
from tinylm.model.moe import end_of_step, moe_layers, read_expert_load


@pytest.mark.parametrize("balancing", ["loss_free", "aux_loss"])
def test_a_compiled_mixture_of_experts_is_one_graph_that_trains_as_eager_does(balancing):
    torch._dynamo.reset()
    config = with_architecture(GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32), "llama-moe")
    config = dataclasses.replace(config, balancing=balancing, bias_update_rate=0.01)
    torch.manual_seed(0)
    eager = GPT(config).train()
    plain = copy.deepcopy(eager)
    compiled = torch.compile(plain, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break is an error
    optimizers = [torch.optim.AdamW(model.parameters(), lr=1e-2) for model in (eager, plain)]
    batches = torch.Generator().manual_seed(0)
    for step in range(3):
        idx = torch.randint(0, 37, (4, 16), generator=batches)
        targets = torch.randint(0, 37, (4, 16), generator=batches)
        logits, loss = eager(idx, targets)
        compiled_logits, compiled_loss = compiled(idx, targets)
        torch.testing.assert_close(compiled_logits, logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(compiled_loss, loss, atol=1e-5, rtol=0)
        for layer, compiled_layer in zip(moe_layers(eager), moe_layers(plain)):
            assert torch.equal(compiled_layer.step_counts, layer.step_counts), f"step {step}: the load counts"
            assert layer.step_counts.sum() == 4 * 16 * config.n_experts_active
        loss.backward()
        compiled_loss.backward()
        for (name, p), q in zip(eager.named_parameters(), plain.parameters()):
            torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=0, msg=name)
        for model, optimizer in zip((eager, plain), optimizers):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            end_of_step(model)
        for layer, compiled_layer in zip(moe_layers(eager), moe_layers(plain)):
            assert torch.equal(compiled_layer.expert_bias, layer.expert_bias), f"step {step}: the loss-free biases"
    if balancing == "loss_free":
        assert any(layer.expert_bias.abs().sum() > 0 for layer in moe_layers(eager)), "the biases moved"
    assert read_expert_load(plain) == read_expert_load(eager)


@pytest.mark.parametrize("n_experts, top_k", [(4, 1), (8, 2), (6, 2)])
def test_dense_dispatch_computes_what_sorted_dispatch_computes(n_experts, top_k):
    """The two dispatches of MoE.forward, eager's and torch.compile's, on the same routing (some experts unchosen)."""
    from tinylm.model.moe import MoE

    config = with_architecture(GPTConfig(vocab_size=37, block_size=16, n_layer=1, n_head=2, n_embd=32), "llama-moe")
    torch.manual_seed(n_experts)
    moe = MoE(dataclasses.replace(config, n_experts=n_experts, n_experts_active=top_k)).double()
    flat = torch.randn(2, 32, dtype=torch.float64)  # 2 tokens: at most 2·k experts chosen, the others none
    chosen, weights, _ = moe.route(flat)
    counts = (chosen.flatten()[:, None] == torch.arange(n_experts)).sum(dim=0)
    assert (counts == 0).any()
    dense = moe._dispatch_dense(flat, chosen, weights)
    torch.testing.assert_close(dense, moe._dispatch_sorted(flat, chosen, weights, counts), rtol=1e-12, atol=1e-12)
