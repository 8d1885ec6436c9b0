"""Time both preparation pipelines' tokenizer stage (docs/notes/2026-11-21-cpu-throughput.md, the guide's row).

    python scripts/tokenizer_throughput.py [--repeat 10] [--rounds 3]

TinyStories' GPT-2 BPE in tiktoken's thread pool (`tinylm.data.corpora.tokenize_stories`) and FineWeb-Edu's worker
processes (`tinylm.data.fineweb.encode_documents`, shard writing not included), each on the offline mirror's sample
repeated, with 1 thread or worker and with every core; interleaved rounds, the best reported. Needs
$TINYLM_DATA_MIRROR (or the network); writes token files only into a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tinylm.data.corpora import TINYSTORIES_SAMPLE, split_stories, tokenize_stories
from tinylm.data.fineweb import _sample_texts, encode_documents
from tinylm.data.tokens import TokenFileWriter
from tinylm.download import fetch
from tinylm.tokenizers.gpt2 import BPETokenizer


def time_stories(stories: list[str], tokenizer: BPETokenizer, threads: int, scratch: Path) -> tuple[int, float]:
    start = time.perf_counter()
    with TokenFileWriter(scratch / "tokens.bin") as out:
        tokenize_stories(stories, tokenizer, out, total=len(stories), threads=threads, desc=f"{threads} thread(s)")
    return out.count, time.perf_counter() - start


def time_documents(texts: list[str], workers: int) -> tuple[int, float]:
    start = time.perf_counter()
    tokens = sum(batch.tokens.size for batch in encode_documents(texts, workers=workers))
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="copies of the TinyStories sample (FineWeb: twice this)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per setting; the best is reported")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    tokenizer = BPETokenizer("gpt2")
    best: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        stories = split_stories(fetch(TINYSTORIES_SAMPLE, scratch / "sample.txt").read_text(encoding="utf-8"))
        stories *= args.repeat
        documents = _sample_texts(scratch)[0] * (2 * args.repeat)
        settings = {f"tinystories, {n} thread(s)": lambda n=n: time_stories(stories, tokenizer, n, scratch)
                    for n in sorted({1, cores})}
        settings |= {f"fineweb-edu, {n} worker(s)": lambda n=n: time_documents(documents, n)
                     for n in sorted({1, cores})}
        for round_index in range(args.rounds):
            for name, run in settings.items():
                tokens, seconds = run()
                if name not in best or seconds < best[name][1]:
                    best[name] = (tokens, seconds)
            print(f"round {round_index + 1}/{args.rounds} done")
    print(f"\nbest of {args.rounds} interleaved rounds, {cores} cores")
    for name, (tokens, seconds) in best.items():
        print(f"{name:<28} {tokens:>11,} tokens in {seconds:6.2f} s = {tokens / seconds / 1e6:.2f}M tokens/s")


if __name__ == "__main__":
    main()
