"""Measurements: a model (or a track's recipes) in, speeds out: training tokens/s raced against a plain GPT-2, compile,
decoding with and without the key/value cache, BPE training and cache bytes (`measure`), and the laptop speedrun,
seconds of training to a target loss (`speedrun`). The course guide's speed tables come from here;
`python -m tinylm.bench` runs the command line (tinylm/cli/bench.py).
"""
