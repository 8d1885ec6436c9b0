"""The streaming (FlashAttention-style) attention against PyTorch's: equal values and gradients, causal, with
grouped-query heads and a context that no tile size divides; and its memory linear in the context where the
written-out attention's is quadratic, measured by the profiler."""

import pytest
import torch
import torch.nn.functional as F

from tinylm.model.attention import explicit_causal_attention, repeat_kv
from tinylm.model.streaming_attention import streaming_attention
from tinylm.train.memory import measured_peak


@pytest.mark.parametrize("batch, heads, kv_heads, context, head_size, tile", [
    (2, 4, 4, 64, 16, 16),  # multi-head, tiles that divide the context
    (2, 4, 2, 100, 16, 32),  # grouped-query heads, a last tile of 4
    (1, 6, 1, 77, 8, 64),  # multi-query, one tile larger than the rest
])
def test_streaming_attention_equals_sdpa_in_values_and_gradients(batch, heads, kv_heads, context, head_size, tile):
    generator = torch.Generator().manual_seed(0)

    def leaf(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_()

    q, k, v = leaf(batch, heads, context, head_size), *(leaf(batch, kv_heads, context, head_size) for _ in "kv")
    grad_out = torch.randn(batch, heads, context, head_size, generator=generator, dtype=torch.float64)
    results = []
    for attention in (lambda: streaming_attention(q, k, v, tile),
                      lambda: F.scaled_dot_product_attention(q, repeat_kv(k, heads // kv_heads),
                                                             repeat_kv(v, heads // kv_heads), is_causal=True)):
        out = attention()
        q.grad = k.grad = v.grad = None
        out.backward(grad_out)
        results.append([out.detach(), q.grad, k.grad, v.grad])
    for name, streamed, reference in zip(("output", "dq", "dk", "dv"), *results):
        torch.testing.assert_close(streamed, reference, rtol=1e-10, atol=1e-10, msg=name)


def test_a_future_key_changes_nothing_before_it():
    q, k, v = (torch.randn(1, 2, 40, 8) for _ in "qkv")
    before = streaming_attention(q, k, v, tile=16)
    k[:, :, 30:], v[:, :, 30:] = 100.0, -100.0
    after = streaming_attention(q, k, v, tile=16)
    torch.testing.assert_close(after[:, :, :30], before[:, :, :30], rtol=0, atol=0)
    assert not torch.allclose(after[:, :, 30:], before[:, :, 30:])


def test_float32_inputs_stay_float32_and_agree_with_sdpa():
    q, k, v = (torch.randn(2, 4, 50, 16) for _ in "qkv")
    out = streaming_attention(q, k, v, tile=16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=1e-5, atol=1e-5)


def attention_memory(attention, context: int) -> int:
    """Peak bytes a forward and backward pass of `attention` allocates beyond q, k, v and the output's gradient."""
    q, k, v = (torch.randn(1, 4, context, 16, requires_grad=True) for _ in "qkv")
    grad_out = torch.randn(1, 4, context, 16)
    return measured_peak(lambda: attention(q, k, v).backward(grad_out), 0, torch.device("cpu"))


def test_streaming_memory_grows_linearly_with_the_context_where_written_out_attention_grows_quadratically():
    explicit = [attention_memory(explicit_causal_attention, context) for context in (512, 1024)]
    streamed = [attention_memory(lambda q, k, v: streaming_attention(q, k, v, tile=64), context)
                for context in (512, 1024)]
    assert explicit[1] / explicit[0] > 3.5, explicit  # (T, T) scores, mask, softmax: 4x for twice the context
    assert streamed[1] / streamed[0] < 2.5, streamed  # per-position tensors and one tile's scores: about 2x
    assert streamed[1] < explicit[1] / 5
