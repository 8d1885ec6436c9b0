"""GPT: parameter counts from first principles, GPT-2 names and shapes, initialisation, forward contract."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from tinylm.config import GPT2_124M, GPTConfig
from tinylm.losses import next_token_loss
from tinylm.model import GPT
from tinylm.tracks import TRACKS


def expected_parameters(cfg: GPTConfig) -> int:
    """Count GPT-2's parameters by hand: embeddings + n_layer blocks + final LayerNorm (+ an untied head)."""
    C, V, b = cfg.n_embd, cfg.vocab_size, int(cfg.bias)
    embeddings = V * C + cfg.block_size * C  # wte + wpe
    layer_norm = C + b * C  # gain (+ bias)
    attention = (C * 3 * C + b * 3 * C) + (C * C + b * C)  # c_attn + c_proj
    mlp = (C * 4 * C + b * 4 * C) + (4 * C * C + b * C)  # c_fc + c_proj
    per_layer = 2 * layer_norm + attention + mlp
    head = 0 if cfg.tie_weights else V * C
    return embeddings + cfg.n_layer * per_layer + layer_norm + head


def build_on_meta(cfg: GPTConfig) -> GPT:
    """A model with shapes but no storage: instant even for GPT-2 size."""
    with torch.device("meta"):
        return GPT(cfg)


def test_gpt2_small_has_124_439_808_parameters():
    assert build_on_meta(GPT2_124M).num_parameters() == 124_439_808
    assert expected_parameters(GPT2_124M) == 124_439_808  # the hand formula agrees with the published count


PRESETS = [(f"{track.name}/{profile}", preset) for track in TRACKS.values() for profile, (preset, _) in track.recipes.items()]


@pytest.mark.parametrize("preset", [p for _, p in PRESETS], ids=[name for name, _ in PRESETS])
def test_track_presets_parameter_count_matches_the_formula(preset):
    cfg = dataclasses.replace(preset, vocab_size=65)  # the real vocabulary comes from the tokenizer
    assert build_on_meta(cfg).num_parameters() == expected_parameters(cfg)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("tie_weights", [True, False])
def test_tiny_parameter_count_matches_the_formula(tiny_config, bias, tie_weights):
    cfg = tiny_config(bias=bias, tie_weights=tie_weights)
    assert GPT(cfg).num_parameters() == expected_parameters(cfg)


def test_tied_and_untied_heads_differ_by_vocab_times_width(tiny_config):
    tied, untied = GPT(tiny_config(tie_weights=True)), GPT(tiny_config(tie_weights=False))
    cfg = tied.config
    assert untied.num_parameters() - tied.num_parameters() == cfg.vocab_size * cfg.n_embd
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.lm_head.weight is not untied.transformer.wte.weight


def test_num_parameters_can_exclude_position_embeddings(make_model):
    model = make_model()
    cfg = model.config
    assert model.num_parameters() - model.num_parameters(exclude_position_embeddings=True) == cfg.block_size * cfg.n_embd


def test_parameter_names_and_shapes_follow_gpt2(make_model):
    """Keys match OpenAI's checkpoint; Linear weights are GPT-2's Conv1D matrices transposed."""
    model = make_model(tie_weights=False)
    C, V, T = model.config.n_embd, model.config.vocab_size, model.config.block_size
    conv1d_shapes = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    expected = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (T, C),
                "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,), "lm_head.weight": (V, C)}
    for i in range(model.config.n_layer):
        for ln in ("ln_1", "ln_2"):
            expected[f"transformer.h.{i}.{ln}.weight"] = (C,)
            expected[f"transformer.h.{i}.{ln}.bias"] = (C,)
        for name, (fan_in, fan_out) in conv1d_shapes.items():
            expected[f"transformer.h.{i}.{name}.weight"] = (fan_out, fan_in)  # transposed Conv1D (fan_in, fan_out)
            expected[f"transformer.h.{i}.{name}.bias"] = (fan_out,)
    actual = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert actual == expected


def test_tied_model_state_dict_still_has_lm_head_weight(make_model):
    state = make_model().state_dict()
    assert "lm_head.weight" in state and "transformer.wte.weight" in state
    assert torch.equal(state["lm_head.weight"], state["transformer.wte.weight"])


def test_initialisation_follows_gpt2():
    """N(0, 0.02) for matrices and embeddings, residual projections at 0.02/sqrt(2 n_layer), zero biases, unit LN gains."""
    torch.manual_seed(0)
    n_layer = 4
    model = GPT(GPTConfig(vocab_size=512, block_size=64, n_layer=n_layer, n_head=4, n_embd=128))
    params = dict(model.named_parameters())
    residual = torch.cat([p.flatten() for n, p in params.items() if n.endswith("c_proj.weight")])
    normal = torch.cat([p.flatten() for n, p in params.items()
                        if p.dim() == 2 and not n.endswith("c_proj.weight")])
    assert normal.std().item() == pytest.approx(0.02, rel=0.03)
    assert abs(normal.mean().item()) < 1e-3
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(2 * n_layer), rel=0.03)
    for name, p in params.items():
        if name.endswith(".bias"):
            assert torch.all(p == 0), name
        elif "ln_" in name:
            assert torch.all(p == 1), name


def test_initial_loss_is_close_to_uniform(make_model):
    """Small init means near-uniform predictions: the loss starts at about ln(vocab_size)."""
    model = make_model().eval()
    V, T = model.config.vocab_size, model.config.block_size
    x = torch.randint(0, V, (8, T), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, V, (8, T), generator=torch.Generator().manual_seed(1))
    _, loss = model(x, y)
    assert loss.item() == pytest.approx(math.log(V), abs=0.1)


def test_forward_returns_logits_and_the_models_loss(make_model):
    model = make_model().eval()
    V = model.config.vocab_size
    x = torch.randint(0, V, (3, 10))
    y = torch.randint(0, V, (3, 10))
    logits, loss = model(x)
    assert logits.shape == (3, 10, V) and loss is None
    logits2, loss = model(x, y)
    torch.testing.assert_close(logits2, logits)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)))


def test_forward_passes_the_loss_mask_to_loss_fn(make_model):
    model = make_model().eval()
    x = torch.randint(0, model.config.vocab_size, (2, 8))
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, 5:] = True
    logits, loss = model(x, x, mask)
    torch.testing.assert_close(loss, next_token_loss(logits, x, mask))
    calls = []
    model.loss_fn = lambda logits, targets, m: calls.append(m) or logits.sum() * 0
    model(x, x, mask)
    assert calls[0] is mask


def test_prefix_logits_do_not_depend_on_sequence_length(make_model):
    """Running a prefix alone gives the same logits as the same positions of the full sequence."""
    model = make_model().eval()
    x = torch.randint(0, model.config.vocab_size, (2, model.config.block_size))
    full, _ = model(x)
    prefix, _ = model(x[:, :5])
    torch.testing.assert_close(prefix, full[:, :5], atol=1e-5, rtol=1e-5)


def test_sequence_longer_than_the_context_is_an_error(make_model):
    model = make_model()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, model.config.block_size + 1, dtype=torch.long))


def test_dropout_is_active_in_training_and_off_in_eval(make_model):
    model = make_model(dropout=0.3)
    x = torch.randint(0, model.config.vocab_size, (2, 8))
    model.train()
    assert not torch.allclose(model(x)[0], model(x)[0])
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])


def test_gradients_reach_every_parameter(make_model):
    model = make_model()
    x = torch.randint(0, model.config.vocab_size, (2, 8))
    _, loss = model(x, x)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
