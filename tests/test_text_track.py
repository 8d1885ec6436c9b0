"""`python -m tinylm.train text --file PATH`: your own text, in a file, a folder or a glob, with each tokenizer kind,
from scratch or from --init; what it hands to sample, eval loss and sft; and the one-line errors of bad text.

The texts are no one's here: FineWeb-Edu's documents and the instruction data of the offline mirror, and the
opening of the Universal Declaration of Human Rights in nine scripts (tests/test_trained_bpe.py), with emoji."""

from __future__ import annotations

import json
import math
import re
import shlex

import numpy as np
import pytest
import torch

from tests.helpers import run_cli
from tests.test_trained_bpe import EMOJI, UDHR
from tinylm.data.text import prepare_text
from tinylm.download import mirror_dir
from tinylm.train.checkpoint import load_model
from tinylm.train.options import RunOptions
from tinylm.train.recipes import TrainOptions
from tinylm.train.text import text_recipe, train_text

MULTILINGUAL = "\n".join(UDHR) + "\n" + EMOJI + "\n"


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """A file of FineWeb-Edu's documents with the multilingual lines in the middle, and a folder of 23 .txt files
    (22 of instruction data, one of the multilingual lines in a subfolder) beside an image and an empty file."""
    root = tmp_path_factory.mktemp("texts")
    lines = (mirror_dir() / "fineweb_edu" / "fineweb_edu_120docs.jsonl").read_text(encoding="utf-8").splitlines()
    documents = [json.loads(line)["text"] for line in lines[:60]]
    (root / "fineweb.txt").write_text("\n\n".join(documents[:30] + [MULTILINGUAL] + documents[30:]), encoding="utf-8")
    folder = root / "notes"
    records = json.loads((mirror_dir() / "instruct" / "instruction-data.json").read_text(encoding="utf-8"))
    for index in range(22):
        part = records[index * 50:(index + 1) * 50]
        (folder / "instructions").mkdir(parents=True, exist_ok=True)
        (folder / "instructions" / f"{index:02d}.txt").write_text(
            "\n\n".join(f"{r['instruction']}\n{r['input']}\n{r['output']}".replace("\n\n", "\n") for r in part),
            encoding="utf-8")
    (folder / "udhr").mkdir()
    (folder / "udhr" / "declaration.txt").write_text(MULTILINGUAL * 5, encoding="utf-8")
    (folder / "empty.txt").write_text("")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "notes.md").write_text("# notes, not .txt\n")
    return {"root": root, "file": root / "fineweb.txt", "folder": folder}


def final_record(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]


@pytest.mark.parametrize("tokenizer, kind", [("char", "char"), ("gpt2", "bpe"), ("bpe:600", "trained_bpe")])
def test_a_file_trains_with_each_tokenizer_and_learns(texts, tmp_path, tokenizer, kind):
    out = tmp_path / "run"
    result = run_cli("tinylm.train", "text", "--file", texts["file"], "--tokenizer", tokenizer, "--out", out,
                     data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    model, saved_tokenizer, _ = load_model(out)
    assert saved_tokenizer.to_dict()["kind"] == kind
    assert final_record(out)["val_loss"] < math.log(saved_tokenizer.vocab_size) - 0.5  # below uniform guessing
    assert re.search(r"final validation loss \(.*\): [\d.]+ nats per token, [\d.]+ bits per byte", result.stdout)
    meta = json.loads(next((tmp_path / "data" / "text").glob("fineweb-*/meta.json")).read_text())
    assert meta["held_out"] == "the last 10% of the text" and meta["val_documents"] == 1
    assert saved_tokenizer.decode(saved_tokenizer.encode(MULTILINGUAL)) == MULTILINGUAL
    (tmp_path / "udhr.txt").write_text(MULTILINGUAL, encoding="utf-8")
    scored = run_cli("tinylm.eval", "loss", "--ckpt", out, "--text", tmp_path / "udhr.txt", data_dir=tmp_path / "data")
    assert scored.returncode == 0 and re.search(r"bits per byte: +[\d.]+", scored.stdout), scored.stderr
    sampled = run_cli("tinylm.sample", "--ckpt", out, "--prompt", "The", "--max-new-tokens", "8",
                      data_dir=tmp_path / "data")
    assert sampled.returncode == 0 and sampled.stdout.startswith("The"), sampled.stderr
    # The epilogue suggested HellaSwag for every BPE (bpe:N too), which eval hellaswag then refused: only GPT-2's
    # tokens take it, and the refusal names the tokenizer the model has and what to run instead.
    assert ("python -m tinylm.eval hellaswag" in result.stdout) == (kind == "bpe"), result.stdout
    if kind != "bpe":
        refused = run_cli("tinylm.eval", "hellaswag", "--ckpt", out, "--limit", "2", data_dir=tmp_path / "data")
        described = {"char": r"characters, one token each", "trained_bpe": r"a BPE trained on its own text \(bpe:N\)"}
        assert refused.returncode == 1 and re.fullmatch(
            rf"error: HellaSwag scores models with GPT-2's tokens .* this checkpoint's tokenizer is {described[kind]}, "
            rf"{saved_tokenizer.vocab_size:,} tokens\. Measure it with python -m tinylm\.eval loss --text FILE .*\n",
            refused.stderr), refused.stderr


def test_a_folder_holds_out_every_tenth_document_and_resumes(texts, tmp_path):
    data = prepare_text(texts["folder"], "char", folder=tmp_path / "prepared", say=lambda line: None)
    assert data.meta["files"] == 24 and data.meta["train_documents"] + data.meta["val_documents"] == 23
    held_out = data.tokenizer.decode(np.asarray(data.val))
    tenth = (texts["folder"] / "instructions" / "09.txt").read_text(encoding="utf-8")
    ninth = (texts["folder"] / "instructions" / "08.txt").read_text(encoding="utf-8")
    assert held_out.startswith(tenth + "\n\n") and ninth not in held_out
    out = tmp_path / "run"
    args = ("text", "--file", texts["folder"], "--tokenizer", "bpe:500", "--out", out)
    first = run_cli("tinylm.train", *args, "--max-steps", "10", data_dir=tmp_path / "data")
    assert first.returncode == 0, first.stderr
    resumed = run_cli("tinylm.train", "text", "--file", texts["folder"], "--out", out, "--resume", "--max-steps",
                      "14", data_dir=tmp_path / "data")
    assert resumed.returncode == 0 and final_record(out)["step"] == 14, resumed.stderr
    assert "tokenizing" not in resumed.stderr  # tokenized once, read back from its folder
    # which files were read and which skipped, said every time (notes.md was skipped silently)
    listing = ("text: 24 files (empty.txt, instructions/00.txt, instructions/01.txt and 21 more); "
               "skipped, not .txt: 2 files (notes.md, photo.png)")
    assert listing in first.stdout.splitlines() and listing in resumed.stdout.splitlines(), first.stdout
    empty = texts["folder"] / "empty.txt"
    assert re.search(rf"^skipped, empty: 1 file \(\S*{re.escape(str(empty.relative_to(texts['root'])))}\)$",
                     first.stdout, re.MULTILINE), first.stdout
    assert f"--text {shlex.quote(str(texts['folder'] / 'instructions' / '00.txt'))}" in first.stdout  # not empty.txt
    other = run_cli("tinylm.train", "text", "--file", texts["folder"], "--out", out, "--resume", "--tokenizer",
                    "char", "--max-steps", "20", data_dir=tmp_path / "data")
    assert other.returncode == 1 and "was started with --tokenizer bpe:500" in other.stderr


def test_a_glob_names_the_files_it_matches(texts, tmp_path):
    data = prepare_text(str(texts["folder"] / "instructions" / "0*.txt"), "gpt2", folder=tmp_path / "prepared",
                        say=lambda line: None)
    assert data.meta["files"] == 10 and data.meta["held_out"] == "every 10th document"


def test_init_from_a_hugging_face_gpt2_keeps_its_weights_and_tokenizer(texts, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=128,
                                                              vocab_size=50257, bos_token_id=None, eos_token_id=None))
    hf.save_pretrained(tmp_path / "hf")
    out = tmp_path / "run"
    result = run_cli("tinylm.train", "text", "--file", texts["file"], "--init", tmp_path / "hf", "--out", out,
                     "--max-steps", "4", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "starting from GPT-2 through transformers" in result.stdout
    model, tokenizer, _ = load_model(out / "last.pt")
    assert tokenizer.to_dict() == {"kind": "bpe", "encoding": "gpt2"}
    assert model.config.block_size == 32 and model.config.n_embd == 16  # the smoke context, GPT-2's network
    for name, start in (("wte", hf.transformer.wte.weight), ("wpe", hf.transformer.wpe.weight[:32])):
        moved = (getattr(model.transformer, name).weight.detach() - start.detach()).abs().max()
        assert 0 < moved < 0.05, name  # 4 small steps away from the weights it started from (wpe: its first 32)


def test_init_from_a_run_keeps_its_tokenizer(texts, tmp_path):
    base = tmp_path / "base"
    assert run_cli("tinylm.train", "text", "--file", texts["file"], "--tokenizer", "bpe:400", "--out", base,
                   "--max-steps", "6", data_dir=tmp_path / "data").returncode == 0
    out = tmp_path / "run"
    result = run_cli("tinylm.train", "text", "--file", texts["folder"], "--init", base, "--out", out, "--max-steps",
                     "6", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert load_model(out)[1].to_dict() == load_model(base)[1].to_dict()
    refused = run_cli("tinylm.train", "text", "--file", texts["folder"], "--init", base, "--tokenizer", "char",
                      "--out", tmp_path / "other", data_dir=tmp_path / "data")
    assert refused.returncode == 1 and "keeps that model's tokenizer" in refused.stderr


def test_a_bpe_text_run_is_a_base_for_chat_fine_tuning(texts, tmp_path, monkeypatch):
    """SFT adds the chat tokens to the BPE trained on the text (a context of 128: instructions do not fit in 32)."""
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "data"))
    recipe = text_recipe(RunOptions(profile="smoke", out=tmp_path / "base", max_steps=6, set={"block_size": 128}),
                         TrainOptions(file=str(texts["folder"]), tokenizer="bpe:500"))
    train_text(recipe, say=lambda line: None)
    result = run_cli("tinylm.sft", "--task", "instruct", "--profile", "smoke", "--base", tmp_path / "base",
                     "--out", tmp_path / "chat",
                     "--max-steps", "3", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "vocabulary 500 -> 503 tokens" in result.stdout
    assert load_model(tmp_path / "chat")[1].to_dict()["kind"] == "trained_bpe"


@pytest.mark.parametrize("make, args, message", [
    (lambda d: (d / "a.txt").write_text(""), ["--file", "{d}/a.txt"], r"a\.txt is empty"),
    (lambda d: (d / "a.txt").write_bytes(b"PK\x03\x04\x00\x00binary"), ["--file", "{d}/a.txt"], r"binary file"),
    (lambda d: (d / "a.txt").write_bytes("naïve café".encode("utf-8") + b" caf\xe9 au lait"),
     ["--file", "{d}/a.txt"], r"not UTF-8: byte 16 \(0xe9\)"),
    (lambda d: (d / "a.txt").write_text("Hello, world.\n"), ["--file", "{d}/a.txt"],
     r"too few for one batch: a window of 33 tokens needs at least about \d+ bytes"),
    (lambda d: (d / "notes").mkdir() or (d / "notes" / "a.md").write_text("# not .txt"), ["--file", "{d}/notes"],
     r"notes has no \.txt files"),
    (lambda d: None, ["--file", "{d}/*.txt"], r"the pattern matches no file"),
    (lambda d: (d / "a.txt").write_text("text " * 100), ["--file", "{d}/a.txt", "--tokenizer", "bpe"],
     r"--tokenizer bpe: choose char, gpt2 or bpe:N"),
    (lambda d: (d / "a.txt").write_text("text " * 100), ["--file", "{d}/a.txt", "--tokenizer", "bpe:100"],
     r"257 to 65,536 tokens"),
    (lambda d: (d / "a.txt").write_text("text " * 100), ["--file", "{d}/a.txt", "--init", "gpt2"],
     r"--init gpt2 downloads OpenAI's GPT-2 124M .* HF_HUB_OFFLINE is set"),
], ids=["empty", "binary", "not-utf8", "too-small", "no-text-in-folder", "glob-matches-nothing", "tokenizer-spec",
        "bpe-size", "init-gpt2-offline"])
def test_bad_text_ends_with_one_line(tmp_path, make, args, message):
    make(tmp_path)
    out = tmp_path / "run"
    result = run_cli("tinylm.train", "text", *[a.format(d=tmp_path) for a in args], "--out", out,
                     data_dir=tmp_path / "data")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(message, last), result.stderr
    assert not (out / "last.pt").exists()


def test_file_belongs_to_the_text_track(tmp_path):
    result = run_cli("tinylm.train", "shakespeare-char", "--file", tmp_path, data_dir=tmp_path / "data")
    assert result.returncode == 2 and "--file applies to the text track" in result.stderr
    result = run_cli("tinylm.train", "text", data_dir=tmp_path / "data")
    assert result.returncode == 2 and "text needs --file PATH" in result.stderr


def test_prepare_trains_the_tokenizer_train_text_would(texts, tmp_path):
    out = tmp_path / "tok.json"
    result = run_cli("tinylm.prepare", "tokenizer", "--file", texts["folder"], "--tokenizer", "bpe:500", "--out", out,
                     data_dir=tmp_path / "data")
    assert result.returncode == 0 and "decoded back exactly" in result.stdout, result.stderr
    tokenizers = pytest.importorskip("tokenizers")
    loaded = tokenizers.Tokenizer.from_file(str(out))
    assert loaded.decode(loaded.encode(MULTILINGUAL).ids) == MULTILINGUAL
    data = prepare_text(texts["folder"], "bpe:500", folder=tmp_path / "prepared", say=lambda line: None)
    assert data.tokenizer.to_dict()["json"] == out.read_text(encoding="utf-8")  # trained on the same split
    refused = run_cli("tinylm.prepare", "tokenizer", "--file", texts["folder"], "--tokenizer", "char",
                      data_dir=tmp_path / "data")
    assert refused.returncode == 1 and "give bpe:N" in refused.stderr


def test_train_text_and_eval_loss_accept_and_refuse_the_same_files_in_the_same_words(texts, tmp_path):
    """`train text --file F` and `eval loss --text F` read a text by two functions with different rules (eval took
    a binary or an empty file); both now read it by tinylm.data.text.read_text_file."""
    data = tmp_path / "data"
    run = tmp_path / "run"
    trained = run_cli("tinylm.train", "text", "--file", texts["file"], "--max-steps", "6", "--out", run, data_dir=data)
    scored = run_cli("tinylm.eval", "loss", "--ckpt", run, "--text", texts["file"], data_dir=data)
    assert trained.returncode == 0 and scored.returncode == 0, trained.stderr + scored.stderr
    bad = {"binary.txt": b"\x89PNG\r\n\x1a\n\x00\x00 an image", "latin1.txt": "café au lait\n".encode("latin-1"),
           "empty.txt": b""}
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    for name, message in (("binary.txt", "is a binary file"), ("latin1.txt", "is not UTF-8: byte 3 (0xe9)"),
                          ("missing.txt", "missing.txt: no such file"), ("empty.txt", "is empty")):
        train = run_cli("tinylm.train", "text", "--file", tmp_path / name, "--out", tmp_path / "other", data_dir=data)
        score = run_cli("tinylm.eval", "loss", "--ckpt", run, "--text", tmp_path / name, data_dir=data)
        assert train.returncode == score.returncode == 1, (name, train.stderr, score.stderr)
        assert train.stderr == score.stderr and train.stderr.count("\n") == 1 and message in train.stderr, name
