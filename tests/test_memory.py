"""The memory a training step needs, by arithmetic (tinylm.train.memory), against a real step's peak of live tensors;
activation checkpointing; and a batch that cannot fit is refused before the first step with the figure and a batch
size that fits, not left to the OOM killer."""

import dataclasses

import numpy as np
import pytest
import torch

from tests.conftest import TINY_VOCAB
from tests.helpers import REPO, run_cli
from tinylm.bench.measure import PRESETS
from tinylm.cli import train as train_cli
from tinylm.cli.errors import describe
from tinylm.config import TrainConfig, with_architecture
from tinylm.model.gpt import GPT
from tinylm.train import memory
from tinylm.train.memory import (
    NotEnoughMemory,
    Shares,
    check_training_memory,
    held_bytes,
    measured_peak,
    memory_account,
    step_memory,
)
from tinylm.train.options import check_resume
from tinylm.train.recipes import TRACKS, resolve_recipe
from tinylm.train.trainer import Trainer


def test_a_batch_that_cannot_fit_is_refused_at_construction_naming_a_batch_size_that_does(make_model, train_config,
                                                                                            tokens, monkeypatch):
    monkeypatch.setattr(memory, "free_memory", lambda device: 2 * 10**9)
    model = make_model()
    with pytest.raises(NotEnoughMemory) as refused:
        Trainer(model, train_config(batch_size=10**8), *tokens, device="cpu")
    message = describe(refused.value)
    need = step_memory(model.config, model.num_parameters(), torch.float32, "cpu")
    fits = int(message.split("(--batch-size ")[1].split(",")[0])
    held = sum(p.numel() * 4 for p in model.parameters())
    assert need.total(fits) <= 2 * 10**9 + held < need.total(fits + 1)
    assert message.startswith(f"one training step needs about {need.total(10**8) / 1e9:.1f} GB (")
    assert f"micro-batch of 100,000,000 sequences of 16 tokens), more than the {(2e9 + held) / 1e9:.1f} GB the CPU " \
           f"has; use a batch size of at most {fits:,} (--batch-size {fits}, with --set grad_accum_steps=" \
           f"{-(-10**8 // fits)} to keep the optimizer's batch), or a smaller model" in message
    Trainer(model, train_config(batch_size=fits), *tokens, device="cpu")  # the advice holds

    # A GPU's memory counts the activations in bf16, and without the CPU's heap overhead: more sequences fit.
    with pytest.raises(NotEnoughMemory, match=r"more than the 2\.0 GB the GPU \(cuda:0\) has; use a batch size of at "
                                              r"most ([\d,]+)") as on_gpu:
        check_training_memory(model, 10**8, torch.device("cuda", 0), torch.bfloat16)
    assert int(on_gpu.value.args[0].split("(--batch-size ")[1].split(",")[0]) > fits

    monkeypatch.setattr(memory, "free_memory", lambda device: 0)
    with pytest.raises(NotEnoughMemory, match="even one sequence does not fit: use a smaller model or a shorter"):
        Trainer(model, train_config(batch_size=1), *tokens, device="cpu")


def test_train_with_a_batch_size_of_a_hundred_million_is_a_one_line_error_before_any_step(data_root, tmp_path):
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--batch-size", 100_000_000,
                     "--out", tmp_path / "run", data_dir=data_root)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: one training step needs about ") and "use a batch size of at most " in line
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


# The course's shapes: the bench presets of the cpu recipes (characters; TinyStories' trimmed GPT-2 vocabulary, as
# GPT-2 and as Llama; GPT-2's vocabulary on the smoke shape) and the gpu recipe's character model with its dropout.
COURSE_SHAPES = {
    "char-cpu": (PRESETS["nanogpt-cpu"], 12),
    "stories-cpu": (PRESETS["tinystories-cpu"], 16),
    "stories-cpu-llama": (with_architecture(PRESETS["tinystories-cpu"], "llama"), 16),
    "gpt2-vocab": (PRESETS["gpt2-smoke"], 8),
    "char-gpu-dropout": (TRACKS["shakespeare-char"].recipes["gpu"][0].config(vocab_size=65), 2),
}


@pytest.mark.parametrize("shape, dtype, checkpointing", [
    ("char-cpu", torch.float32, False), ("char-cpu", torch.float32, True),
    ("stories-cpu", torch.bfloat16, False), ("stories-cpu-llama", torch.float32, True),
    ("stories-cpu-llama", torch.bfloat16, False), ("gpt2-vocab", torch.float32, False),
    ("char-gpu-dropout", torch.float32, True), ("char-gpu-dropout", torch.bfloat16, False),
])
def test_the_account_is_within_10_percent_of_the_peak_of_live_tensors_the_profiler_measures(shape, dtype,
                                                                                            checkpointing):
    config, batch_size = COURSE_SHAPES[shape]
    torch.manual_seed(0)
    model = GPT(config)
    trainer = Trainer(model, TrainConfig(batch_size=batch_size, max_steps=3, warmup_steps=1,
                                         dtype=str(dtype).removeprefix("torch."),
                                         activation_checkpointing=checkpointing),
                      (np.arange(20_000) % config.vocab_size).astype(np.uint16), np.zeros(64, np.uint16),
                      device="cpu")
    trainer._optimizer_step()  # AdamW's moments exist from the first step on
    measured = measured_peak(trainer._optimizer_step, held_bytes(model, trainer.optimizer), torch.device("cpu"))
    account = memory_account(config, model.num_parameters(), batch_size, dtype, checkpointing)
    assert abs(account.peak / measured - 1) <= 0.10, (account.peak, measured, account.rows())
    assert measured > 4 * model.num_parameters() * 3, "parameters and moments alone are three times the weights"


def test_the_account_adds_up_and_checkpointing_keeps_one_input_per_block():
    config = PRESETS["tinystories-cpu"]
    parameters = GPT(config).num_parameters()
    plain, checkpointed = (memory_account(config, parameters, 16, torch.float32, checkpointing) for checkpointing
                           in (False, True))
    assert plain.parameters == plain.gradients == 4 * parameters and plain.optimizer_state == 8 * parameters
    assert plain.recompute == 0 and checkpointed.recompute == plain.blocks[0]
    assert checkpointed.blocks == (4 * config.n_embd * 16 * config.block_size,) * config.n_layer
    assert checkpointed.peak < plain.peak
    # twice the batch: the activations and the loss's tensors double, the weights' share stays
    double = memory_account(config, parameters, 32, torch.float32)
    assert double.backward_start == 2 * plain.backward_start
    assert sum(held for what, held in plain.rows()) > plain.peak  # the rows list the two phases' holders both


def test_a_sharded_run_counts_each_ranks_share_of_the_weights_gradients_and_moments(monkeypatch):
    """ZeRO-1 over 4 ranks keeps a quarter of AdamW's moments, FSDP a quarter of everything; the activations stay.
    A step that fits a rank only with its share of the moments is let through with ZeRO-1, refused without."""
    config = PRESETS["tinystories-cpu"]
    model = GPT(config)
    parameters = model.num_parameters()
    whole = memory_account(config, parameters, 16, torch.float32)
    zero = whole.on_rank(Shares(moments=1 / 4))
    fsdp = whole.on_rank(Shares(1 / 4, 1 / 4, 1 / 4))
    assert zero.optimizer_state == whole.optimizer_state // 4 == 2 * parameters
    assert whole.peak - zero.peak == 6 * parameters and zero.backward_start == whole.backward_start
    assert (fsdp.parameters, fsdp.gradients, fsdp.optimizer_state) == (parameters, parameters, 2 * parameters)
    assert fsdp.peak < zero.peak and fsdp.blocks == whole.blocks

    need = step_memory(config, parameters, torch.float32, "cpu", shares=Shares(moments=1 / 4))
    monkeypatch.setattr(memory, "free_memory", lambda device: need.total(16) - 4 * parameters)  # the weights held
    check_training_memory(model, 16, torch.device("cpu"), torch.float32, shares=Shares(moments=1 / 4))
    with pytest.raises(NotEnoughMemory):
        check_training_memory(model, 16, torch.device("cpu"), torch.float32)


def test_activation_checkpointing_changes_no_loss_and_no_gradient(make_model):
    x = torch.randint(0, TINY_VOCAB, (4, 16))
    results = []
    for checkpointing in (False, True):
        model = make_model(seed=1, dropout=0.1)
        model.activation_checkpointing = checkpointing
        torch.manual_seed(7)  # dropout's masks: the rebuilt forward pass draws the same ones
        loss = model(x, x)[1]
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()]))
    (plain_loss, plain_grads), (loss, grads) = results
    assert torch.equal(plain_loss, loss)
    for plain, checkpointed in zip(plain_grads, grads):
        torch.testing.assert_close(checkpointed, plain, rtol=1e-6, atol=1e-7)


def test_the_activation_checkpointing_option_reaches_the_trainer_and_may_change_on_resume(make_model, train_config,
                                                                                           tokens):
    args = train_cli.parse_args(["tinystories", "--activation-checkpointing"])
    assert resolve_recipe("tinystories", args.run, args.options).train.activation_checkpointing
    args = train_cli.parse_args(["tinystories"])
    assert not resolve_recipe("tinystories", args.run, args.options).train.activation_checkpointing
    model = make_model()
    Trainer(model, train_config(activation_checkpointing=True), *tokens, device="cpu")
    assert model.activation_checkpointing
    check_resume({"activation_checkpointing": True}, {"activation_checkpointing": False}, REPO)  # no error


def test_a_run_of_conversations_is_sized_by_its_longest_row_not_the_context(make_model, monkeypatch):
    """A long-context model fine-tuned on short conversations: the step's memory is that of its longest row."""
    model = make_model(block_size=4096)
    short = step_memory(dataclasses.replace(model.config, block_size=40), model.num_parameters(), torch.float32, "cpu")
    monkeypatch.setattr(memory, "free_memory", lambda device: short.total(8) + 10**6)
    check_training_memory(model, 8, torch.device("cpu"), torch.float32, longest=40)
    with pytest.raises(NotEnoughMemory, match="sequences of 4,096 tokens"):
        check_training_memory(model, 8, torch.device("cpu"), torch.float32)
