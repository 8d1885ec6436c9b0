"""ZeRO-1 (tinylm.train.zero) as a real optimizer, and the one place a run's parallel way is chosen
(tinylm.train.parallel): torch's AdamW update to float32 rounding, AdamW's state format both ways, the parameters as
views of one flat buffer, a Trainer that selects it from its config and resumes it, the combinations it cannot train.
In two processes (training, exact resume, a peak below DDP's): test_distributed.py; the command line: test_fsdp.py."""

import copy

import numpy as np
import pytest
import torch
import torch.distributed as dist

from tinylm.config import ConfigError, GPTConfig, TrainConfig
from tinylm.distributed import World
from tinylm.errors import InputError, TinyLMError
from tinylm.model.gpt import GPT
from tinylm.train.parallel import choose_way
from tinylm.train.trainer import Trainer
from tinylm.train.zero import ZeroAdamW

CONFIG = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
LR, BETAS, DECAY, CLIP = 3e-3, (0.9, 0.95), 0.1, 0.5


def two_models():
    torch.manual_seed(0)
    plain, other = GPT(CONFIG), GPT(CONFIG)
    other.load_state_dict(plain.state_dict())
    return plain, other


def adamw(model) -> torch.optim.AdamW:
    """torch's AdamW with build_optimizer's split, one tensor at a time."""
    params = list(model.parameters())
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": DECAY},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                             lr=LR, betas=BETAS, foreach=False)


def train(model, optimizer, steps: int, seed: int = 0, clip_here: bool = False) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids, targets = (torch.randint(CONFIG.vocab_size, (4, CONFIG.block_size), generator=generator)
                        for _ in range(2))
        model(ids, targets)[1].backward()
        if clip_here:
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def assert_same_weights(a, b, **tolerance) -> None:
    for (name, x), y in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(x, y, msg=lambda m: f"{name}: {m}", **tolerance)


def test_in_a_world_of_one_it_is_torchs_adamw_with_the_decay_split_and_clipping_on_views_of_one_buffer():
    plain, model = two_models()
    zero = ZeroAdamW(model, LR, BETAS, weight_decay=DECAY, grad_clip=CLIP)
    assert isinstance(zero, torch.optim.Optimizer)
    buffer = zero.flat.untyped_storage().data_ptr()
    assert all(p.untyped_storage().data_ptr() == buffer for p in model.parameters()), "every weight lives in it"
    train(plain, adamw(plain), 3, clip_here=True)
    train(model, zero, 3)
    assert_same_weights(plain, model, rtol=1e-5, atol=1e-6)  # the norm is summed in another order
    assert all(p.untyped_storage().data_ptr() == buffer for p in model.parameters()), "updated in place"
    assert zero.state_bytes() == 9 * sum(p.numel() for p in model.parameters()), "two fp32 moments, a byte of mask"


def test_its_state_is_adamws_so_either_optimizer_continues_the_other_exactly():
    plain, model = two_models()
    zero = ZeroAdamW(model, LR, BETAS, weight_decay=DECAY, grad_clip=None)
    train(model, zero, 2)
    saved = copy.deepcopy(zero.state_dict())  # as a checkpoint holds it: not the live moments
    assert sorted(saved["state"]) == list(range(len(list(model.parameters()))))
    assert all(int(moments["step"]) == 2 for moments in saved["state"].values())
    plain.load_state_dict(model.state_dict())
    continued = adamw(plain)
    continued.load_state_dict(saved)  # ZeRO-1's checkpoint into torch's AdamW
    train(model, zero, 2, seed=1)
    train(plain, continued, 2, seed=1)
    assert_same_weights(plain, model, rtol=1e-6, atol=1e-7)

    _, fresh = two_models()
    fresh.load_state_dict(plain.state_dict())
    back = ZeroAdamW(fresh, LR, BETAS, weight_decay=DECAY, grad_clip=None)
    back.load_state_dict(continued.state_dict())  # and torch's AdamW's into ZeRO-1
    assert back.steps == 4
    train(plain, continued, 1, seed=2)
    train(fresh, back, 1, seed=2)
    assert_same_weights(plain, fresh, rtol=1e-6, atol=1e-7)


def trainer(cfg: TrainConfig, out_dir=None) -> Trainer:
    torch.manual_seed(0)
    tokens = (np.arange(3000) * 7 % CONFIG.vocab_size).astype(np.uint16)
    return Trainer(GPT(CONFIG), cfg, tokens, tokens[:200], out_dir=out_dir, device="cpu")


def test_a_trainer_selects_it_from_its_config_trains_as_adamw_does_and_resumes_exactly(tmp_path):
    cfg = TrainConfig(batch_size=4, max_steps=6, warmup_steps=1, eval_interval=0, log_interval=100, seed=0,
                      dtype="float32", zero=True)
    straight = trainer(cfg)
    assert isinstance(straight.optimizer, ZeroAdamW) and straight.parallel.way == "zero"
    straight.fit()
    plain = trainer(TrainConfig(**{**cfg.to_dict(), "zero": False}))
    plain.fit()
    assert_same_weights(plain.model, straight.model, rtol=1e-5, atol=1e-6)

    stopped = trainer(cfg, out_dir=tmp_path)
    stopped.fit(stop_after=3)
    resumed = trainer(cfg)
    resumed.resume(tmp_path)
    resumed.fit()
    assert_same_weights(straight.model, resumed.model, rtol=0, atol=0)


def test_with_lora_only_the_adapters_live_in_the_buffer_and_train_as_adamw_trains_them():
    """Post-training's case: a trainable subset. The frozen weights stay where they are, untouched."""
    from tinylm.model.lora import apply_lora

    plain, model = two_models()
    for m in (plain, model):
        apply_lora(m, rank=4)
        torch.manual_seed(1)
        for p in m.parameters():
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.02)  # B starts at zero: give both a gradient from the first step
    frozen = {name: p.clone() for name, p in model.named_parameters() if not p.requires_grad}
    zero = ZeroAdamW(model, LR, BETAS, weight_decay=DECAY, grad_clip=None)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert zero.flat.numel() == sum(p.numel() for p in trainable)
    train(plain, torch.optim.AdamW([{"params": [p for p in plain.parameters() if p.requires_grad and p.dim() >= 2],
                                     "weight_decay": DECAY},
                                    {"params": [p for p in plain.parameters() if p.requires_grad and p.dim() < 2],
                                     "weight_decay": 0.0}], lr=LR, betas=BETAS, foreach=False), 2)
    train(model, zero, 2)
    assert_same_weights(plain, model, rtol=1e-6, atol=1e-7)
    assert all(torch.equal(p, frozen[name]) for name, p in model.named_parameters() if not p.requires_grad)


@pytest.mark.parametrize("changes, message", [
    ({"zero": True, "optimizer": "muon"}, "ZeRO-1 (--set zero=true) trains with AdamW: muon works on whole matrices"),
    ({"zero": True, "dtype": "float16"}, "ZeRO-1 (--set zero=true) does not train in float16 with a gradient scaler"),
    ({"fsdp": True}, "--fsdp shards the model over torchrun's processes: start the run with torchrun"),
])
def test_a_way_that_cannot_train_is_a_one_line_error(changes, message):
    cfg = TrainConfig(**changes)
    dtype = torch.float16 if cfg.dtype == "float16" else torch.float32
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        choose_way(cfg, World(), torch.device("cpu"), dtype, pretraining=True)


def test_fsdp_is_for_pretraining_and_zero_for_every_trainer(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(InputError, match="only pretraining .* shards the model"):
            choose_way(TrainConfig(fsdp=True), World(), torch.device("cpu"), torch.float32, pretraining=False)
        assert choose_way(TrainConfig(zero=True), World(), torch.device("cpu"), torch.float32, False) == "zero"
    finally:
        dist.destroy_process_group()
    assert choose_way(TrainConfig(), World(size=2), torch.device("cpu"), torch.float32, True) == "ddp"
    assert choose_way(TrainConfig(), World(), torch.device("cpu"), torch.float32, True) == "single"
    with pytest.raises(ConfigError, match="fsdp and zero are two ways to shard a run"):
        TrainConfig(fsdp=True, zero=True)


def test_zero_refuses_a_mixture_of_experts_whose_unchosen_experts_get_no_gradient():
    """AdamW leaves a parameter without a gradient as it is; ZeRO-1's flat step would decay it and move its moments."""
    from tinylm.train.parallel import Parallel

    model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16, n_experts=4, n_experts_active=1))
    with pytest.raises(InputError, match="a mixture of experts leaves the experts no token chose without one"):
        Parallel(model, TrainConfig(zero=True), World(), torch.device("cpu"), torch.float32)


def test_a_zero_checkpoint_resumed_without_zero_keeps_this_runs_fused_adamw():
    """ZeRO-1's state_dict is AdamW's format without AdamW's `fused` flag; loading it must not turn the kernel off."""
    saved = trainer(TrainConfig(max_steps=2, zero=True, dtype="float32", warmup_steps=1))
    saved.fit()
    resumed = trainer(TrainConfig(max_steps=4, dtype="float32", warmup_steps=1))
    assert all(group["fused"] for group in resumed.optimizer.param_groups)
    resumed.parallel.load_optimizer_state(resumed.optimizer, saved.parallel.optimizer_state(saved.optimizer))
    assert all(group["fused"] for group in resumed.optimizer.param_groups)


def test_a_model_cast_after_the_optimizer_was_made_is_an_error_not_a_silent_no_op():
    """.to(dtype) gives each parameter storage of its own, outside the buffer the step updates."""
    _, model = two_models()
    zero = ZeroAdamW(model, LR, BETAS, weight_decay=DECAY, grad_clip=None)
    model.to(torch.float64)
    ids = torch.randint(CONFIG.vocab_size, (2, CONFIG.block_size))
    model(ids, ids)[1].backward()
    with pytest.raises(TinyLMError, match="parameters left its flat buffer"):
        zero.step()
