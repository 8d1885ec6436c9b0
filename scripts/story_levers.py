"""Which lever makes notebook 8a's reference arm write stories: a smaller vocabulary, a smaller shape or fewer arms.

Issue 48 §2: 8a's and 8b's samples do not read as stories. This trains 8a's GPT-2 arm (`--arm llama`: 8b's dense
arm) under one change at a time (`LEVERS`: a number of steps, or as many as the baseline's steps cost in time, each
config's step priced first) on 8a's train/test split, and prints per lever the steps, seconds, test loss in bits per
byte, the training loss minus the test loss, and a sample from "Once upon a time".

    flock /tmp/cpu.lock python scripts/story_levers.py            # TINYLM_PROFILE unset
    python scripts/story_levers.py --levers baseline,bpe2048 --seeds 0,1
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np

import tinylm
from tinylm.cli.errors import run_cli
from tinylm.config import with_architecture
from tinylm.course.ablation import Arm, hold_out_test, parameter_counts, train_arms
from tinylm.data.corpora import prepare_tinystories
from tinylm.eval.loss import evaluate_loss_sum
from tinylm.runtime import cpu_name
from tinylm.tokenizers.hf_bpe import TrainedBPETokenizer

# name: (vocabulary: "gpt2" (8a's trimmed) or a BPE size, shape changes, budget: steps or "time" (baseline's seconds))
LEVERS = {
    "baseline": ("gpt2", {}, 1000),
    "bpe2048-1000": (2048, {}, 1000),
    "bpe2048": (2048, {}, "time"),
    "bpe4096": (4096, {}, "time"),
    "2-layers": ("gpt2", {"n_layer": 2}, "time"),
    "width-64": ("gpt2", {"n_embd": 64}, "time"),
    "3x-steps": ("gpt2", {}, 3000),
}
PROMPT, SAMPLE_TOKENS = "Once upon a time", 60  # as 8a samples: temperature 0.8, top-k 40, sampling seed 42


def stories(ids: np.ndarray, tokenizer) -> list[str]:
    """The texts between end-of-text tokens (every split ends with one)."""
    ends = np.flatnonzero(ids == tokenizer.eot_token)
    return [tokenizer.decode(ids[start + 1:end]) for start, end in zip([-1, *ends[:-1]], ends)]


def encode(texts: list[str], tokenizer) -> np.ndarray:
    return np.fromiter((i for ids in tokenizer.encode_batch(texts) for i in (*ids, tokenizer.eot_token)), np.int64)


def splits(vocabulary, track_data, gpt2_data):
    """(tokenizer, train, val, test) in `vocabulary`: 8a's own arrays, or the same stories in a BPE trained on the
    training split (8a's cut: the training stories' last ones, as many tokens as validation, held out as test)."""
    if vocabulary == "gpt2":
        train, test = hold_out_test(track_data.train, len(track_data.val), boundary=track_data.tokenizer.eot_token)
        return track_data.tokenizer, train, track_data.val, test
    gpt2 = gpt2_data.tokenizer
    train, test = hold_out_test(gpt2_data.train, len(gpt2_data.val), boundary=gpt2.eot_token)
    texts = {name: stories(ids, gpt2) for name, ids in (("train", train), ("val", gpt2_data.val), ("test", test))}
    start = time.perf_counter()
    tokenizer = TrainedBPETokenizer.train(texts["train"], vocabulary, show_progress=False)
    seconds = time.perf_counter() - start
    print(f"bpe:{vocabulary} trained on {len(texts['train']):,} training stories in {seconds:.1f} s")
    return tokenizer, *(encode(texts[name], tokenizer) for name in ("train", "val", "test"))


def price(plans: dict, recipe, device, rounds: int = 3, steps: int = 30) -> dict[str, float]:
    """Seconds per step of each plan's config: the fastest of `rounds` short runs, the configs taken in turn in
    each round, so that load from other processes, which only slows a run, falls on none alone."""
    seconds = {name: math.inf for name in plans}
    pilot = dataclasses.replace(recipe, max_steps=steps, warmup_steps=steps // 4)
    for _ in range(rounds):
        for name, (config, tokenizer, train, val, _) in plans.items():
            run = train_arms([Arm(name, name, config, None)], [0], pilot, train, val[:1024], device=device,
                             tokenizer=tokenizer, report=None)[name][0]
            seconds[name] = min(seconds[name], run.elapsed / run.steps)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levers", default=",".join(LEVERS), help="comma-separated, of: " + ", ".join(LEVERS))
    parser.add_argument("--seeds", default="0", help="comma-separated (default: 0)")
    parser.add_argument("--arm", choices=("gpt2", "llama"), default="gpt2", help="8a's GPT-2 arm or 8b's dense arm")
    args = parser.parse_args()
    levers, seeds = args.levers.split(","), [int(seed) for seed in args.seeds.split(",")]
    if unknown := set(levers) - set(LEVERS):
        parser.error(f"no lever {', '.join(sorted(unknown))}; choose among {', '.join(LEVERS)}")
    profile, device = tinylm.set_up_notebook()
    track = tinylm.get_track("tinystories")
    track_data, gpt2_data = track.prepare("cpu"), prepare_tinystories(source="sample")
    shape, recipe = track.recipe("cpu")
    shape = dataclasses.replace(shape, n_embd=96, block_size=64)  # 8a's and 8b's cpu shape and batch
    recipe = dataclasses.replace(recipe, batch_size=8, eval_interval=0, log_interval=100, max_seconds=None)
    print(f"{cpu_name()}; profile {profile}; arm {args.arm}; seeds {seeds}")
    data, plans = {}, {}
    for name in ["baseline", *levers]:
        vocabulary, changes, budget = LEVERS[name]
        if vocabulary not in data:
            data[vocabulary] = splits(vocabulary, track_data, gpt2_data)
        tokenizer, train, val, test = data[vocabulary]
        config = with_architecture(tinylm.train.recipes.build_model_config(
            dataclasses.replace(shape, **changes), tokenizer, track.vocab_multiple), args.arm)
        plans[name] = (config, tokenizer, train, val, test)
    step_seconds = price(plans, recipe, device)
    print("seconds per step, the fastest of 3 rotated 30-step runs:",
          ", ".join(f"{name} {seconds:.3f}" for name, seconds in step_seconds.items()))
    rows, samples = [], []
    for name in levers:
        config, tokenizer, train, val, test = plans[name]
        budget = LEVERS[name][2]
        # "time": as many steps as the baseline's 1,000 cost at the prices just measured
        steps = 10 * round(100 * step_seconds["baseline"] / step_seconds[name]) if budget == "time" else budget
        steps = steps // 100 if profile == "smoke" else steps  # smoke checks the code
        run_recipe = dataclasses.replace(recipe, max_steps=steps, warmup_steps=min(recipe.warmup_steps, steps // 4))
        for seed in seeds:
            run = train_arms([Arm(name, name, config, None)], [seed], run_recipe, train, val, device=device,
                             tokenizer=tokenizer, test_data=test, report=None)[name][0]
            train_total, train_count = evaluate_loss_sum(run.model, train[:len(test)], config.block_size,
                                                         recipe.eval_batch_size, device, tokenizer=tokenizer)
            scored_bytes = sum(len(story.encode()) + 1 for story in stories(test, tokenizer))
            scored_bytes -= len(tokenizer.decode(test[:1]).encode())  # the first token is never a target
            bits_per_byte = run.test_loss * (len(test) - 1) / (math.log(2) * scored_bytes)
            passes = run.steps * recipe.batch_size * config.block_size / len(train)
            gap = train_total / train_count - run.test_loss
            rows.append(f"| {name} | {tokenizer.vocab_size:,} | {parameter_counts(config)[0]:,} | {seed} | "
                        f"{run.steps:,} | {passes:.2f} | {1000 * run.elapsed / run.steps:.0f} | {run.elapsed:.0f} | "
                        f"{run.test_loss:.3f} | {bits_per_byte:.3f} | {gap:+.3f} |")
            print(rows[-1], flush=True)
            # As much text as 8a's 60 GPT-2 tokens: a smaller vocabulary spends more tokens on it.
            new_tokens = round(SAMPLE_TOKENS * len(test) / len(data["gpt2"][3]))
            text = tinylm.generate_text(run.model, tokenizer, PROMPT, max_new_tokens=new_tokens, temperature=0.8,
                                        top_k=40, seed=42)
            samples.append(f"{name}, seed {seed} ({new_tokens} tokens): "
                           f"{' '.join(text.split('<|endoftext|>')[0].split())}")
    print("\n| lever | vocabulary | parameters | seed | steps | passes over train | ms/step | seconds | test loss "
          "(nats/token) | test bits/byte | train − test loss |\n|" + "---|" * 11)
    print("\n".join(rows), "", *samples, sep="\n")


if __name__ == "__main__":
    run_cli(lambda _argv: main())  # an anticipated error: one line, no traceback
