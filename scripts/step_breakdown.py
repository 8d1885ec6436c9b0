"""Where a CPU training step's time goes, and how fast it could be at the same numbers.

    python scripts/step_breakdown.py [--preset nanogpt-cpu|tinystories-cpu] [--rounds 20] [--compile]

Times one full step of tinylm's GPT and, at exactly the shapes it runs, its parts alone (the linear layers' products,
GELU, attention, the cross-entropy, the AdamW update; "the rest" is what they leave over), interleaved, best round.
tinylm's step and nanoGPT's run the same kernels except the GELU, so the matrix products, which run near the machine's
GEMM rate, set a floor on a faster step with the same numbers: "ceiling" prints it as a speed-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time

import torch
import torch.nn.functional as F

from tinylm.bench.measure import BATCH_SIZES, PRESETS, interleaved_seconds, random_batch, training_step
from tinylm.config import TrainConfig
from tinylm.model.gpt import GPT
from tinylm.runtime import keep_freed_memory
from tinylm.train.optim import build_optimizer

CPU = torch.device("cpu")
COMPILED_GELU = "GELU, tanh form, torch.compile"
NOT_IN_STEP = ("GELU, exact form (nanoGPT)", COMPILED_GELU)  # timed for comparison: the eager step runs neither


def matmuls(model: GPT, rows: int):
    """The step's matrix products: each linear layer's forward x @ W.T and its two backward products."""
    shapes = [(module.in_features, module.out_features) for module in model.modules()
              if isinstance(module, torch.nn.Linear)]
    operands = [(torch.randn(rows, n_in), torch.randn(n_out, n_in), torch.randn(rows, n_out)) for n_in, n_out in shapes]

    def run():
        for x, weight, grad in operands:
            x @ weight.t()  # forward
            grad @ weight  # gradient of the input
            grad.t() @ x  # gradient of the weight
    return run, sum(6 * rows * n_in * n_out for n_in, n_out in shapes)


def forward_backward(fn, *shape_and_more):
    """fn(x) forward and backward at x's shape, as autograd runs them inside the step."""
    x = torch.randn(*shape_and_more, requires_grad=True)

    def run():
        out = fn(x)
        out.backward(torch.ones_like(out))
        x.grad = None
    return run


def parts(model: GPT, optimizer, batch_size: int, compiled_gelu: bool = False) -> dict:
    cfg = model.config
    rows, head_size = batch_size * cfg.block_size, cfg.n_embd // cfg.n_head
    hidden = model.transformer.h[0].mlp.c_fc.out_features
    attention_shape = (batch_size, cfg.n_head, cfg.block_size, head_size)
    qkv = [torch.randn(*attention_shape, requires_grad=True) for _ in range(3)]
    targets = torch.randint(cfg.vocab_size, (rows,))
    mm, flops = matmuls(model, rows)

    def layers(run):
        def all_layers():
            for _ in range(cfg.n_layer):
                run()
        return all_layers

    def attention():
        F.scaled_dot_product_attention(*qkv, is_causal=True).sum().backward()

    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)  # AdamW's work does not depend on the values
    tanh_gelu = functools.partial(F.gelu, approximate="tanh")
    timed = {
        "matrix products": mm,
        "GELU, tanh form (GPT-2, tinylm)": layers(forward_backward(tanh_gelu, rows, hidden)),
        "GELU, exact form (nanoGPT)": layers(forward_backward(F.gelu, rows, hidden)),
        "attention (SDPA)": layers(attention),
        "cross-entropy": forward_backward(lambda logits: F.cross_entropy(logits, targets), rows, cfg.vocab_size),
        "AdamW (fused)": optimizer.step,
    }
    if compiled_gelu:
        timed[COMPILED_GELU] = layers(forward_backward(torch.compile(tanh_gelu), rows, hidden))
    return timed, flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=list(BATCH_SIZES), default="nanogpt-cpu")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also race torch.compile(model) against eager")
    args = parser.parse_args()
    keep_freed_memory()  # as the Trainer does on a CPU
    torch.manual_seed(0)
    cfg, batch_size = dataclasses.replace(PRESETS[args.preset], dropout=0.0), BATCH_SIZES[args.preset]
    model = GPT(cfg)
    optimizer = build_optimizer(model, TrainConfig(batch_size=batch_size), CPU)
    batch = random_batch(cfg, batch_size, CPU)
    runs = {"step": training_step(model, optimizer, *batch, CPU, torch.float32)}
    twin = GPT(cfg)  # the parts' AdamW updates a copy, so the step's model trains undisturbed
    pieces, flops = parts(twin, build_optimizer(twin, TrainConfig(), CPU), batch_size, compiled_gelu=args.compile)
    runs.update(pieces)
    if args.compile:
        twin = GPT(cfg)
        twin.load_state_dict(model.state_dict())
        runs["step, torch.compile"] = training_step(torch.compile(twin), build_optimizer(twin, TrainConfig(), CPU),
                                                    *batch, CPU, torch.float32)
        start = time.perf_counter()
        runs["step, torch.compile"]()
        print(f"compiling took {time.perf_counter() - start:.1f} s")
    for run in runs.values():  # warm-up
        run()
    ms = {name: min(seconds) * 1e3 for name, seconds in interleaved_seconds(runs, args.rounds).items()}
    step = ms["step"]
    print(f"{args.preset}: {cfg.n_layer} layers, {cfg.n_embd} wide, context {cfg.block_size}, batch {batch_size}, "
          f"vocabulary {cfg.vocab_size}; fp32, {torch.get_num_threads()} threads; best of {args.rounds} rounds")
    print(f"{'part':34} {'ms/step':>8} {'share':>6}")
    counted = [name for name in pieces if name not in NOT_IN_STEP]
    for name in ["step", *pieces]:
        share = "" if name == "step" else f"{ms[name] / step:6.0%}"
        print(f"{name:34} {ms[name]:8.2f} {share}")
    print(f"{'the rest (norms, adds, autograd)':34} {step - sum(ms[name] for name in counted):8.2f}")
    if args.compile:
        compiled = ms["step, torch.compile"]
        print(f"{'step, torch.compile':34} {compiled:8.2f}   ({step / compiled:.2f}x)")
    gelu_gap = ms["GELU, tanh form (GPT-2, tinylm)"] - ms["GELU, exact form (nanoGPT)"]
    print(f"matrix products: {flops / ms['matrix products'] / 1e6:.0f} GFLOP/s; GELU tanh - exact: {gelu_gap:+.2f} ms")
    print(f"ceiling: with every other part free, the step would be {step / ms['matrix products']:.2f}x faster")


if __name__ == "__main__":
    main()
