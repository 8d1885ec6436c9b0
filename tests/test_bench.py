"""The benchmarks' bookkeeping (not their speed)."""

import pytest
import torch

from tinylm.bench.measure import measure_decoding, measure_training
from tinylm.cli.bench import main
from tinylm.config import GPTConfig
from tinylm.model.gpt import GPT


def test_measure_training_reports_the_models_size_and_positive_rates():
    cfg = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32)
    result = measure_training(cfg, batch_size=2, steps=1, warmup=0, device="cpu", dtype="float32")
    assert result["parameters"] == GPT(cfg).num_parameters()
    assert result["device"] == "cpu" and result["dtype"] == "float32"
    assert result["tokens_per_s"] > 0 and result["step_ms"] > 0


def test_measure_training_times_consecutive_blocks_whose_mean_is_the_step_time():
    cfg = GPTConfig(vocab_size=37, block_size=16, n_layer=1, n_head=2, n_embd=16)
    result = measure_training(cfg, batch_size=2, steps=7, warmup=0, device="cpu", dtype="float32")
    assert len(result["block_ms"]) == 5  # 2, 2, 1, 1 and 1 steps
    assert sum(ms * n for ms, n in zip(result["block_ms"], (2, 2, 1, 1, 1))) / 7 == pytest.approx(result["step_ms"])
    assert len(measure_training(cfg, batch_size=2, steps=2, warmup=0, device="cpu")["block_ms"]) == 2


@pytest.mark.parametrize("block_ms, noted", [([10.0, 10.5, 14.9, 10.2, 10.1], False),
                                             ([10.0, 10.5, 15.1, 10.2, 10.1], True)])
def test_bench_train_says_when_the_speed_was_not_steady(block_ms, noted, monkeypatch, capsys):
    import tinylm.cli.bench as bench

    def measured(*args, **kwargs):
        return {"parameters": 1, "active_parameters": 1, "step_ms": 10.0, "block_ms": block_ms, "tokens_per_s": 1.0,
                "tflops": 1.0, "device": "cpu", "dtype": "float32", "threads": 1}

    monkeypatch.setattr(bench, "measure_training", measured)
    main(["train", "--steps", "10"])
    out = capsys.readouterr().out
    assert f"10 steps in 5 consecutive blocks, ms/step: {' '.join(f'{ms:.1f}' for ms in block_ms)}" in out
    assert ("the speed was not steady" in out) is noted


def attentive_model() -> GPT:
    """Random weights that make greedy tokens depend on the whole context, in float64.

    GPT-2's initialisation (std 0.02) leaves attention nearly uniform and the next token nearly a function of
    the last one, so a cache that lost or misplaced past keys could still give the same tokens. With matrices
    drawn at std 0.5, three layers of four heads and 40 new tokens (past the context of 32, so the cropped
    context is prefilled again), forgetting the past, writing a position one column early, or feeding a new
    token at the wrong position each change the tokens (checked for five seeds)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=37, block_size=32, n_layer=3, n_head=4, n_embd=32)).double()
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0.0, 0.5)
    return model


def test_measure_decoding_compares_the_three_paths_on_the_same_prompt():
    result = measure_decoding(attentive_model(), torch.tensor([[1, 2, 3]]), new_tokens=40)
    assert result["identical"] is True  # greedy, in float64: the cache and the fast step change nothing but the speed
    assert result["fast"] > 0 and result["cache"] > 0 and result["no_cache"] > 0
    assert result["speedup"] == pytest.approx(result["cache"] / result["no_cache"])
    assert result["fast_speedup"] == pytest.approx(result["fast"] / result["cache"])


def test_the_decoding_comparison_catches_a_cache_that_forgets_the_past(monkeypatch):
    from tinylm.model.kv_cache import LayerCache

    store = LayerCache.append

    def forgetful_append(self, k, v):
        store(self, k, v)
        return k, v  # only the new positions: a new token attends to itself alone

    monkeypatch.setattr(LayerCache, "append", forgetful_append)
    result = measure_decoding(attentive_model(), torch.tensor([[1, 2, 3]]), new_tokens=40, repeats=1)
    assert result["identical"] is False


def test_bench_decode_prints_one_line_per_prompt_length(capsys):
    main(["decode", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--vocab-size", "37",
          "--new-tokens", "5", "--prompt-tokens", "1", "4", "--dtype", "float32"])
    lines = capsys.readouterr().out.splitlines()
    assert "parameters, context 16, vocabulary 37" in lines[0]
    assert [line.split(" tokens:")[0].split()[-1] for line in lines[2:]] == ["1", "4"]
    assert all("tokens/s" in line and "speed-up" in line for line in lines[2:])


def shape(*options):
    """The GPTConfig that `python -m tinylm.bench train OPTIONS...` builds."""
    from tinylm.cli.bench import parse_args

    spec, _ = parse_args(["train", *map(str, options)]).settings
    return spec.config()


def test_shapes_start_from_a_preset_and_apply_the_architecture_to_the_final_shape():
    import dataclasses

    from tinylm.config import LLAMA2C_STORIES15M, with_architecture

    assert shape("--preset", "stories15m") == LLAMA2C_STORIES15M
    llama = shape("--arch", "llama", "--n-head", 8, "--n-embd", 256)
    assert (llama.n_head, llama.kv_heads, llama.n_embd, llama.position) == (8, 4, 256, "rope"), "half the final n_head"
    assert shape("--preset", "stories15m", "--arch", "llama", "--n-kv-head", 2).kv_heads == 2
    assert shape("--arch", "gpt2", "--n-layer", 2) == dataclasses.replace(with_architecture(shape(), "gpt2"), n_layer=2)


def test_measure_training_counts_a_mixture_of_experts_active_parameters():
    cfg = shape("--arch", "llama-moe", "--n-layer", 1, "--n-embd", 32, "--block-size", 16)
    result = measure_training(cfg, batch_size=2, steps=1, warmup=0, device="cpu", dtype="float32")
    model = GPT(cfg)
    assert result["parameters"] == model.num_parameters()
    assert result["active_parameters"] == model.num_active_parameters() < model.num_parameters()


def test_bench_decode_of_a_llama_shape_reports_its_cache_per_token(capsys):
    from tinylm.model.kv_cache import bytes_per_token

    main(["decode", "--arch", "llama", "--n-layer", "1", "--n-head", "4", "--n-embd", "32", "--block-size", "16",
          "--vocab-size", "37", "--new-tokens", "5", "--dtype", "float32"])
    lines = capsys.readouterr().out.splitlines()
    cfg = shape("--arch", "llama", "--n-layer", 1, "--n-head", 4, "--n-embd", 32, "--block-size", 16,
                "--vocab-size", 37)
    assert "4 heads (2 key/value)" in lines[0] and "rope positions" in lines[0]
    assert f"KV cache {bytes_per_token(cfg, torch.float32):,} bytes per token" in lines[0]
    assert "tokens identical" in lines[2]


def test_bench_cache_shows_grouped_query_attention_shrinking_the_cache(capsys):
    def per_token(*args):
        main(["cache", "--preset", "gpt2-124m", "--dtype", "bfloat16", *args])
        line = capsys.readouterr().out.splitlines()[1]
        return int(line.split("KV cache ")[1].split(" bytes per token")[0].replace(",", ""))

    full, grouped = per_token(), per_token("--n-kv-head", "4")
    assert full == 2 * 12 * 12 * 64 * 2  # keys and values x layers x heads x head size x 2 bytes
    assert full == 3 * grouped  # 12 query heads share 4 key/value heads


def test_bench_cache_defaults_to_bfloat16_as_a_gpu_decodes(capsys):
    """README quotes GPT-2 124M's cache in bf16 for the command without --dtype; on a CPU it printed float32's."""
    main(["cache", "--preset", "gpt2-124m"])
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("KV cache 36,864 bytes per token (36.0 MiB for the full context of 1,024) in bfloat16"), line
    main(["cache", "--preset", "gpt2-124m", "--dtype", "auto", "--device", "cpu"])
    assert "73,728 bytes per token" in capsys.readouterr().out  # auto on a CPU: float32, as for train and decode


def test_bench_counts_one_thread_in_the_singular(capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(["decode", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--vocab-size", "37",
              "--new-tokens", "2", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("device cpu (1 thread), dtype float32"), line


@pytest.mark.parametrize("bias, tie_weights", [(True, True), (False, False)])
def test_the_reference_gpt_computes_tinylms_loss_and_gradients_from_the_same_weights(bias, tie_weights):
    from tinylm.model.reference import ReferenceGPT

    cfg = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32, bias=bias, tie_weights=tie_weights)
    torch.manual_seed(0)
    model = GPT(cfg).double()
    reference = ReferenceGPT(cfg).double()
    reference.load_state_dict(model.state_dict())  # strict: the names match key for key
    x, y = torch.randint(37, (3, 16)), torch.randint(37, (3, 16))
    (logits, loss), (reference_logits, reference_loss) = model(x, y), reference(x, y)
    loss.backward()
    reference_loss.backward()
    torch.testing.assert_close(logits, reference_logits, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss, reference_loss, rtol=1e-12, atol=1e-12)
    reference_grads = dict(reference.named_parameters())
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, reference_grads[name].grad, rtol=1e-10, atol=1e-12, msg=name)


def test_the_reference_gpt_refuses_a_block_it_does_not_have():
    from tinylm.config import ConfigError
    from tinylm.model.reference import ReferenceGPT

    with pytest.raises(ConfigError, match="rmsnorm"):
        ReferenceGPT(shape("--arch", "llama"))


def test_bench_train_races_the_reference_and_their_losses_agree(capsys, monkeypatch):
    monkeypatch.setattr("tinylm.cli.bench.keep_freed_memory", lambda: True)  # a process-wide setting: not in pytest's
    main(["train", "--reference", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
          "--vocab-size", "37", "--batch-size", "2", "--rounds", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert "best of 3 rounds" in lines[1]
    assert "tinylm GPT" in lines[2] and "reference GPT" in lines[3] and "tokens/s" in lines[3]
    assert "tinylm / reference:" in lines[4]
    assert lines[5].startswith("losses of the first 2 steps") and lines[5].endswith(": equal")


def test_compare_with_reference_times_both_from_equal_losses():
    from tinylm.bench.measure import compare_with_reference

    cfg = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32)
    result = compare_with_reference(cfg, batch_size=2, rounds=2, loss_steps=3, device="cpu")
    tinylm_losses, reference_losses = result["losses"]["tinylm"], result["losses"]["reference"]
    assert len(tinylm_losses) == 3 and tinylm_losses[2] < tinylm_losses[0], "AdamW steps on one batch lower its loss"
    assert tinylm_losses == pytest.approx(reference_losses, rel=1e-5)  # fused vs. looped AdamW: rounding only
    assert result["ratio"] == pytest.approx(result["tokens_per_s"]["tinylm"] / result["tokens_per_s"]["reference"])


def test_the_tinystories_preset_is_the_shape_the_cpu_profile_trains():
    """The preset's vocabulary is the prepared sample's trimmed one, padded as the track pads it."""
    from tinylm.bench.measure import PRESETS
    from tinylm.train.recipes import TINYSTORIES, build_model_config

    data = TINYSTORIES.prepare("cpu")
    expected = build_model_config(TINYSTORIES.recipe("cpu")[0], data.tokenizer, TINYSTORIES.vocab_multiple)
    assert PRESETS["tinystories-cpu"] == expected


def test_bench_bpe_times_both_trainers_on_the_same_merges(capsys):
    main(["bpe", "--merges", "20", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert "20 merges" in lines[0]
    assert "speed-up" in lines[1] and lines[1].endswith("20 merges, identical")


def test_compare_compiled_trains_both_arms_from_the_same_weights_and_times_interleaved_rounds(monkeypatch):
    from tinylm.bench.measure import compare_compiled

    cfg = GPTConfig(vocab_size=37, block_size=16, n_layer=1, n_head=2, n_embd=32)
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)  # it changes nothing
    result = compare_compiled(cfg, batch_size=2, rounds=3, steps_per_round=2, loss_steps=4, device="cpu")
    assert len(compiled) == 1, "only the compiled arm goes through the compiler"
    assert result["losses"]["eager"] == result["losses"]["compiled"] and len(result["losses"]["eager"]) == 4
    assert [len(ms) for ms in result["round_ms"].values()] == [3, 3] and min(result["round_ms"]["eager"]) > 0
    assert result["compile_s"] == pytest.approx(result["first_step_s"]["compiled"]
                                                - min(result["round_ms"]["compiled"]) / 1e3)


def test_compare_compiled_says_in_one_line_when_torch_compile_cannot_run(monkeypatch):
    from tinylm.bench.measure import CompileUnavailable, compare_compiled
    from tinylm.errors import TinyLMError

    def broken(model):
        def forward(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")
        return forward

    cfg = GPTConfig(vocab_size=37, block_size=16, n_layer=1, n_head=2, n_embd=32)
    with pytest.raises(CompileUnavailable, match="C\\+\\+ compiler") as error:
        monkeypatch.setattr(torch, "compile", broken)
        compare_compiled(cfg, batch_size=2, rounds=1, loss_steps=1, device="cpu")
    assert isinstance(error.value, TinyLMError) and "\n" not in str(error.value)


@pytest.mark.parametrize("drift, verdict", [(0.0, ": equal"), (1e-2, ": DIFFERENT")])
def test_bench_compile_prints_the_losses_the_compile_time_and_the_verdict(capsys, monkeypatch, drift, verdict):
    """A compiler that changed the arithmetic (here: its model's loss drifts) must not pass as equal."""
    monkeypatch.setattr("tinylm.cli.bench.keep_freed_memory", lambda: True)

    def compiler(model):
        def step(x, y):
            logits, loss = model(x, y)
            return logits, loss * (1 + drift)
        return step

    monkeypatch.setattr(torch, "compile", compiler)
    main(["compile", "--preset", "nanogpt-cpu", "--n-layer", "1", "--block-size", "16", "--batch-size", "2",
          "--rounds", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("losses of 10 AdamW steps from the same weights") and lines[1].endswith(verdict)
    assert lines[2].startswith("compiling took about")
    assert "(3 rounds) ms per step" in lines[3] and "(3 rounds) ms per step" in lines[4]
    assert "told apart" in lines[5]


@pytest.mark.parametrize("bf16_fast", [True, False])
def test_bench_compile_warns_in_one_line_where_the_dtype_asked_for_is_slow(capsys, monkeypatch, bf16_fast):
    monkeypatch.setattr("tinylm.cli.bench.keep_freed_memory", lambda: True)
    monkeypatch.setattr("tinylm.runtime.bf16_is_fast", lambda device: bf16_fast)
    monkeypatch.setattr(torch, "compile", lambda model: model)
    main(["compile", "--preset", "nanogpt-cpu", "--n-layer", "1", "--block-size", "16", "--batch-size", "2",
          "--rounds", "1", "--dtype", "bfloat16"])
    captured = capsys.readouterr()
    lines, errors = captured.out.splitlines(), captured.err.splitlines()
    assert [line for line in errors if line.startswith("warning: bfloat16")] == ([] if bf16_fast else [errors[0]])
    assert not any(line.startswith("warning") for line in lines), "stdout carries the figures only"
    assert "dtype bfloat16" in lines[0], "measured in bf16 either way"


@pytest.mark.parametrize("bf16_fast", [True, False])
def test_bench_train_measures_bf16_as_asked_and_warns_in_one_line_where_it_is_slow(capsys, monkeypatch, bf16_fast):
    monkeypatch.setattr("tinylm.cli.bench.keep_freed_memory", lambda: True)
    monkeypatch.setattr("tinylm.runtime.bf16_is_fast", lambda device: bf16_fast)
    main(["train", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--vocab-size", "37",
          "--batch-size", "2", "--steps", "2", "--dtype", "bfloat16"])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: bfloat16")]
    assert len(warnings) == (0 if bf16_fast else 1)
    assert not any(line.startswith("warning") for line in lines), "stdout carries the figures only"
    assert "dtype bfloat16" in next(line for line in lines if "ms/step," in line), "measured in bf16 either way"


def test_bench_memory_shows_the_account_beside_the_measured_peak_and_equal_losses(capsys, monkeypatch):
    monkeypatch.setattr("tinylm.cli.bench.keep_freed_memory", lambda: True)
    main(["memory", "--n-layer", "2", "--n-head", "2", "--n-embd", "64", "--block-size", "64", "--vocab-size", "65",
          "--batch-size", "8", "--rounds", "2", "--dtype", "float32"])
    lines = capsys.readouterr().out.splitlines()
    rows = {line[:36].strip(): line[36:].split() for line in lines[2:] if line[:36].strip()}
    assert float(rows["block 0"][0]) > 5 * float(rows["block 0"][1]), "a checkpointed block keeps its input alone"
    account, measured = [list(map(float, rows[name])) for name in ("peak, by the account", "peak, measured")]
    for plain_or_checkpointed in (0, 1):
        assert account[plain_or_checkpointed] == pytest.approx(measured[plain_or_checkpointed], rel=0.1)
    assert measured[1] < measured[0]
    losses = next(line for line in lines if line.startswith("losses of 3 steps"))
    assert losses.endswith("(largest difference 0.0e+00)"), losses
