"""llama.cpp against tinylm on the same models: the prompt's token ids, the greedy tokens after it and the logits.

    python scripts/llama_cpp_check.py --ckpt runs/shakespeare-char-cpu --ckpt runs/tinystories-llama-cpu
    python scripts/llama_cpp_check.py --gguf ../shared/data/models/SmolLM2-135M-Instruct.Q4_1.gguf

Builds llama.cpp with its Python bindings from llama-cpp-python's source distribution into a virtual environment under
--work (once), exports each checkpoint with `python -m tinylm.interop export --format gguf`, and decodes --prompt
greedily on both sides. Prints whether the prompt's ids are equal, how many greedy tokens are equal before the first
difference, the largest gap between the two sides' logits on llama.cpp's sequence, and both continuations; exit status
1 if any tokens differ. --gguf goes the other way: tinylm imports a published GGUF file, and both sides decode
PROMPTS greedily (plain text, and chat turns in the file's template, whose special tokens llama.cpp parses from the
text). --lib DIR uses an llama.cpp built already (the folder of its shared libraries) instead of building one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinylm.generate.decode import generate_batch  # noqa: E402
from tinylm.interop.vocab_export import exported_vocab, with_rows  # noqa: E402
from tinylm.train.checkpoint import load_model  # noqa: E402

# What the llama.cpp side runs, in the build's own Python: the prompt's ids, greedy tokens, the logits of each step.
LLAMA_CPP_SIDE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from llama_cpp import Llama
    path, prompt, steps, logits_out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    llm = Llama(model_path=path, n_ctx=0, logits_all=True, verbose=False, n_threads=os.cpu_count())
    prompt_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=False)
    steps = min(steps, llm.n_ctx() - len(prompt_ids))
    llm.eval(prompt_ids)
    tokens = []
    for _ in range(steps):
        tokens.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval(tokens[-1:])
    np.save(logits_out, llm.scores[:llm.n_tokens])
    print(json.dumps({"prompt": prompt_ids, "tokens": tokens,
                      "text": llm.detokenize(tokens).decode("utf-8", errors="replace")}))
""")
# The import check's side: per prompt, llama.cpp's ids for the text (special tokens parsed) and greedy tokens.
LLAMA_CPP_GREEDY = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from llama_cpp import Llama
    path, prompts, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    llm = Llama(model_path=path, n_ctx=2048, logits_all=True, verbose=False, n_threads=os.cpu_count())
    out = []
    for prompt in prompts:
        llm.reset()
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.eval(ids)
        tokens = []
        for _ in range(steps):
            tokens.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval(tokens[-1:])
        out.append({"prompt": ids, "tokens": tokens})
    print(json.dumps(out))
""")
# Plain text and chat questions (arithmetic, code, lists, facts, a haiku) for the import check.
PROMPTS = ("The capital of France is", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
           "Once upon a time, in a small village,", "The three laws of thermodynamics are")
CHAT_PROMPTS = ("What is the capital of France?", "What is 12 times 7?", "Write a haiku about the sea.",
                "Give me three tips for sleeping well.", "Explain gravity to a child in two sentences.")
CMAKE_ARGS = "-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF " \
             "-DLLAMA_BUILD_SERVER=OFF"


def run(command: list, **options) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], check=True, **options)


def built_llama_cpp(work: Path) -> Path:
    """The Python of a virtual environment under `work` where llama-cpp-python is built from its sdist."""
    python = work / "venv" / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import llama_cpp"], capture_output=True).returncode == 0:
        return python
    run([sys.executable, "-m", "venv", work / "venv"])
    sdists = sorted((work / "sdist").glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "llama-cpp-python",
             "-d", work / "sdist"])
        sdists = sorted((work / "sdist").glob("llama_cpp_python-*.tar.gz"))
    start = time.perf_counter()
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count())}
    run([python, "-m", "pip", "install", "--quiet", sdists[-1]], env=env)
    print(f"built llama.cpp from {sdists[-1].name} in {time.perf_counter() - start:.0f} s")
    return python


def check(ckpt: Path, llama_python: Path, prompt: str, steps: int, work: Path) -> bool:
    gguf = work / f"{ckpt.name}.gguf"
    run([sys.executable, "-m", "tinylm.interop", "export", "--ckpt", ckpt, "--format", "gguf", "--out", gguf],
        stdout=subprocess.DEVNULL)
    logits_path = work / f"{ckpt.name}.logits.npy"
    side = run([llama_python, "-c", LLAMA_CPP_SIDE, gguf, prompt, steps, logits_path], capture_output=True,
               text=True)
    theirs = json.loads(side.stdout.strip().splitlines()[-1])
    model, tokenizer, _ = load_model(ckpt)
    rows = exported_vocab(tokenizer).rows  # exported id -> tinylm id: a trimmed vocabulary's dropped tokens are <unk>
    prompt_ids, their_prompt = tokenizer.encode(prompt), [rows[i] for i in theirs["prompt"]]
    ours = generate_batch(model, [prompt_ids], len(theirs["tokens"]), temperature=0,
                          vocab_limit=tokenizer.vocab_size)[0]
    equal = next((i for i, (a, b) in enumerate(zip(ours, theirs["tokens"])) if a != b), len(ours))
    with torch.no_grad():  # tinylm's logits on llama.cpp's sequence, over tinylm's ids
        logits = model(torch.tensor([their_prompt + theirs["tokens"]]))[0][0, :, :tokenizer.vocab_size].numpy()
    gap = float(np.abs(np.load(logits_path)[:, :tokenizer.vocab_size] - logits).max())
    kind = tokenizer.to_dict()["kind"]
    print(f"{ckpt} ({kind} tokenizer, {model.num_parameters():,} parameters): prompt ids "
          f"{'equal' if prompt_ids == their_prompt else 'DIFFERENT'} ({len(prompt_ids)}), greedy tokens equal "
          f"{equal}/{len(ours)}, largest logit gap {gap:.2e}")
    print(f"  tinylm:    {tokenizer.decode(ours)!r}\n  llama.cpp: {theirs['text']!r}")
    return prompt_ids == their_prompt and equal == len(ours)


def check_import(gguf: Path, llama_python: Path, steps: int, env: dict, work: Path) -> bool:
    """tinylm's import of `gguf` against llama.cpp: prompt ids and greedy tokens on PROMPTS, llama.cpp running the
    file itself (its quantised products round the activations to 8 bits, so near-ties may go the other way) and
    tinylm's float32 export of the imported weights (the same arithmetic up to float32 rounding). True when every
    prompt's ids agree on both files and every greedy token on the float32 export."""
    from tinylm.interop.gguf_file import write_gguf
    from tinylm.interop.gguf_import import from_gguf
    from tinylm.tokenizers.chat_template import ChatTemplate

    model, tokenizer = from_gguf(gguf)
    vocab = exported_vocab(tokenizer)
    exported = write_gguf(with_rows(model, vocab.rows), vocab, work / f"{gguf.stem}-f32.gguf")
    template = ChatTemplate(tokenizer)
    ours = [tokenizer.encode(prompt) for prompt in PROMPTS]
    ours += [template.render_prompt([{"role": "system", "content": tokenizer.system_prompt},
                                     {"role": "user", "content": question}]) for question in CHAT_PROMPTS]
    texts = [tokenizer.decode(ids) for ids in ours]  # the chat prompts as text, special tokens written out
    greedy = [generate_batch(model, [ids], steps, temperature=0)[0] for ids in ours]
    passed = True
    for path, must_match in ((exported, True), (gguf, False)):
        side = run([llama_python, "-c", LLAMA_CPP_GREEDY, path, json.dumps(texts), steps], capture_output=True,
                   text=True, env=env)
        theirs = json.loads(side.stdout.strip().splitlines()[-1])
        print(f"llama.cpp on {path.name}:")
        equal_prompts = 0
        for text, prompt_ids, tokens, their in zip(texts, ours, greedy, theirs):
            same_ids = prompt_ids == their["prompt"]
            equal = next((i for i, (a, b) in enumerate(zip(tokens, their["tokens"])) if a != b), len(tokens))
            equal_prompts += same_ids and equal == steps
            passed &= same_ids and (equal == steps or not must_match)
            print(f"  prompt ids {'equal' if same_ids else 'DIFFER'} ({len(prompt_ids)}), greedy tokens equal "
                  f"{equal}/{steps}: {text[-40:]!r}")
            if equal < steps:
                print(f"    tinylm:    {tokenizer.decode(tokens)!r}\n"
                      f"    llama.cpp: {tokenizer.decode(their['tokens'])!r}")
        print(f"  {equal_prompts} of {len(texts)} prompts equal in ids and every greedy token")
    return passed


def prebuilt_llama_cpp(lib: Path, work: Path) -> tuple[Path, dict]:
    """(Python, environment) that run llama-cpp-python's pure-Python package over the shared libraries in `lib`."""
    sdists = sorted((work / "sdist").glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "llama-cpp-python",
             "-d", work / "sdist"])
        sdists = sorted((work / "sdist").glob("llama_cpp_python-*.tar.gz"))
    source = work / sdists[-1].name.removesuffix(".tar.gz")
    if not source.is_dir():
        run(["tar", "xzf", sdists[-1], "-C", work])
    python = work / "venv-prebuilt" / "bin" / "python"
    if not python.exists():  # the package's own dependencies, beside the libraries it loads
        run([sys.executable, "-m", "venv", work / "venv-prebuilt"])
        run([python, "-m", "pip", "install", "--quiet", "numpy", "diskcache", "jinja2", "typing-extensions"])
    env = {**os.environ, "LLAMA_CPP_LIB_PATH": str(lib.resolve()), "PYTHONPATH": str(source)}
    return python, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, action="append", default=[],
                        help="a checkpoint or run folder (repeat for several)")
    parser.add_argument("--gguf", type=Path, action="append", default=[],
                        help="a published Llama GGUF file that tinylm imports (repeat for several)")
    parser.add_argument("--lib", type=Path, help="the shared libraries of an llama.cpp built already (else one is "
                        "built from llama-cpp-python's source distribution)")
    parser.add_argument("--prompt", default="Once upon a time", help="the text both continue (default: %(default)s)")
    parser.add_argument("--tokens", type=int, default=48, help="greedy tokens after it (default: %(default)s)")
    parser.add_argument("--work", type=Path, default=Path("runs/llama-cpp-check"),
                        help="the build and the exported files (default: %(default)s)")
    args = parser.parse_args()
    if not args.ckpt and not args.gguf:
        parser.error("give --ckpt or --gguf")
    args.work.mkdir(parents=True, exist_ok=True)
    llama_python, env = prebuilt_llama_cpp(args.lib, args.work.resolve()) if args.lib else \
        (built_llama_cpp(args.work.resolve()), dict(os.environ))
    version = run([llama_python, "-c", "import llama_cpp; print(llama_cpp.__version__)"], capture_output=True,
                  text=True, env=env).stdout.strip()
    print(f"llama-cpp-python {version} (llama.cpp inside it)")
    results = [check(ckpt, llama_python, args.prompt, args.tokens, args.work) for ckpt in args.ckpt]
    results += [check_import(gguf, llama_python, args.tokens, env, args.work) for gguf in args.gguf]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
