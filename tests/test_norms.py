"""RMSNorm and LayerNorm: tinylm's readable rms_norm against torch's RMSNorm and the formula, its invariances, and
the model building the norm its config asks for."""

import pytest
import torch
from torch import nn

from tinylm.model.gpt import GPT
from tinylm.model.norms import make_norm, rms_norm


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_rms_norm_equals_torch_rmsnorm_and_the_formula():
    x, weight = randn(3, 4, 10), randn(10, seed=1)
    torch_norm = nn.RMSNorm(10, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        torch_norm.weight.copy_(weight)
    by_hand = x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + 1e-5) * weight
    torch.testing.assert_close(rms_norm(x, weight, eps=1e-5), by_hand, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rms_norm(x, weight, eps=1e-5), torch_norm(x), rtol=1e-12, atol=1e-12)


def test_rms_norm_in_bfloat16_normalises_in_float32_and_returns_bfloat16():
    x, weight = randn(4, 64).to(torch.bfloat16), torch.ones(64, dtype=torch.bfloat16)
    out = rms_norm(x, weight)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, rms_norm(x.double(), weight.double()).to(torch.bfloat16))


@pytest.mark.parametrize("scale", [1e-2, 3.0, 1e3])
def test_rms_norm_ignores_a_positive_rescaling_of_its_input(scale):
    x, weight = randn(5, 16), randn(16, seed=1)
    torch.testing.assert_close(rms_norm(scale * x, weight, eps=0.0), rms_norm(x, weight, eps=0.0))


def test_rms_norm_output_has_unit_root_mean_square_with_unit_weight():
    out = rms_norm(randn(6, 32) * 7 + 2, torch.ones(32, dtype=torch.float64), eps=0.0)
    torch.testing.assert_close(out.pow(2).mean(-1), torch.ones(6, dtype=torch.float64))


def test_rms_norm_differs_from_layer_norm_unless_the_input_is_centred():
    x, weight = randn(4, 16) + 3.0, torch.ones(16, dtype=torch.float64)  # mean ~3: RMSNorm keeps it, LayerNorm not
    layer_norm = nn.functional.layer_norm(x, (16,), eps=0.0)
    assert not torch.allclose(rms_norm(x, weight, eps=0.0), layer_norm, atol=1e-3)
    centred = x - x.mean(dim=-1, keepdim=True)  # mean 0: the two coincide
    torch.testing.assert_close(rms_norm(centred, weight, eps=0.0), nn.functional.layer_norm(centred, (16,), eps=0.0))


def test_make_norm_builds_what_the_config_asks(tiny_config):
    rms = make_norm(tiny_config(norm="rmsnorm", norm_eps=1e-6))
    assert isinstance(rms, nn.RMSNorm) and rms.eps == 1e-6
    assert [name for name, _ in rms.named_parameters()] == ["weight"]
    layer = make_norm(tiny_config())
    assert isinstance(layer, nn.LayerNorm) and layer.eps == 1e-5
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    assert [name for name, _ in make_norm(tiny_config(bias=False)).named_parameters()] == ["weight"]


def test_model_layer_norm_path_is_gpt2s(make_model):
    """The GPT-2 default still uses LayerNorm with bias, computing (x - mean) / std * weight + bias."""
    model = make_model().double()
    norm = model.transformer.h[0].ln_1
    with torch.no_grad():
        norm.weight.copy_(randn(32, seed=1))
        norm.bias.copy_(randn(32, seed=2))
    x = randn(2, 5, 32)
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(norm(x), (x - mean) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias)


def test_rmsnorm_model_uses_rmsnorm_everywhere(make_model):
    model: GPT = make_model(norm="rmsnorm", bias=False)
    norms = [model.transformer.ln_f] + [m for block in model.transformer.h for m in (block.ln_1, block.ln_2)]
    assert all(isinstance(norm, nn.RMSNorm) for norm in norms)
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
