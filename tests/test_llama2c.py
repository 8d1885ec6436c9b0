"""llama2.c's legacy .bin format: files laid out here the way llama2.c's export.py writes them, a forward pass
written the llama2.c way from their raw arrays, byte-identical round trips, and files that are refused."""

import dataclasses
import json
import math
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinylm.cli.interop import cli, main
from tinylm.config import LLAMA2C_STORIES15M, GPTConfig, with_architecture
from tinylm.download import RemoteFile, sha256_of
from tinylm.eval.loss import texts_loss
from tinylm.interop.hf_llama import InteropError
from tinylm.interop.llama2c import (
    MAGIC,
    Llama2cFormatError,
    Llama2cHeader,
    config_of,
    from_llama2c,
    load_stories15m,
    parse_header,
    read_llama2c,
    write_llama2c,
)
from tinylm.model.gpt import GPT
from tinylm.tokenizers.llama import SentencePieceTokenizer
from tinylm.train.checkpoint import load_checkpoint, load_model

SHAPE = dict(dim=32, hidden_dim=48, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=50, seq_len=16)
HEADER_ORDER = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")


def make_llama2c_file(path, shared: bool, seed: int = 0, **overrides) -> dict[str, torch.Tensor]:
    """Write a llama2.c file from random arrays, laid out as export.py's legacy_export does (not by tinylm);
    returns the arrays by their run.c names."""
    shape = {**SHAPE, **overrides}
    dim, hidden, L, heads, kv_heads, vocab, seq_len = (shape[k] for k in HEADER_ORDER)
    hs = dim // heads
    generator = torch.Generator().manual_seed(seed)

    def matrix(*size):
        return 0.3 * torch.randn(*size, generator=generator)

    def norm(*size):
        return 1 + 0.2 * torch.randn(*size, generator=generator)

    # llama2.c's model.py, precompute_freqs_cis: the cos and sin of position · 10000^(-2i/hs)
    freqs = 1.0 / (10000.0 ** (torch.arange(0, hs, 2)[: hs // 2].float() / hs))
    angles = torch.outer(torch.arange(seq_len).float(), freqs)
    arrays = {
        "token_embedding_table": matrix(vocab, dim), "rms_att_weight": norm(L, dim),
        "wq": matrix(L, heads * hs, dim), "wk": matrix(L, kv_heads * hs, dim), "wv": matrix(L, kv_heads * hs, dim),
        "wo": matrix(L, dim, heads * hs), "rms_ffn_weight": norm(L, dim),
        "w1": matrix(L, hidden, dim), "w2": matrix(L, dim, hidden), "w3": matrix(L, hidden, dim),
        "rms_final_weight": norm(dim), "freq_cis_real": angles.cos(), "freq_cis_imag": angles.sin(),
    }
    if not shared:
        arrays["wcls"] = matrix(vocab, dim)
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, L, heads, kv_heads, vocab if shared else -vocab, seq_len))
        for array in arrays.values():
            f.write(array.numpy().astype("<f4").tobytes())
    return arrays


def llama2c_reference_logits(w: dict[str, torch.Tensor], tokens: torch.Tensor, n_heads: int, n_kv_heads: int):
    """The forward pass as llama2.c computes it (model.py, run.c), in float64, from the file's raw arrays.

    RMSNorm with eps 1e-5; RoPE on interleaved pairs (2i, 2i+1) of each head, turned by position / 10000^(2i/hs);
    query head h reads key/value head h // (n_heads / n_kv_heads); SwiGLU as w2(silu(w1 x) * w3 x).
    """
    w = {name: array.double() for name, array in w.items()}
    T, dim = len(tokens), w["token_embedding_table"].shape[1]
    hs = dim // n_heads
    # the angles in float32, as run.c computes them (powf, cosf); everything after in float64
    freq = 1.0 / 10000.0 ** (torch.arange(0, hs, 2).float() / hs)  # (hs/2,)
    angle = torch.arange(T, dtype=torch.float32)[:, None] * freq  # (T, hs/2)
    cos, sin = angle.cos().double()[:, None], angle.sin().double()[:, None]  # (T, 1, hs/2)

    def rmsnorm(x, weight):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight

    def rope(x, heads):  # (T, heads·hs): channels (2i, 2i+1) of every head turned by angle i
        a, b = x.view(T, heads, hs // 2, 2).unbind(-1)
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).view(T, heads * hs)

    causal = torch.ones(T, T, dtype=torch.bool).tril()
    x = w["token_embedding_table"][tokens]
    for layer in range(len(w["wq"])):
        h = rmsnorm(x, w["rms_att_weight"][layer])
        q, k = rope(h @ w["wq"][layer].T, n_heads), rope(h @ w["wk"][layer].T, n_kv_heads)
        v = h @ w["wv"][layer].T
        outputs = []
        for head in range(n_heads):
            kv = head // (n_heads // n_kv_heads)
            scores = q[:, head * hs : (head + 1) * hs] @ k[:, kv * hs : (kv + 1) * hs].T / math.sqrt(hs)
            outputs.append(scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v[:, kv * hs : (kv + 1) * hs])
        x = x + torch.cat(outputs, dim=-1) @ w["wo"][layer].T
        h = rmsnorm(x, w["rms_ffn_weight"][layer])
        x = x + (F.silu(h @ w["w1"][layer].T) * (h @ w["w3"][layer].T)) @ w["w2"][layer].T
    return rmsnorm(x, w["rms_final_weight"]) @ w.get("wcls", w["token_embedding_table"]).T


TOKENS = torch.tensor([3, 41, 7, 7, 19, 0, 33, 12, 48, 5, 26, 26, 1, 44, 9, 30])  # a full context of 16


@pytest.mark.parametrize("shared", [True, False])
def test_import_matches_a_forward_pass_written_the_llama2c_way(tmp_path, shared):
    arrays = make_llama2c_file(tmp_path / "model.bin", shared)
    model = from_llama2c(tmp_path / "model.bin").double()
    cfg = model.config
    assert (cfg.n_embd, cfg.mlp_hidden_size, cfg.n_layer, cfg.n_head, cfg.kv_heads, cfg.vocab_size, cfg.block_size) \
        == tuple(SHAPE[k] for k in HEADER_ORDER)
    assert (cfg.norm, cfg.position, cfg.mlp, cfg.bias, cfg.norm_eps, cfg.rope_theta) == \
        ("rmsnorm", "rope", "swiglu", False, 1e-5, 10000.0)
    assert cfg.tie_weights == shared and (model.lm_head.weight is model.transformer.wte.weight) == shared
    reference = llama2c_reference_logits(arrays, TOKENS, SHAPE["n_heads"], SHAPE["n_kv_heads"])
    with torch.no_grad():
        logits = model(TOKENS[None])[0][0]
    torch.testing.assert_close(logits, reference, atol=1e-9, rtol=0)

    # The permutation is what makes them agree: W_q and W_k loaded as stored (interleaved) give other logits.
    as_stored = model.state_dict()
    for i in range(SHAPE["n_layers"]):
        as_stored[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat([arrays[n][i] for n in ("wq", "wk", "wv")])
    model.load_state_dict(as_stored)
    with torch.no_grad():
        assert (model(TOKENS[None])[0][0] - reference).abs().max() > 1e-2


@pytest.mark.parametrize("shared", [True, False])
def test_read_then_write_gives_back_the_same_bytes(tmp_path, shared):
    make_llama2c_file(tmp_path / "model.bin", shared, seed=1)
    written = write_llama2c(from_llama2c(tmp_path / "model.bin"), tmp_path / "again.bin")
    assert written.read_bytes() == (tmp_path / "model.bin").read_bytes()


def test_read_llama2c_returns_the_header_and_the_raw_arrays(tmp_path):
    arrays = make_llama2c_file(tmp_path / "model.bin", shared=False, seed=2)
    header, read = read_llama2c(tmp_path / "model.bin")
    assert (header.vocab_size, header.shared_classifier, header.head_size) == (50, False, 8)
    assert list(read) == list(arrays)  # file order
    for name, array in arrays.items():
        np.testing.assert_array_equal(read[name], array.numpy())


def test_stories15m_header_is_tinylms_preset():
    # stories15M as llama2.c's README lists it: dim 288, 6 layers, 6 heads, context 256; hidden 768,
    # Llama 2's vocabulary
    header = Llama2cHeader(dim=288, hidden_dim=768, n_layers=6, n_heads=6, n_kv_heads=6, vocab_size=32000,
                           seq_len=256, shared_classifier=True)
    assert parse_header(header.pack()) == header
    assert config_of(header) == LLAMA2C_STORIES15M


@pytest.mark.parametrize("tie", [True, False])
def test_tinylm_llama_through_the_file_and_back_has_identical_logits(tmp_path, tie):
    torch.manual_seed(3)
    config = dataclasses.replace(with_architecture(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4,
                                                             n_embd=32), "llama"), tie_weights=tie)
    model = GPT(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):  # 1 at init: a swap would go unnoticed
                param.add_(0.2 * torch.randn_like(param))
    again = from_llama2c(write_llama2c(model, tmp_path / "model.bin"))
    assert (again.config.kv_heads, again.config.mlp_hidden_size, again.config.tie_weights) == (2, 96, tie)
    with torch.no_grad():
        assert torch.equal(again(TOKENS[None])[0], model(TOKENS[None])[0])


def test_a_file_whose_size_does_not_match_its_header_is_refused(tmp_path):
    make_llama2c_file(tmp_path / "model.bin", shared=True)
    data = (tmp_path / "model.bin").read_bytes()
    for name, content in (("short.bin", data[:-4]), ("long.bin", data + b"\x00")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(Llama2cFormatError) as info:
            from_llama2c(tmp_path / name)
        message = str(info.value)
        assert f"has {len(content):,} bytes" in message and f"implies {len(data):,}" in message
        assert "truncated" in message and "\n" not in message


@pytest.mark.parametrize("change, phrase", [
    (dict(dim=0), "dim=0"),
    (dict(n_heads=3), "not divisible by n_heads=3"),
    (dict(n_kv_heads=3), "n_heads=4 is not divisible by n_kv_heads=3"),
    (dict(dim=20), "odd head size 5"),
    (dict(vocab_size=0), "vocab_size=0"),
    (dict(seq_len=-1, hidden_dim=0), "hidden_dim=0, seq_len=-1"),
])
def test_impossible_headers_are_refused(tmp_path, change, phrase):
    values = {**SHAPE, **change}
    (tmp_path / "bad.bin").write_bytes(struct.pack("<7i", *(values[k] for k in HEADER_ORDER)) + bytes(4096))
    with pytest.raises(Llama2cFormatError, match=phrase):
        read_llama2c(tmp_path / "bad.bin")


def test_version_1_and_2_files_are_recognised_and_refused(tmp_path):
    (tmp_path / "v1.bin").write_bytes(struct.pack("<Ii7i", MAGIC, 1, *SHAPE.values()) + bytes(4096))
    with pytest.raises(Llama2cFormatError, match="version-1 file.*--version 0"):
        from_llama2c(tmp_path / "v1.bin")
    (tmp_path / "tiny.bin").write_bytes(b"\x01\x02")
    with pytest.raises(Llama2cFormatError, match="too short"):
        from_llama2c(tmp_path / "tiny.bin")
    with pytest.raises(FileNotFoundError, match="no llama2.c checkpoint"):
        from_llama2c(tmp_path / "missing.bin")


@pytest.mark.parametrize("arch, change, phrase", [
    ("gpt2", {}, "norm='layernorm'.*position='learned'.*mlp='gelu'"),
    ("llama-moe", {}, "n_experts=8"),
    ("llama", dict(bias=True), "bias=True"),
    ("llama", dict(norm_eps=1e-6), "norm_eps=1e-06"),
    ("llama", dict(rope_theta=500000.0), "rope_theta=500000"),
])
def test_export_refuses_models_run_c_cannot_run(tmp_path, arch, change, phrase):
    config = dataclasses.replace(with_architecture(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=4,
                                                             n_embd=32), arch), **change)
    with pytest.raises(InteropError, match=phrase):
        write_llama2c(GPT(config), tmp_path / "model.bin")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cli_import_with_a_tokenizer_then_sample_eval_and_export(tmp_path, capsys, sentencepiece_model):
    from tinylm.cli.eval import main as eval_main
    from tinylm.cli.sample import main as sample_main

    make_llama2c_file(tmp_path / "model.bin", shared=True, vocab_size=400, seq_len=64)
    ckpt = main(["import", "--llama2c", str(tmp_path / "model.bin"), "--tokenizer-model", str(sentencepiece_model),
                 "--out", str(tmp_path / "model.pt")])
    out = capsys.readouterr().out
    assert f"wrote {ckpt}" in out and "sentencepiece tokenizer" in out and "python -m tinylm.sample" in out
    assert load_checkpoint(ckpt)["source"] == f"llama2.c: {tmp_path / 'model.bin'}"
    model, tokenizer, _ = load_model(ckpt)
    assert isinstance(tokenizer, SentencePieceTokenizer) and tokenizer.vocab_size == 400
    with torch.no_grad():
        assert torch.equal(model(TOKENS[None])[0], from_llama2c(tmp_path / "model.bin")(TOKENS[None])[0])

    texts = sample_main(["--ckpt", str(ckpt), "--prompt", "ROMEO:", "--max-new-tokens", "20", "--seed", "1",
                         "--no-stop-at-eot"])
    assert texts[0].startswith("ROMEO:") and len(texts[0]) > len("ROMEO:")

    story = "ROMEO: What says the day? JULIET: It is the lark."
    (tmp_path / "story.txt").write_text(story)
    capsys.readouterr()
    assert eval_main(["loss", "--ckpt", str(ckpt), "--text", str(tmp_path / "story.txt"), "--json"])
    result = json.loads(capsys.readouterr().out)
    ids = tokenizer.encode(story, bos=True)  # scored after BOS, as llama2.c's training data starts every story
    with torch.no_grad():
        expected = F.cross_entropy(model(torch.tensor([ids[:-1]]))[0][0], torch.tensor(ids[1:])).item()
    assert result["tokens"] == len(ids) - 1 <= model.config.block_size and result["bytes"] == len(story)
    assert result["loss"] == pytest.approx(expected, rel=1e-5)

    again = main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "again.bin"), "--format", "llama2c"])
    assert again.read_bytes() == (tmp_path / "model.bin").read_bytes()
    assert "run.c" in capsys.readouterr().out


@pytest.mark.parametrize("content, phrase", [(b"\x07" * 100, "not a legacy llama2.c checkpoint"),
                                             (None, "no llama2.c checkpoint")], ids=["garbage", "missing"])
def test_cli_errors_are_one_line(tmp_path, capsys, content, phrase):
    if content is not None:
        (tmp_path / "model.bin").write_bytes(content)
    with pytest.raises(SystemExit) as info:
        cli(["import", "--llama2c", str(tmp_path / "model.bin"), "--out", str(tmp_path / "model.pt")])
    message = str(info.value.code)
    assert message.startswith("error: ") and phrase in message and "\n" not in message
    assert not (tmp_path / "model.pt").exists()


def test_a_published_model_is_fetched_checked_and_scored_in_bits_per_byte_as_notebook_5_does(tmp_path,
                                                                                             sentencepiece_model):
    """The path notebook 5 describes to stories15M, without the network: a tiny model written by tinylm's llama2.c
    export and a SentencePiece model stand in for the published files, served from file:// addresses and pinned by
    sha256."""
    tokenizer = SentencePieceTokenizer.from_file(sentencepiece_model)
    torch.manual_seed(4)
    model = GPT(with_architecture(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=4,
                                            n_embd=32), "llama")).eval()
    published = write_llama2c(model, tmp_path / "published" / "stories.bin")

    def remote(path):
        return RemoteFile(url=path.as_uri(), sha256=sha256_of(path), mirror_path=None)

    loaded, loaded_tokenizer = load_stories15m(tmp_path / "downloads", remote(published), remote(sentencepiece_model))
    assert (tmp_path / "downloads" / "stories.bin").read_bytes() == published.read_bytes()
    assert loaded_tokenizer.to_dict() == tokenizer.to_dict()

    stories = ["ROMEO: What says the day?", "JULIET: It is the lark\u2019s song, and not the nightingale."]
    result = texts_loss(loaded, loaded_tokenizer, stories)
    nats = 0.0  # by hand: each story from BOS, as llama2.c trains, every piece a target
    for story in stories:
        ids = tokenizer.encode(story, bos=True)
        assert len(ids) <= model.config.block_size
        with torch.no_grad():
            logits = model(torch.tensor([ids[:-1]]))[0][0]
        nats += F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum").item()
    num_bytes = sum(len(story.encode("utf-8")) for story in stories)  # bytes, not characters: the ’ is three
    assert (result["texts"], result["bytes"]) == (2, num_bytes)
    assert result["tokens"] == sum(len(tokenizer.encode(story)) for story in stories)
    assert result["bits_per_byte"] == pytest.approx(nats / math.log(2) / num_bytes, rel=1e-5)
    with pytest.raises(ValueError, match="no texts"):
        texts_loss(loaded, loaded_tokenizer, [])
