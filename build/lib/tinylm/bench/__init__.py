"""Measurements: training tokens/s raced against a plain GPT-2, decoding with and without the KV cache, BPE
training, KV cache bytes (`measure`). The figures in README's speed tables come from here.

`python -m tinylm.bench` runs the command line (tinylm/cli/bench.py).
"""
