"""Scoring text with a checkpoint: `text_loss` against cross-entropy computed by hand, and `python -m tinylm.eval`."""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import REPO
from tests.preloaded import run_module
from tinylm.cli.eval import cli, main
from tinylm.config import GPTConfig, TrainConfig
from tinylm.eval.loss import evaluate_loss, text_loss
from tinylm.model.gpt import GPT
from tinylm.tokenizers.char import CharTokenizer, UnknownCharacterError
from tinylm.tokenizers.gpt2 import BPETokenizer, TrimmedBPETokenizer, padded_vocab_size
from tinylm.train.checkpoint import load_model
from tinylm.train.trainer import Trainer

TEXT = "First Citizen:\nBefore we proceed, hear me speak — «été»!\n"  # multi-byte characters: bytes != characters


@torch.no_grad()
def by_hand(model, ids, unk_id=None, unk_penalty=0.0, vocab_limit=None):
    """(total nats, targets) of predicting ids[1:] from one forward pass over ids[:-1].

    vocab_limit: the tokenizer's vocabulary; columns past it (embedding padding) are not tokens.
    """
    model.eval()
    logits, _ = model(torch.tensor([ids[:-1]]))
    logits = logits[..., :vocab_limit]
    targets = torch.tensor(ids[1:])
    losses = F.cross_entropy(logits[0].float(), targets, reduction="none")
    if unk_id is not None:
        losses = losses + unk_penalty * (targets == unk_id)
    return losses.sum().item(), len(ids) - 1


def test_char_model_predicts_every_character_after_the_first(make_model):
    tok = CharTokenizer.from_text(TEXT)
    model = make_model(vocab_size=tok.vocab_size, block_size=64)
    nats, count = by_hand(model, tok.encode(TEXT))
    result = text_loss(model, tok, TEXT)
    assert result["tokens"] == count == len(TEXT) - 1
    assert result["bytes"] == len(TEXT[1:].encode("utf-8")) > result["tokens"]  # the first character is only context
    assert result["nats"] == pytest.approx(nats, rel=1e-5)
    assert result["loss"] == pytest.approx(nats / count, rel=1e-5)
    assert result["bits_per_byte"] == pytest.approx(nats / math.log(2) / result["bytes"], rel=1e-5)


def test_bpe_model_predicts_every_token_starting_from_end_of_text(make_model):
    tok = BPETokenizer("gpt2")
    model = make_model(vocab_size=padded_vocab_size(tok.vocab_size, 64), block_size=64, n_layer=1, n_head=1, n_embd=8)
    ids = [tok.eot_token, *tok.encode(TEXT)]
    nats, count = by_hand(model, ids, vocab_limit=tok.vocab_size)
    assert nats != pytest.approx(by_hand(model, ids)[0], rel=1e-5), "the padding columns carry probability mass"
    result = text_loss(model, tok, TEXT)
    assert result["tokens"] == count == len(tok.encode(TEXT))  # every token of the text, the first one too
    assert result["bytes"] == len(TEXT.encode("utf-8"))
    assert result["loss"] == pytest.approx(nats / count, rel=1e-5)
    assert result["bits_per_byte"] == pytest.approx(nats / math.log(2) / len(TEXT.encode("utf-8")), rel=1e-5)


def test_bits_per_byte_of_a_uniform_model_by_hand(fixed_logits_model):
    """A model that spreads its bets evenly over V characters pays log2(V) bits per character."""
    tok = CharTokenizer.from_text(TEXT)
    model = fixed_logits_model(torch.zeros(tok.vocab_size), block_size=8)  # shorter than the text: several windows
    result = text_loss(model, tok, TEXT)
    chars, utf8_bytes = len(TEXT) - 1, len(TEXT[1:].encode("utf-8"))
    assert result["loss"] == pytest.approx(math.log(tok.vocab_size))
    assert result["bits_per_byte"] == pytest.approx(chars * math.log2(tok.vocab_size) / utf8_bytes)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_text_longer_than_the_context_is_scored_like_evaluate_loss(make_model, batch_size):
    text = TEXT * 3  # 3 x 59 characters through a context of 16: windows, the last one moved back
    tok = CharTokenizer.from_text(text)
    model = make_model(vocab_size=tok.vocab_size, block_size=16)
    ids = np.array(tok.encode(text))
    result = text_loss(model, tok, text, batch_size=batch_size)
    assert result["tokens"] == len(text) - 1
    assert result["loss"] == pytest.approx(evaluate_loss(model, ids, 16, 4, "cpu"), rel=1e-5)


def test_trimmed_tokenizer_adds_unk_penalty_to_tokens_it_dropped(make_model):
    base = BPETokenizer("gpt2")
    tok = TrimmedBPETokenizer.from_ids([*base.encode("the cat sat on the mat."), base.eot_token])
    text = "the cat sat on the dog."  # " dog" is not among the kept tokens
    ids = [tok.eot_token, *tok.encode(text)]
    assert ids.count(tok.unk_id) == 1
    model = make_model(vocab_size=padded_vocab_size(tok.vocab_size, 64))
    nats, count = by_hand(model, ids, tok.unk_id, tok.unk_penalty, vocab_limit=tok.vocab_size)
    plain, _ = by_hand(model, ids, vocab_limit=tok.vocab_size)
    result = text_loss(model, tok, text)
    assert result["tokens"] == count == len(base.encode(text))  # per GPT-2 token
    assert result["nats"] == pytest.approx(nats, rel=1e-5)
    assert result["nats"] - plain == pytest.approx(tok.unk_penalty, rel=1e-4)
    assert result["bytes"] == len(text.encode("utf-8"))


def test_texts_that_cannot_be_scored_are_errors(make_model):
    char = CharTokenizer.from_text(TEXT)
    model = make_model(vocab_size=char.vocab_size)
    for text in ("", "F"):
        with pytest.raises(ValueError, match="at least 2"):
            text_loss(model, char, text)
    with pytest.raises(UnknownCharacterError, match="'Z'"):
        text_loss(model, char, "Zebra")
    bpe = BPETokenizer("gpt2")
    with pytest.raises(ValueError, match="empty"):
        text_loss(make_model(vocab_size=bpe.vocab_size, n_embd=8, n_head=1, n_layer=1), bpe, "")
    with pytest.raises(ValueError, match="tokenizer has"):
        text_loss(make_model(vocab_size=8), char, TEXT)


# -- the command line -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny trained runs (a character model and a trimmed-BPE one) and a text file to score."""
    root = tmp_path_factory.mktemp("eval")
    corpus = TEXT * 40
    text_file = root / "text.txt"
    text_file.write_bytes((TEXT * 2).encode("utf-8"))
    base = BPETokenizer("gpt2")
    tokenizers = {"char": CharTokenizer.from_text(corpus), "trimmed": TrimmedBPETokenizer.from_ids(base.encode(corpus))}
    for name, tok in tokenizers.items():
        ids = np.array(tok.encode(corpus), dtype=np.uint16)
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=padded_vocab_size(tok.vocab_size, 64), block_size=16, n_layer=2, n_head=2,
                              n_embd=32))
        cfg = TrainConfig(batch_size=4, max_steps=3, warmup_steps=1, eval_interval=0, seed=0, dtype="float32")
        split = len(ids) * 9 // 10
        Trainer(model, cfg, ids[:split], ids[split:], out_dir=root / name, tokenizer=tok, device="cpu").fit()
    return root, text_file


def test_cli_prints_loss_tokens_bytes_and_bits_per_byte(runs):
    root, text_file = runs
    result = run_module("tinylm.eval", ["loss", "--ckpt", root / "char", "--text", text_file], cwd=REPO,
                        env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr
    model, tok, _ = load_model(root / "char")  # best.pt
    expected = text_loss(model, tok, text_file.read_text(encoding="utf-8"))
    out = result.stdout
    assert "best.pt" in out
    assert (re.search(rf"tokens:\s+{expected['tokens']:,} ", out)
            and re.search(rf"bytes:\s+{expected['bytes']:,}\n", out))
    assert float(re.search(r"loss:\s+(\d+\.\d+) nats/token", out).group(1)) == pytest.approx(expected["loss"], abs=1e-4)
    assert float(re.search(r"bits per byte:\s+(\d+\.\d+)", out).group(1)) == pytest.approx(
        expected["bits_per_byte"], abs=1e-4)


def test_cli_json_on_a_trimmed_bpe_run(runs, capsys):
    root, text_file = runs
    returned = main(["loss", "--ckpt", str(root / "trimmed" / "last.pt"), "--text", str(text_file), "--json",
                     "--batch-size", "2"])
    printed = json.loads(capsys.readouterr().out)
    model, tok, _ = load_model(root / "trimmed" / "last.pt")
    expected = text_loss(model, tok, text_file.read_text(encoding="utf-8"))
    assert printed["tokens"] == expected["tokens"] == len(tok.base.encode(text_file.read_text(encoding="utf-8")))
    assert printed["bytes"] == text_file.stat().st_size
    assert printed["bits_per_byte"] == pytest.approx(expected["bits_per_byte"], rel=1e-6)
    assert ({k: returned[k] for k in ("loss", "tokens", "bytes", "bits_per_byte")}
            == {k: printed[k] for k in returned if k != "nats"})


@pytest.mark.parametrize("case", ["missing text", "empty text", "unknown character", "not utf-8", "missing checkpoint",
                                  "damaged checkpoint", "not a tinylm checkpoint"])
def test_cli_errors_end_with_one_line_and_a_non_zero_status(runs, tmp_path, case, capsys):
    root, text_file = runs
    ckpt, text = root / "char", text_file
    if case == "missing text":
        text, message = tmp_path / "nope.txt", "nope.txt: no such file"
    elif case == "empty text":
        (text := tmp_path / "empty.txt").write_text("")
        message = "empty.txt is empty; give a file with text in it"
    elif case == "unknown character":
        (text := tmp_path / "zebra.txt").write_text("Zebra")
        message = "does not know: 'Z'"
    elif case == "not utf-8":
        (text := tmp_path / "latin1.txt").write_bytes("été".encode("latin-1"))
        message = "not UTF-8"
    elif case == "missing checkpoint":
        ckpt, message = tmp_path / "no-run", "no checkpoint"
    elif case == "damaged checkpoint":
        (ckpt := tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
        message = "damaged"
    else:
        torch.save({"weights": torch.zeros(2)}, ckpt := tmp_path / "other.pt")
        message = "not a tinylm checkpoint"
    with pytest.raises(SystemExit) as exit_info:
        cli(["loss", "--ckpt", str(ckpt), "--text", str(text)])
    code = exit_info.value.code
    assert isinstance(code, str) and code.startswith("error: ") and message in code and "\n" not in code  # status 1


def test_cli_error_from_a_real_process(runs, tmp_path):
    root, _ = runs
    # a fresh interpreter, not a process forked from a preloaded one (tests/preloaded.py)
    result = subprocess.run([sys.executable, "-m", "tinylm.eval", "loss", "--ckpt", root / "char", "--text",
                             tmp_path / "nope.txt"], cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.txt'}: no such file; check the path"]
