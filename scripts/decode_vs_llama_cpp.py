"""tinylm's decoding of an imported model against llama.cpp's llama-bench on the same weights, interleaved.

    python scripts/decode_vs_llama_cpp.py --llama-bench PATH/llama-bench --ckpt runs/smollm2-135m-instruct \
        --gguf ../shared/data/models/SmolLM2-135M-Instruct.Q4_1.gguf [--rounds 3] [--out docs/results/NAME]

At batch 1: prefill tokens/s of a --prompt-tokens prompt, and decode tokens/s of --new-tokens after a 1-token prompt
and after the long one, each side timing its steps alone (tinylm's weight copies and llama.cpp's load excluded).
tinylm runs its cached generation (the fast step) in float32, and in bfloat16 where the CPU
has native bf16; llama.cpp runs tinylm's float32 GGUF export of the checkpoint (the same weights) and the --gguf file
(the published quantisation). Rounds alternate the arms, so a slow spell of the machine hits each; the figures are the
medians, with tinylm's ratio to each llama.cpp file. --out writes NAME.json and NAME.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinylm.generate.decode import generate  # noqa: E402
from tinylm.generate.fast import fast_decode_step, fused_linear  # noqa: E402
from tinylm.model.kv_cache import KVCache  # noqa: E402
from tinylm.runtime import bf16_is_fast, configure_backend  # noqa: E402
from tinylm.train.checkpoint import load_model  # noqa: E402

MEASURES = ("prefill", "decode after 1", "decode after P")


def tinylm_round(model, prompt_tokens: int, new_tokens: int) -> dict[str, float]:
    """tokens/s of one round, as generate computes them: a prefill of `prompt_tokens` (the model's decode_step), then
    `new_tokens` greedy steps of the fast step after 1 prompt token and after the whole prompt. The fast step's
    weight copies are made before the clock starts, as llama-bench loads its model before timing."""
    ids = torch.Generator().manual_seed(0)
    long_prompt = torch.randint(1000, model.config.vocab_size, (1, prompt_tokens), generator=ids)
    step, head = fast_decode_step(model), fused_linear(model.lm_head)
    out = {}
    with torch.no_grad():
        for name, prompt in (("prefill", long_prompt), ("decode after 1", long_prompt[:, :1]),
                             ("decode after P", long_prompt)):
            cache = KVCache(model.config, 1)
            start = time.perf_counter()
            logits = model.decode_step(prompt, cache, head)
            if name == "prefill":
                out[name] = prompt_tokens / (time.perf_counter() - start)
                continue
            start = time.perf_counter()
            for _ in range(new_tokens):
                logits = step(logits.argmax(-1, keepdim=True), cache, head)
            out[name] = new_tokens / (time.perf_counter() - start)
    return out


def llama_round(bench: Path, gguf: Path, prompt_tokens: int, new_tokens: int, threads: int) -> dict[str, float]:
    """The same three figures from llama-bench (its averages of 2 repetitions)."""
    common = [str(bench), "-m", str(gguf), "-t", str(threads), "-r", "2", "-o", "json"]
    prefill = json.loads(subprocess.run([*common, "-p", str(prompt_tokens), "-n", "0"], check=True,
                                        capture_output=True, text=True).stdout)
    decode = json.loads(subprocess.run([*common, "-p", "0", "-n", str(new_tokens), "-d", f"0,{prompt_tokens}"],
                                       check=True, capture_output=True, text=True).stdout)
    by_depth = {run["n_depth"]: run["avg_ts"] for run in decode}
    return {"prefill": prefill[0]["avg_ts"], "decode after 1": by_depth[0], "decode after P": by_depth[prompt_tokens]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-bench", type=Path, required=True, help="llama.cpp's llama-bench program")
    parser.add_argument("--ckpt", type=Path, required=True, help="the imported model's run folder or checkpoint")
    parser.add_argument("--gguf", type=Path, required=True, help="the published GGUF file it was imported from")
    parser.add_argument("--prompt-tokens", type=int, default=500)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = parser.parse_args()
    configure_backend("cpu")
    threads = torch.get_num_threads()
    work = args.ckpt if args.ckpt.is_dir() else args.ckpt.parent
    exported = work / "export-f32.gguf"
    if not exported.is_file():
        subprocess.run([sys.executable, "-m", "tinylm.interop", "export", "--ckpt", str(args.ckpt), "--format", "gguf",
                        "--out", str(exported)], check=True, stdout=subprocess.DEVNULL)
    model, _, _ = load_model(args.ckpt)
    models = {"tinylm float32": model}
    if bf16_is_fast(torch.device("cpu")):
        bf16, _, _ = load_model(args.ckpt)
        models["tinylm bfloat16"] = bf16.to(torch.bfloat16)
    for m in models.values():
        generate(m, torch.zeros(1, 8, dtype=torch.long), 8, temperature=0)  # warm-up
    files = {"llama.cpp float32 (tinylm's export)": exported, f"llama.cpp {args.gguf.name}": args.gguf}
    figures: dict[str, dict[str, list[float]]] = {name: {m: [] for m in MEASURES} for name in [*models, *files]}
    for round_ in range(args.rounds):
        for name, m in models.items():
            for measure, value in tinylm_round(m, args.prompt_tokens, args.new_tokens).items():
                figures[name][measure].append(value)
        for name, path in files.items():
            for measure, value in llama_round(args.llama_bench, path, args.prompt_tokens, args.new_tokens,
                                              threads).items():
                figures[name][measure].append(value)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    medians = {name: {m: statistics.median(values) for m, values in row.items()} for name, row in figures.items()}
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    isa = "AVX-512 with avx512_bf16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2"
    header = (f"{args.ckpt}: batch 1, {threads} threads, prompt {args.prompt_tokens} tokens, {args.new_tokens} new; "
              f"{cpu} ({isa}); medians of {args.rounds} interleaved rounds, tokens/s")
    names = list(files)
    lines = [header, "", "| arm | " + " | ".join(m.replace("P", str(args.prompt_tokens)) for m in MEASURES) + " |",
             "|---|" + "---:|" * len(MEASURES)]
    for name, row in medians.items():
        cells = [f"{row[m]:,.1f}" for m in MEASURES]
        if name in models:
            cells = [f"{row[m]:,.1f} ({row[m] / medians[names[0]][m]:.2f}x, {row[m] / medians[names[1]][m]:.2f}x)"
                     for m in MEASURES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"tinylm's ratios in brackets: to {names[0]}, then to {names[1]}.", "",
              "Each figure's range over the rounds (slowest-fastest), and tinylm's ratio to the first file round by "
              "round:", ""]
    for name, row in figures.items():
        ranges = "; ".join(f"{m.replace('P', str(args.prompt_tokens))} {min(v):,.1f}-{max(v):,.1f}"
                           for m, v in row.items())
        if name in models:
            ranges += "; ratios " + ", ".join(
                f"{m.replace('P', str(args.prompt_tokens))} "
                + "/".join(f"{a / b:.2f}" for a, b in zip(v, figures[names[0]][m])) for m, v in row.items())
        lines.append(f"- {name}: {ranges}")
    print("\n".join(lines))
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps({"header": header, "rounds": figures, "medians": medians},
                                                            indent=1) + "\n")
        command = " ".join(["python", "scripts/decode_vs_llama_cpp.py", *sys.argv[1:]])
        args.out.with_suffix(".md").write_text(f"# Decoding speed against llama.cpp\n\n`{command}`\n\n"
                                               + "\n".join(lines) + "\n")
        print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
