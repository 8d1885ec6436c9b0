"""The benchmarks' bookkeeping (not their speed)."""

import pytest
import torch

from tinylm.bench import main, measure_decoding, measure_training
from tinylm.config import GPTConfig
from tinylm.model import GPT


def test_measure_training_reports_the_models_size_and_positive_rates():
    cfg = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32)
    result = measure_training(cfg, batch_size=2, steps=1, warmup=0, device="cpu", dtype="float32")
    assert result["parameters"] == GPT(cfg).num_parameters()
    assert result["device"] == "cpu" and result["dtype"] == "float32"
    assert result["tokens_per_s"] > 0 and result["step_ms"] > 0


def test_measure_decoding_compares_the_two_paths_on_the_same_prompt():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32)).double()
    result = measure_decoding(model, torch.tensor([[1, 2, 3]]), new_tokens=20)
    assert result["identical"] is True  # greedy, in float64: the cache changes nothing but the speed
    assert result["cache"] > 0 and result["no_cache"] > 0
    assert result["speedup"] == pytest.approx(result["cache"] / result["no_cache"])


def test_bench_decode_prints_one_line_per_prompt_length(capsys):
    main(["decode", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--vocab-size", "37",
          "--new-tokens", "5", "--prompt-tokens", "1", "4", "--dtype", "float32"])
    lines = capsys.readouterr().out.splitlines()
    assert "parameters, context 16, vocabulary 37" in lines[0]
    assert [line.split(" tokens:")[0].split()[-1] for line in lines[2:]] == ["1", "4"]
    assert all("tokens/s" in line and "speed-up" in line for line in lines[2:])
