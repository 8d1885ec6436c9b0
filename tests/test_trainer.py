"""The training loop: it learns, resumes bit-exactly, accumulates gradients correctly, and fails safely."""

import json
import math
import os
import signal
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tinylm.data.tokens import RandomWindowSampler
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.checkpoint import load_checkpoint
from tinylm.train.trainer import Trainer, TrainingDiverged


def weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def read_records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_model_overfits_one_fixed_batch(make_model, train_config, tokens):
    """With a train split of exactly one window, every batch is the same; the loss must collapse."""
    train, val = tokens
    single_window = train[: 16 + 1]
    losses = []
    cfg = train_config(max_steps=60, warmup_steps=5, learning_rate=1e-2, min_lr=1e-3, weight_decay=0.0)
    trainer = Trainer(make_model(), cfg, single_window, single_window, device="cpu",
                      callbacks=[lambda r: losses.append(r["loss"]) if r["event"] == "train" else None])
    final = trainer.fit()
    assert len(losses) == 60
    assert losses[-1] < 0.2 * losses[0]
    assert final["val_loss"] < 0.2 * losses[0]  # evaluated on that same window


@pytest.mark.parametrize("attention", ["flash", "explicit"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(make_model, train_config, tokens, tmp_path, attention):
    """2N steps in one go == N steps, save, a fresh Trainer resuming, N more steps (dropout on, CPU)."""
    train, val = tokens
    cfg = train_config(max_steps=8, eval_interval=3)
    shape = dict(dropout=0.2, attention=attention)

    straight = Trainer(make_model(**shape), cfg, train, val, out_dir=tmp_path / "straight", device="cpu")
    straight.fit()

    first = Trainer(make_model(**shape), cfg, train, val, out_dir=tmp_path / "split", device="cpu")
    first.fit(stop_after=4)
    assert first.step == 4 and not weights_equal(first.model, straight.model)
    torch.manual_seed(12345)  # whatever happens to the global RNG in between must not matter
    torch.rand(100)

    second = Trainer(make_model(seed=7, **shape), cfg, train, val, out_dir=tmp_path / "split", device="cpu")
    second.resume(tmp_path / "split")
    assert second.step == 4
    second.fit()
    assert second.step == straight.step == 8
    assert weights_equal(second.model, straight.model)
    opt_a, opt_b = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"]) for i in opt_a)


def test_dropout_makes_runs_differ_without_identical_rng(make_model, train_config, tokens):
    """Control for the resume test: with dropout, a different RNG stream gives different weights."""
    train, val = tokens
    a = Trainer(make_model(dropout=0.2), train_config(max_steps=3), train, val, device="cpu")
    a.fit()
    b = Trainer(make_model(dropout=0.2), train_config(max_steps=3), train, val, device="cpu")
    torch.manual_seed(999)  # the sampler keeps its own generator; only dropout's masks change
    b.fit()
    assert not weights_equal(a.model, b.model)


def test_gradient_accumulation_equals_one_big_batch_model_level(make_model):
    """k micro-batches of b, each loss scaled by 1/k, give the gradient of one batch of k*b."""
    k, b, T = 4, 3, 16
    model = make_model()
    x = torch.randint(0, model.config.vocab_size, (k * b, T), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, model.config.vocab_size, (k * b, T), generator=torch.Generator().manual_seed(1))
    model(x, y)[1].backward()
    big = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    for i in range(k):
        (model(x[i * b : (i + 1) * b], y[i * b : (i + 1) * b])[1] / k).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, big[n], atol=1e-6, rtol=0, msg=n)


def capture_one_step_gradients(trainer, batches):
    """Run one trainer optimizer step on the given batches; return the gradients the optimizer would use."""
    queue = list(batches)
    trainer.sampler.next_batch = lambda device: queue.pop(0)
    captured = {}

    def record_instead_of_stepping(*args, **kwargs):
        captured.update({n: p.grad.clone() for n, p in trainer.model.named_parameters()})

    trainer.optimizer.step = record_instead_of_stepping
    loss = trainer._optimizer_step().loss
    assert not queue
    return loss, captured


def test_gradient_accumulation_in_the_trainer_equals_one_big_batch(make_model, train_config, tokens):
    train, val = tokens
    k, b, T = 3, 2, 16
    x = torch.randint(0, 37, (k * b, T), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 37, (k * b, T), generator=torch.Generator().manual_seed(1))
    accum = Trainer(make_model(), train_config(batch_size=b, grad_accum_steps=k, grad_clip=None), train, val,
                    device="cpu")
    whole = Trainer(make_model(), train_config(batch_size=k * b, grad_clip=None), train, val, device="cpu")
    loss_a, grads_a = capture_one_step_gradients(accum,
                                                 [(x[i * b : (i + 1) * b], y[i * b : (i + 1) * b]) for i in range(k)])
    loss_w, grads_w = capture_one_step_gradients(whole, [(x, y)])
    assert loss_a == pytest.approx(loss_w, rel=1e-6)
    for n in grads_w:
        torch.testing.assert_close(grads_a[n], grads_w[n], atol=1e-6, rtol=0, msg=n)


def test_accumulated_chat_batches_give_the_gradient_of_the_token_mean_of_the_whole_step(make_model, train_config,
                                                                                        tokens):
    """Micro-batches with different numbers of counted targets (answers of uneven lengths): the step's gradient is
    that of the mean over every counted target of the step, not the mean of the micro-batches' means."""
    train, val = tokens
    b, T = 2, 16
    x = torch.randint(0, 37, (2 * b, T), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 37, (2 * b, T), generator=torch.Generator().manual_seed(1))
    y[:b, : T - 2] = -1  # the first micro-batch counts 2 targets per row, the second 16
    accum = Trainer(make_model(), train_config(batch_size=b, grad_accum_steps=2, grad_clip=None), train, val,
                    device="cpu")
    loss, grads = capture_one_step_gradients(accum, [(x[:b], y[:b]), (x[b:], y[b:])])
    reference = make_model()
    token_mean = reference(x, y)[1]  # one batch: cross-entropy's mean over every target that is not -1
    token_mean.backward()
    assert loss == pytest.approx(token_mean.item(), rel=1e-6)
    for n, p in reference.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-6, rtol=0, msg=n)
    reference.zero_grad()
    mean_of_means = (reference(x[:b], y[:b])[1] + reference(x[b:], y[b:])[1]) / 2
    mean_of_means.backward()
    assert any(not torch.allclose(grads[n], p.grad, atol=1e-4) for n, p in reference.named_parameters()), \
        "the two weightings differ on these batches, so the test can tell them apart"


def test_pretraining_losses_are_those_of_the_plain_mean_of_micro_batch_losses(make_model, train_config, tokens):
    """Every target counts in pretraining windows: the token weighting must give the losses of the textbook loop
    (each micro-batch's mean loss / grad_accum_steps), step after step."""
    from tinylm.train.optim import build_optimizer, learning_rate

    train, val = tokens
    cfg = train_config(max_steps=6, grad_accum_steps=3, log_interval=1, eval_interval=0)
    records = []
    Trainer(make_model(), cfg, train, val, device="cpu", callbacks=[records.append]).fit()
    model = make_model()
    sampler = RandomWindowSampler(train, model.config.block_size, cfg.batch_size, cfg.seed, vocab_size=37)
    optimizer = build_optimizer(model, cfg, torch.device("cpu"))
    expected = []
    for step in range(cfg.max_steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        losses = []
        for _ in range(cfg.grad_accum_steps):
            loss = model(*sampler.next_batch("cpu"))[1]
            (loss / cfg.grad_accum_steps).backward()
            losses.append(loss.item())
        expected.append(sum(losses) / len(losses))
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    trained = [r["loss"] for r in records if r["event"] == "train"]
    assert trained == pytest.approx(expected, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("grad_clip, clipped", [(1e-6, 1.0), (1e6, 0.0)])
def test_train_records_carry_the_norm_before_clipping_and_the_share_of_steps_clipped(make_model, train_config, tokens,
                                                                                     grad_clip, clipped):
    """grad_norm is the logged step's norm before clipping, checked on step 1 against the first batch's gradient
    computed outside the Trainer; `clipped` is the share of the steps since the previous record."""
    train, val = tokens
    model = make_model()
    cfg = train_config(log_interval=1, grad_clip=grad_clip)
    x, y = RandomWindowSampler(train, model.config.block_size, cfg.batch_size, cfg.seed).next_batch()
    model(x, y)[1].backward()
    first_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()

    logged = {}
    for log_interval in (1, 4):
        records = []
        Trainer(make_model(), train_config(max_steps=4, log_interval=log_interval, grad_clip=grad_clip), train, val,
                device="cpu", callbacks=[records.append]).fit()
        logged[log_interval] = [r for r in records if r["event"] == "train"]
        assert [r["step"] for r in logged[log_interval]] == list(range(log_interval, 5, log_interval))
        assert all(r["clipped"] == clipped for r in logged[log_interval])
    assert logged[1][0]["grad_norm"] == pytest.approx(first_norm, rel=1e-5)
    assert logged[4][0]["grad_norm"] == logged[1][3]["grad_norm"] != logged[1][0]["grad_norm"]  # the logged step's


def test_a_run_without_clipping_records_no_gradient_norm(make_model, train_config, tokens):
    train, val = tokens
    records = []
    Trainer(make_model(), train_config(max_steps=4, grad_clip=None), train, val, device="cpu",
            callbacks=[records.append]).fit()
    assert [r for r in records if r["event"] == "train"]
    assert not any("grad_norm" in r or "clipped" in r for r in records)


def test_nan_loss_raises_and_keeps_the_last_good_checkpoint(make_model, train_config, tokens, tmp_path):
    train, val = tokens
    trainer = Trainer(make_model(), train_config(max_steps=8), train, val, out_dir=tmp_path, device="cpu")
    trainer.fit(stop_after=2)
    good = (tmp_path / "last.pt").read_bytes()
    with torch.no_grad():
        trainer.model.transformer.ln_f.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    message = str(info.value)
    assert "nan" in message and "step 2" in message and "learning_rate" in message and str(tmp_path) in message
    assert (tmp_path / "last.pt").read_bytes() == good
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


def test_nan_validation_loss_raises_and_keeps_the_last_good_checkpoint(make_model, train_config, tokens, tmp_path):
    """Weights that go bad between a training step and an evaluation must not be saved as last.pt."""
    train, val = tokens

    def poison_at_step_4(record):
        if record["event"] == "train" and record["step"] == 4:
            with torch.no_grad():
                trainer.model.transformer.ln_f.weight.fill_(float("nan"))

    trainer = Trainer(make_model(), train_config(max_steps=8, eval_interval=2), train, val, out_dir=tmp_path,
                      device="cpu", callbacks=[poison_at_step_4])
    with pytest.raises(TrainingDiverged, match="nan"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert all(torch.isfinite(t).all() for t in load_checkpoint(tmp_path / "last.pt")["model"].values())


def test_metrics_end_with_the_final_validation_loss(make_model, train_config, tokens, tmp_path):
    train, val = tokens
    trainer = Trainer(make_model(), train_config(max_steps=6, eval_interval=2, log_interval=2), train, val,
                      out_dir=tmp_path, device="cpu")
    final = trainer.fit()
    records = read_records(tmp_path)
    assert records[-1] == final
    assert records[-1]["event"] == "final" and records[-1]["step"] == 6
    assert records[-1]["val_loss"] == pytest.approx(trainer.evaluate()["val_loss"])
    assert [r["step"] for r in records if r["event"] == "train"] == [2, 4, 6]
    assert [r["step"] for r in records if r["event"] == "eval"] == [2, 4]
    best = min(r["val_loss"] for r in records if "val_loss" in r)
    assert records[-1]["best_val_loss"] == pytest.approx(best)
    assert load_checkpoint(tmp_path / "best.pt")["best_val_loss"] == pytest.approx(best)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 6


def assert_resuming_ends_where_an_uninterrupted_run_ends(make_model, cfg, tokens, checkpoint, **shape):
    """Finish the run saved in `checkpoint`, train the same recipe from scratch, and compare the final weights
    (and buffers: a mixture of experts' loss-free biases). Returns the two trainers."""
    train, val = tokens
    shape = {"dropout": 0.1, **shape}
    resumed = Trainer(make_model(**shape), cfg, train, val, device="cpu")
    resumed.resume(checkpoint)
    resumed.fit()
    straight = Trainer(make_model(**shape), cfg, train, val, device="cpu")
    straight.fit()
    assert weights_equal(resumed.model, straight.model)
    return resumed, straight


def test_ctrl_c_saves_last_pt_and_the_run_resumes_to_the_same_weights(make_model, train_config, tokens, tmp_path):
    train, val = tokens
    cfg = train_config(max_steps=6)

    def interrupt_at_step_3(record):
        if record["event"] == "train" and record["step"] == 3:
            raise KeyboardInterrupt

    interrupted = Trainer(make_model(dropout=0.1), cfg, train, val, out_dir=tmp_path / "run", device="cpu",
                          callbacks=[interrupt_at_step_3])
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3
    assert read_records(tmp_path / "run")[-1]["event"] == "interrupted"

    assert_resuming_ends_where_an_uninterrupted_run_ends(make_model, cfg, tokens, tmp_path / "run" / "last.pt")


def test_a_real_ctrl_c_mid_step_finishes_the_step_then_saves_a_resumable_state(make_model, train_config, tokens,
                                                                                tmp_path):
    """SIGINT arriving inside a forward pass must not leave a half-done step in last.pt."""
    train, val = tokens
    cfg = train_config(max_steps=6)
    model = make_model(dropout=0.1)
    forward_calls = []

    def send_sigint_during_the_third_forward(module, inputs, output):
        forward_calls.append(1)
        if len(forward_calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)

    hook = model.register_forward_hook(send_sigint_during_the_third_forward)
    interrupted = Trainer(model, cfg, train, val, out_dir=tmp_path / "run", device="cpu")
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    hook.remove()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3, "the step that was running completes first"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the previous handler is restored"

    assert_resuming_ends_where_an_uninterrupted_run_ends(make_model, cfg, tokens, tmp_path / "run" / "last.pt")


def llama_moe(**overrides) -> dict:
    """Config overrides that turn the tiny shape into the llama-moe family (fast-moving loss-free biases)."""
    from tinylm.config import GPTConfig, with_architecture

    tiny = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32)
    return {**with_architecture(tiny, "llama-moe").to_dict(), "bias_update_rate": 0.01, **overrides}


@pytest.mark.parametrize("balancing", ["loss_free", "aux_loss"])
def test_a_resumed_mixture_of_experts_ends_where_an_uninterrupted_one_ends(make_model, train_config, tokens, tmp_path,
                                                                           balancing):
    """The loss-free biases are a buffer in the checkpoint: the resumed run routes exactly as the straight one."""
    from tinylm.model.moe import moe_layers

    train, val = tokens
    shape = llama_moe(balancing=balancing)
    cfg = train_config(max_steps=8)
    Trainer(make_model(**shape), cfg, train, val, out_dir=tmp_path, device="cpu").fit(stop_after=4)
    saved_biases = [v for k, v in load_checkpoint(tmp_path / "last.pt")["model"].items() if k.endswith("expert_bias")]
    assert len(saved_biases) == 2 and (balancing != "loss_free" or any(b.abs().sum() > 0 for b in saved_biases))
    resumed, _ = assert_resuming_ends_where_an_uninterrupted_run_ends(make_model, cfg, tokens, tmp_path / "last.pt",
                                                                      **shape)
    if balancing == "loss_free":  # control: a resumed run that forgot its biases routes differently and ends elsewhere
        forgetful = Trainer(make_model(**shape), cfg, train, val, device="cpu")
        forgetful.resume(tmp_path / "last.pt")
        for layer in moe_layers(forgetful.model):
            layer.expert_bias.zero_()
        forgetful.fit()
        assert not weights_equal(forgetful.model, resumed.model)


def test_resuming_with_another_model_shape_is_refused(make_model, train_config, tokens, tmp_path):
    train, val = tokens
    Trainer(make_model(), train_config(max_steps=2, warmup_steps=1), train, val, out_dir=tmp_path, device="cpu").fit()
    other = Trainer(make_model(n_layer=1), train_config(max_steps=2, warmup_steps=1), train, val, device="cpu")
    with pytest.raises(ValueError, match="model config"):
        other.resume(tmp_path)


def test_sample_starts_with_the_prompt(make_model, train_config, tokens):
    train, val = tokens
    tokenizer = CharTokenizer([chr(ord("a") + i) for i in range(26)] + list("0123456789 "))
    trainer = Trainer(make_model(), train_config(), train, val, tokenizer=tokenizer, device="cpu", sample_prompt="ab c")
    text = trainer.sample(10)
    assert text.startswith("ab c") and len(text) == 14
    assert trainer.sample(10) == text  # seeded by the config
    with pytest.raises(ValueError, match="tokenizer"):
        Trainer(make_model(), train_config(), train, val, device="cpu").sample(5)


def test_training_does_not_touch_the_token_arrays(make_model, train_config, tokens):
    train, val = tokens
    before = (train.copy(), val.copy())
    Trainer(make_model(), train_config(max_steps=2, warmup_steps=1), train, val, device="cpu").fit()
    np.testing.assert_array_equal(train, before[0])
    np.testing.assert_array_equal(val, before[1])


@pytest.mark.parametrize("shape", [{}, llama_moe(n_experts=0), llama_moe(), llama_moe(balancing="aux_loss")],
                         ids=["gpt2", "llama", "llama-moe", "llama-moe-aux-loss"])
def test_compiled_training_keeps_checkpoints_evaluation_and_generation_eager(make_model, train_config, tokens, tmp_path,
                                                                             monkeypatch, shape):
    """torch.compile wraps only the training step: checkpoint keys stay clean, the plain model still evaluates and
    samples, and the steps compute what eager ones do (a mixture of experts' load counts and auxiliary loss included).

    Dynamo with the eager backend exercises the same wrapping as inductor without minutes of C++ compilation."""
    import functools

    train, val = tokens
    eager = Trainer(make_model(**shape), train_config(max_steps=3), train, val, device="cpu")
    eager.fit()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    trainer = Trainer(make_model(**shape), train_config(max_steps=3, compile=True), train, val, out_dir=tmp_path,
                      device="cpu")
    assert trainer.train_model is not trainer.model
    trainer.fit()
    for (name, a), b in zip(eager.model.state_dict().items(), trainer.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)
    keys = load_checkpoint(tmp_path / "last.pt")["model"].keys()
    assert keys == make_model(**shape).state_dict().keys(), "no _orig_mod. prefixes"
    assert math.isfinite(trainer.evaluate()["val_loss"])
    from tinylm.generate.decode import generate

    out = generate(trainer.model, torch.zeros(1, 1, dtype=torch.long), max_new_tokens=3, temperature=0)
    assert out.shape == (1, 4)


def sleeping_evaluator(seconds):
    """An extra evaluator as slow as HellaSwag on a big model: it only sleeps."""

    def evaluate(model):
        time.sleep(seconds)
        return {"slept": seconds}

    return {"slow": evaluate}


def test_slow_evaluations_count_neither_in_tokens_per_s_nor_in_training_time(make_model, train_config, tokens):
    """Each train record measures the steps since the previous one; an evaluation in between is not one of them."""
    train, val = tokens
    pause = 0.5
    records = []
    cfg = train_config(max_steps=6, eval_interval=2, log_interval=2)
    trainer = Trainer(make_model(), cfg, train, val, device="cpu", evaluators=sleeping_evaluator(pause),
                      callbacks=[records.append])
    final = trainer.fit()
    assert [r.get("slow_slept") for r in records if r["event"] in ("eval", "final")] == [pause] * 3
    train_records = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train_records] == [2, 4, 6]
    tokens_per_step = cfg.batch_size * trainer.model_config.block_size
    windows = [2 * tokens_per_step / r["tokens_per_s"] for r in train_records]  # the seconds each record measured
    assert max(windows[1:]) < pause, "steps 3-4 and 5-6 follow a sleeping evaluation, which was charged to them"
    assert windows == pytest.approx([2 * r["step_seconds"] for r in train_records])
    assert final["elapsed"] == trainer.elapsed < pause, "1.5 s of evaluations are not training time"


class NarrowBatches:
    """A loader like a chat fine-tuning one: each batch only as wide as its longest row, far below the context."""

    def __init__(self, tokens, batch_size: int, widths: list[int]):
        self.tokens = torch.as_tensor(tokens.astype(np.int64))
        self.batch_size, self.widths = batch_size, widths
        self.drawn = []  # the positions of each batch handed out

    def next_batch(self, device):
        width = self.widths[len(self.drawn) % len(self.widths)]
        self.drawn.append(self.batch_size * width)
        window = self.tokens[: width + 1]
        return window[:-1].repeat(self.batch_size, 1).to(device), window[1:].repeat(self.batch_size, 1).to(device)

    def state_dict(self):
        return {"drawn": len(self.drawn)}

    def load_state_dict(self, state):
        pass


def test_tokens_per_s_counts_the_positions_each_batch_really_has(make_model, train_config, tokens):
    """A chat batch of 4 x 5 tokens is 20 tokens, not 4 x the 16-token context: tokens/s (and MFU) must say so."""
    train, val = tokens
    records = []
    cfg = train_config(max_steps=6, log_interval=3, grad_accum_steps=2)
    loader = NarrowBatches(train, cfg.batch_size, widths=[5, 9, 3])
    Trainer(make_model(), cfg, loader, val, device="cpu", callbacks=[records.append]).fit()
    assert make_model().config.block_size not in loader.widths
    train_records = [r for r in records if r["event"] == "train"]
    for record, window in zip(train_records, (loader.drawn[:6], loader.drawn[6:])):
        assert record["tokens_per_s"] * 3 * record["step_seconds"] == pytest.approx(sum(window))


def test_the_time_budget_counts_training_time_only(make_model, train_config, tokens):
    """max_seconds=0.6 with an evaluation sleeping 0.4 s after every step: the 6 tiny steps still all run."""
    train, val = tokens
    trainer = Trainer(make_model(), train_config(max_steps=6, max_seconds=0.6, eval_interval=1), train, val,
                      device="cpu", evaluators=sleeping_evaluator(0.4))
    trainer.fit()
    assert trainer.step == 6, "evaluation time used up the training budget"
    assert trainer.elapsed < 0.6


def test_train_records_carry_the_total_and_an_eta_after_one_plan_per_session(make_model, train_config, tokens):
    train, val = tokens
    records = []
    trainer = Trainer(make_model(), train_config(max_steps=6, log_interval=2), train, val, device="cpu",
                      callbacks=[records.append])
    trainer.fit(stop_after=4)
    trainer.fit()
    events = [(r["event"], r["step"]) for r in records]
    assert events == [("plan", 2), ("train", 2), ("train", 4), ("final", 4), ("plan", 6), ("train", 6), ("final", 6)]
    plan = records[0]
    assert plan["max_steps"] == plan["expected_steps"] == 6
    assert plan["expected_seconds"] == pytest.approx(records[1]["elapsed"] + 4 * plan["step_seconds"])
    train_records = [r for r in records if r["event"] == "train"]
    assert all(r["max_steps"] == 6 for r in train_records)
    assert train_records[0]["eta"] > 0 and train_records[-1]["eta"] == 0


def test_the_plan_and_eta_go_by_the_steps_after_the_first_which_also_compiles(make_model, train_config, tokens,
                                                                              monkeypatch):
    """A first step of 10 s (compilation, warm-up) and later ones of 0.1 s: the first record is due (past
    FIRST_RECORD_SECONDS) after the second step, and the plan and the ETA expect 0.1 s a step, not the window's mean
    of 5.05 s."""
    import tinylm.train.trainer as trainer_module

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(trainer_module, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    optimizer_step = Trainer._optimizer_step

    def timed_step(self, *args):
        clock.now += 10.0 if self.step == 0 else 0.1
        return optimizer_step(self, *args)

    monkeypatch.setattr(Trainer, "_optimizer_step", timed_step)
    train, val = tokens
    records = []
    trainer = Trainer(make_model(), train_config(max_steps=12, log_interval=4), train, val, device="cpu",
                      callbacks=[records.append])
    trainer.fit()
    plan, first = records[0], records[1]
    assert (plan["event"], plan["step"], first["step"]) == ("plan", 2, 2)
    assert first["step_seconds"] == pytest.approx(10.1 / 2), "the train record keeps its window's own mean"
    assert plan["step_seconds"] == pytest.approx(0.1)
    assert plan["expected_seconds"] == pytest.approx(10.1 + 10 * 0.1)
    assert first["eta"] == pytest.approx(10 * 0.1), "the ETA goes by the same pace (no time outside steps here)"


class FakeClock:
    """time.perf_counter for the Trainer: every call moves `tick` seconds on, so a step lasts what the test says."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.parametrize("tick", [1.0, 1e-4])
def test_the_first_step_line_and_the_plan_come_within_seconds_however_slow_the_steps(make_model, train_config,
                                                                                     tokens, monkeypatch, tick):
    """With log_interval 1000, a run of slow steps (a few clock seconds each) still emits its plan and first train
    record soon after FIRST_RECORD_SECONDS of the session; a fast one waits for its interval (here: the last step)."""
    import tinylm.train.trainer as trainer_module

    train, val = tokens
    clock = FakeClock(tick)
    monkeypatch.setattr(trainer_module, "time", clock)
    monkeypatch.setattr(trainer_module, "FIRST_RECORD_SECONDS", 10.0)  # a few of these clock's steps
    records = []
    trainer = Trainer(make_model(), train_config(max_steps=12, log_interval=1000), train, val, device="cpu",
                      callbacks=[lambda r: records.append((r, clock.now))])
    trainer.fit()
    events = [(r["event"], r["step"]) for r, _ in records]
    if tick < 1e-3:
        assert events == [("plan", 12), ("train", 12), ("final", 12)]
        return
    (plan, _), (first, seen_at) = records[:2]
    assert (plan["event"], first["event"]) == ("plan", "train") and 1 < first["step"] < 12
    since_start = seen_at - trainer._timing.started  # the clock when fit() began
    assert trainer_module.FIRST_RECORD_SECONDS <= since_start <= 2 * trainer_module.FIRST_RECORD_SECONDS
    assert [e for e in events[2:] if e[0] == "train"] == [("train", 12)], "then its interval again (and the end)"


def test_a_run_ended_by_its_time_budget_logs_its_last_step(make_model, train_config, tokens, monkeypatch):
    import tinylm.train.trainer as trainer_module

    train, val = tokens
    monkeypatch.setattr(trainer_module, "time", FakeClock(0.5))
    records = []
    trainer = Trainer(make_model(), train_config(max_steps=1000, max_seconds=3.0, log_interval=1000), train, val,
                      device="cpu", callbacks=[records.append])
    trainer.fit()
    logged = [r["step"] for r in records if r["event"] == "train"]
    assert trainer.step < 1000 and logged[-1] == trainer.step


def test_each_rank_continues_its_own_rng_stream_and_a_new_rank_starts_a_seeded_one():
    from tinylm.train.trainer import restore_rng

    cpu = torch.device("cpu")
    saved = [{"torch": torch.Generator().manual_seed(100 + rank).get_state(), "cuda": None} for rank in range(2)]
    restore_rng(saved, 1, seed=7, device=cpu)
    assert torch.equal(torch.rand(5), torch.rand(5, generator=torch.Generator().manual_seed(101)))
    restore_rng(saved, 3, seed=7, device=cpu)  # the saved run had 2 ranks: rank 3 is new, seeded as in a fresh run
    assert torch.equal(torch.rand(5), torch.rand(5, generator=torch.Generator().manual_seed(7 + 3)))


def test_a_checkpoint_of_more_ranks_resumes_in_one_process_and_says_what_happens(make_model, train_config, tokens,
                                                                                   tmp_path, capsys):
    train, val = tokens
    trainer = Trainer(make_model(dropout=0.1), train_config(max_steps=4), train, val, out_dir=tmp_path, device="cpu")
    trainer.fit(stop_after=2)
    state = load_checkpoint(tmp_path / "last.pt")
    assert len(state["rng"]) == 1
    rank0 = state["rng"][0]["torch"]
    state["rng"].append({"torch": torch.Generator().manual_seed(5).get_state(), "cuda": None})  # as rank 1 saved it
    resumed = Trainer(make_model(dropout=0.1), train_config(max_steps=4), train, val, device="cpu")
    resumed.load_state_dict(state)
    assert torch.equal(torch.get_rng_state(), rank0), "rank 0 continues rank 0's stream"
    said = capsys.readouterr().out
    per_step = train_config().batch_size * train_config().grad_accum_steps
    assert f"resuming a 2-process run in 1 process: a step now trains on {train_config().batch_size} x " in said
    assert f"where it trained on {2 * per_step} (0.5 times the tokens;" in said
    assert "; the dropout streams of ranks 1..1 end" in said
    without_dropout = Trainer(make_model(), train_config(max_steps=4), train, val, device="cpu")
    without_dropout.load_state_dict({**state, "model_config": {**state["model_config"], "dropout": 0.0}})
    assert "dropout" not in capsys.readouterr().out  # a run without dropout has no streams to speak of


def test_float16_on_a_cpu_trains_with_a_gradient_scaler(make_model, train_config, tokens):
    """float16's narrow exponent range needs the loss scaled wherever it trains, a CPU included (where the GradScaler
    was once left off)."""
    train, val = tokens
    trainer = Trainer(make_model(), train_config(max_steps=3, dtype="float16"), train, val, device="cpu")
    assert trainer.scaler.is_enabled()
    final = trainer.fit()
    assert math.isfinite(final["val_loss"]) and trainer.scaler.get_scale() > 1


def test_a_trainer_without_validation_tokens_says_so_before_training(make_model, train_config, tokens):
    """val_tokens may be left out only by a subclass that evaluates on something else (ChatTrainer, DPOTrainer...)."""
    from tinylm.errors import InputError

    with pytest.raises(InputError, match="val_tokens"):
        Trainer(make_model(), train_config(), tokens[0], device="cpu")

    class OwnEvaluation(Trainer):
        def evaluate(self):
            return {"val_loss": 1.0}

    assert OwnEvaluation(make_model(), train_config(max_steps=3), tokens[0], device="cpu").fit()["val_loss"] == 1.0
