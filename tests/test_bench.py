"""The throughput benchmark's bookkeeping (not its speed)."""

from tinylm.bench import measure_training
from tinylm.config import GPTConfig
from tinylm.model import GPT


def test_measure_training_reports_the_models_size_and_positive_rates():
    cfg = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32)
    result = measure_training(cfg, batch_size=2, steps=1, warmup=0, device="cpu", dtype="float32")
    assert result["parameters"] == GPT(cfg).num_parameters()
    assert result["device"] == "cpu" and result["dtype"] == "float32"
    assert result["tokens_per_s"] > 0 and result["step_ms"] > 0
