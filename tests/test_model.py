"""GPT: parameter counts from first principles, GPT-2 names and shapes, initialisation, forward contract; the same for
the Llama-style family (RMSNorm, RoPE, SwiGLU, grouped-query attention, mixture of experts)."""

import math

import pytest
import torch
import torch.nn.functional as F

from tinylm.config import GPT2_124M, LLAMA2C_STORIES15M, GPTConfig, with_architecture
from tinylm.model.gpt import GPT
from tinylm.model.losses import next_token_loss
from tinylm.model.mlp import SwiGLU
from tinylm.train.recipes import TRACKS

ARCHS = ["gpt2", "llama", "llama-moe"]


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


PRESETS = [(f"{track.name}/{profile}", preset)
           for track in TRACKS.values() for profile, (preset, _) in track.recipes.items()]


@pytest.mark.parametrize("preset", [p for _, p in PRESETS], ids=[name for name, _ in PRESETS])
def test_track_presets_parameter_count_matches_the_formula(preset):
    cfg = preset.config(vocab_size=65)  # the real vocabulary comes from the tokenizer
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
    position_parameters = model.num_parameters() - model.num_parameters(exclude_position_embeddings=True)
    assert position_parameters == cfg.block_size * cfg.n_embd


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
    """N(0, 0.02) for matrices and embeddings, residual projections at 0.02/sqrt(2 n_layer), zero biases, unit LN
    gains."""
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


@pytest.fixture
def arch_model(tiny_config):
    """Factory: the tiny shape with a block family of ARCHITECTURES (4 heads, so llama has 2 key/value heads)."""

    def make(arch: str, seed: int = 0, **overrides) -> GPT:
        torch.manual_seed(seed)
        return GPT(with_architecture(tiny_config(n_head=4, **overrides), arch))

    return make


def expected_llama_parameters(cfg: GPTConfig) -> int:
    """Count a Llama-style model by hand: no position table, RMSNorms (a gain each), GQA, a SwiGLU of 3 matrices."""
    C, V, H, b = cfg.n_embd, cfg.vocab_size, cfg.mlp_hidden_size, int(cfg.bias)
    kv = cfg.kv_heads * cfg.head_size  # each of k and v is this wide
    attention = C * (C + 2 * kv) + b * (C + 2 * kv) + C * C + b * C  # c_attn, c_proj
    swiglu = 2 * (C * H + b * H) + H * C + b * C  # c_gate and c_fc (up), c_proj (down)
    per_layer = 2 * C + attention + swiglu
    head = 0 if cfg.tie_weights else V * C
    return V * C + cfg.n_layer * per_layer + C + head


@pytest.mark.parametrize("tie_weights", [True, False])
@pytest.mark.parametrize("n_kv_head", [None, 2, 1])
def test_llama_parameter_count_matches_the_formula(tiny_config, tie_weights, n_kv_head):
    cfg = tiny_config(n_head=4, norm="rmsnorm", position="rope", mlp="swiglu", bias=False, tie_weights=tie_weights,
                      n_kv_head=n_kv_head)
    assert GPT(cfg).num_parameters() == expected_llama_parameters(cfg)


def test_llama2c_stories15m_parameter_count_matches_the_formula():
    model = build_on_meta(LLAMA2C_STORIES15M)
    assert model.num_parameters() == expected_llama_parameters(LLAMA2C_STORIES15M)
    assert 15_000_000 < model.num_parameters() < 15_400_000  # "15M"


def test_gqa_shrinks_attention_by_the_key_value_heads_it_drops(tiny_config):
    mha, gqa = GPT(tiny_config(n_head=4)), GPT(tiny_config(n_head=4, n_kv_head=1))
    C, hs, L = 32, 8, 2
    assert mha.num_parameters() - gqa.num_parameters() == L * 2 * (4 - 1) * hs * (C + 1)  # k and v rows (+ biases)


def test_llama_parameter_names_and_shapes(arch_model):
    model = arch_model("llama", tie_weights=False)
    C, V, H, kv = 32, 37, model.config.mlp_hidden_size, model.config.kv_heads * model.config.head_size
    expected = {"transformer.wte.weight": (V, C), "transformer.ln_f.weight": (C,), "lm_head.weight": (V, C)}
    for i in range(model.config.n_layer):
        expected.update({f"transformer.h.{i}.ln_1.weight": (C,), f"transformer.h.{i}.ln_2.weight": (C,),
                         f"transformer.h.{i}.attn.c_attn.weight": (C + 2 * kv, C),
                         f"transformer.h.{i}.attn.c_proj.weight": (C, C),
                         f"transformer.h.{i}.mlp.c_gate.weight": (H, C), f"transformer.h.{i}.mlp.c_fc.weight": (H, C),
                         f"transformer.h.{i}.mlp.c_proj.weight": (C, H)})
    assert {name: tuple(t.shape) for name, t in model.state_dict().items()} == expected  # no wpe, no biases


def test_swiglu_forward_is_the_gated_formula(tiny_config):
    torch.manual_seed(0)
    mlp = SwiGLU(tiny_config(mlp="swiglu", bias=False), hidden=48).double()
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    w_gate, w_up, w_down = mlp.c_gate.weight, mlp.c_fc.weight, mlp.c_proj.weight
    by_hand = (F.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T
    torch.testing.assert_close(mlp(x), by_hand, rtol=1e-12, atol=1e-12)
    silu = x @ w_gate.T * torch.sigmoid(x @ w_gate.T)  # silu(z) = z·σ(z)
    torch.testing.assert_close(mlp(x), (silu * (x @ w_up.T)) @ w_down.T, rtol=1e-12, atol=1e-12)


def test_swiglu_with_bias_adds_each_projections_bias(tiny_config):
    torch.manual_seed(0)
    mlp = SwiGLU(tiny_config(mlp="swiglu", bias=True), hidden=48).double()
    for linear in (mlp.c_gate, mlp.c_fc, mlp.c_proj):
        torch.nn.init.normal_(linear.bias)
    x = torch.randn(3, 32, dtype=torch.float64)
    gate, up = F.linear(x, mlp.c_gate.weight, mlp.c_gate.bias), F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias)
    torch.testing.assert_close(mlp(x), F.linear(F.silu(gate) * up, mlp.c_proj.weight, mlp.c_proj.bias))


@pytest.mark.parametrize("arch", ["llama", "llama-moe"])
def test_llama_family_initialisation(arch_model, arch):
    """GPT-2's scheme carries over: N(0, 0.02) matrices, residual projections (attention's and every expert's down
    projection) scaled by 1/sqrt(2 n_layer), norm gains at 1, the loss-free biases at 0."""
    model = arch_model(arch, n_layer=4, n_embd=128)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert p.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.15), name
        elif p.dim() == 2:
            assert p.std().item() == pytest.approx(0.02, rel=0.15), name
        else:
            assert ".ln_" in name or name.startswith("transformer.ln_f"), name
            assert torch.all(p == 1), name
    for name, buffer in model.named_buffers():
        if name.endswith("expert_bias"):
            assert torch.all(buffer == 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_family_starts_near_uniform_and_its_gradients_reach_every_parameter(arch_model, arch):
    model = arch_model(arch)
    V = model.config.vocab_size
    x = torch.randint(0, V, (4, 16), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, V, (4, 16), generator=torch.Generator().manual_seed(1))
    _, loss = model(x, y)
    assert loss.item() == pytest.approx(math.log(V), abs=0.1)
    loss.backward()
    for name, p in model.named_parameters():  # 64 tokens x 2 of 8 experts: every expert gets some (seeded)
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("arch", ARCHS)
def test_every_familys_prefix_logits_do_not_depend_on_sequence_length(arch_model, arch):
    model = arch_model(arch).eval()
    x = torch.randint(0, model.config.vocab_size, (2, model.config.block_size))
    with torch.no_grad():
        full, _ = model(x)
        prefix, _ = model(x[:, :5])
    torch.testing.assert_close(prefix, full[:, :5], atol=1e-5, rtol=1e-5)


def test_gpt2_default_block_is_unchanged_by_the_new_options(tiny_config):
    """The defaults build exactly GPT-2's modules: LayerNorm with bias, learned positions, a GELU MLP, full MHA."""
    model = GPT(tiny_config())
    block = model.transformer.h[0]
    assert isinstance(block.ln_1, torch.nn.LayerNorm) and block.ln_1.bias is not None
    assert model.rope is None and "wpe" in model.transformer
    assert isinstance(block.mlp.act, torch.nn.GELU) and block.mlp.act.approximate == "tanh"
    assert block.attn.c_attn.weight.shape == (3 * 32, 32)


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_hidden_states_through_the_head_are_the_logits(make_model, architecture):
    """A loss that fuses the head with the cross-entropy starts from hidden_states: the head on them must give the
    forward pass's logits, with the soft cap where a config has one."""
    model = make_model(logit_softcap=None if architecture == "gpt2" else 30.0).eval()
    if architecture == "llama":
        model = GPT(with_architecture(model.config, "llama")).eval()
    idx = torch.randint(model.config.vocab_size, (2, 8))
    hidden = model.hidden_states(idx)
    assert hidden.shape == (2, 8, model.config.n_embd)
    logits, _ = model(idx)
    torch.testing.assert_close(model._cap(model.lm_head(hidden)), logits, rtol=0, atol=0)
