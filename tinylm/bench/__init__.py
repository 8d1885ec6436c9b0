"""Measurements: training tokens/s raced against a plain GPT-2, decoding with and without the KV cache, BPE
training, KV cache bytes (`measure`), and the laptop speedrun: seconds of training to a target loss, one recipe
raced against another (`speedrun`). The figures in the course guide's (notebooks/README.md) speed tables come from here.

`python -m tinylm.bench` runs the command line (tinylm/cli/bench.py).
"""
