"""Export with the tokenizer: for each tokenizer kind, Hugging Face's AutoTokenizer + AutoModelForCausalLM read the
exported folder into tinylm's token ids and greedy tokens, and a GGUF file read back with `gguf` holds every tensor
(under llama.cpp's names and layout) and a tokenizer that encodes as tinylm's does."""

import shutil

import pytest
import torch

from tests.helpers import run_cli
from tests.test_interop_out import one_line_error
from tinylm.cli.interop import main
from tinylm.config import GPTConfig, with_architecture
from tinylm.errors import InputError
from tinylm.generate.decode import generate_batch
from tinylm.interop.vocab_export import exported_vocab
from tinylm.model.gpt import GPT
from tinylm.tokenizers.bpe import GPT2BPE
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.gpt2 import CHAT_SPECIAL_TOKENS, BPETokenizer, TrimmedBPETokenizer, padded_vocab_size
from tinylm.tokenizers.hf_bpe import TrainedBPETokenizer
from tinylm.tokenizers.llama import SentencePieceTokenizer
from tinylm.train.checkpoint import model_checkpoint, save_checkpoint

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

# Text none of us wrote: the opening of Goethe's Faust (German), a line of the Iliad (Greek), a haiku's first line by
# Bashō (Japanese), and emoji.
TEXT = ("Habe nun, ach! Philosophie, Juristerei und Medizin, und leider auch Theologie durchaus studiert.\n"
        "Μῆνιν ἄειδε θεὰ Πηληϊάδεω Ἀχιλῆος\n古池や蛙飛び込む水の音 🐸💧\n")
PROMPT = "Habe nun, ach!"
NEW_TOKENS = 12


def tokenizer_of(kind: str):
    if kind == "char":
        return CharTokenizer.from_text(TEXT)
    if kind in ("gpt2", "gpt2-chat"):
        return BPETokenizer(kind)
    if kind == "trained_bpe":
        return TrainedBPETokenizer.train([TEXT], vocab_size=300, show_progress=False)
    if kind == "trained_bpe-chat":
        return TrainedBPETokenizer.train([TEXT], vocab_size=300, show_progress=False).with_chat_tokens(
            CHAT_SPECIAL_TOKENS)
    gpt2 = BPETokenizer()
    return TrimmedBPETokenizer.from_ids(gpt2.encode(TEXT) + [gpt2.eot_token])  # documents end in <|endoftext|>


def export(tmp_path, kind: str, arch: str, fmt: str = "hf", seed: int = 0):
    """(the tinylm model, its tokenizer, what `interop export --format fmt` wrote) for a random tiny model whose
    embedding is padded to a multiple of 64, as the tracks pad it."""
    tokenizer = tokenizer_of(kind)
    torch.manual_seed(seed)
    config = with_architecture(GPTConfig(vocab_size=padded_vocab_size(tokenizer.vocab_size), block_size=32,
                                         n_layer=2, n_head=2, n_embd=32), arch)
    model = GPT(config).eval()
    save_checkpoint(tmp_path / "model.pt", model_checkpoint(model, tokenizer, step=0))
    out = main(["export", "--ckpt", str(tmp_path / "model.pt"), "--format", fmt,
                "--out", str(tmp_path / ("model.gguf" if fmt == "gguf" else "hf"))])
    return model, tokenizer, out


def hf_greedy(model, ids: list[int], steps: int) -> list[int]:
    ids = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(steps):
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0, -steps:].tolist()


CASES = [("char", "gpt2"), ("gpt2", "gpt2"), ("gpt2-chat", "llama"), ("trimmed", "gpt2"), ("trimmed", "llama"),
         ("trained_bpe", "gpt2"), ("trained_bpe-chat", "llama")]


@pytest.mark.parametrize("kind,arch", CASES)
def test_hf_export_gives_tinylms_token_ids_and_greedy_tokens(tmp_path, kind, arch):
    model, tokenizer, folder = export(tmp_path, kind, arch)
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {p.name for p in folder.iterdir()}
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = hf_tokenizer(PROMPT).input_ids
    assert prompt == tokenizer.encode(PROMPT)
    assert hf_tokenizer.decode(hf_tokenizer(TEXT).input_ids) == TEXT
    expected = generate_batch(model, [prompt], NEW_TOKENS, temperature=0, vocab_limit=tokenizer.vocab_size)[0]
    assert hf_greedy(hf_model, prompt, NEW_TOKENS) == expected
    assert hf_model.config.vocab_size == len(hf_tokenizer)  # the padding rows are left out
    eot = getattr(tokenizer, "eot_token", None)
    assert (hf_tokenizer.eos_token_id, hf_model.config.eos_token_id) == (eot, eot)


def test_special_token_text_in_a_prompt_stays_text_as_in_tinylm(tmp_path):
    _, tokenizer, folder = export(tmp_path, "gpt2-chat", "gpt2")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    text = "a <|endoftext|> and <|im_end|> typed by a user"
    assert hf_tokenizer(text).input_ids == tokenizer.encode(text)
    chat = hf_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert hf_tokenizer.decode(chat) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_token_the_trimmed_vocabulary_dropped_reads_as_unk(tmp_path, arch):
    """A dropped GPT-2 token gets its own id (the BPE's merges need it), on the row of <unk>, which is what tinylm
    reads it as: the logits over tinylm's ids are equal."""
    model, tokenizer, folder = export(tmp_path, "trimmed", arch)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    text = "und leider Zebra auch"  # " Zebra" is no token of TEXT
    ours, theirs = tokenizer.encode(text), hf_tokenizer(text).input_ids
    assert tokenizer.unk_id in ours and len(ours) == len(theirs)
    assert all(t == o if o != tokenizer.unk_id else t > tokenizer.unk_id for o, t in zip(ours, theirs))
    with torch.no_grad():
        expected = model(torch.tensor([ours]))[0][0, :, :tokenizer.vocab_size]
        got = hf_model(torch.tensor([theirs])).logits[0, :, :tokenizer.vocab_size]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def rope_pairs_adjacent(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """The rows llama.cpp's RoPE wants: row 2i of a head is tinylm's row i, row 2i+1 its row i + head_size/2."""
    size = weight.shape[0] // heads
    order = [h * size + j // 2 + (j % 2) * (size // 2) for h in range(heads) for j in range(size)]
    return weight[order]


def expected_gguf_tensors(model: GPT, tokenizer) -> dict[str, torch.Tensor]:
    """llama.cpp's names for tinylm's tensors, written out by hand; the vocabulary rows are tinylm's own rows,
    without padding (a trimmed vocabulary's dropped tokens follow, on <unk>'s row)."""
    cfg, state = model.config, model.state_dict()
    rows = list(range(tokenizer.vocab_size))
    if isinstance(tokenizer, TrimmedBPETokenizer):
        rows += [tokenizer.unk_id] * (tokenizer.base.vocab_size - len(tokenizer.kept_ids))
    out = {"token_embd.weight": state["transformer.wte.weight"][rows]}
    llama = cfg.position == "rope"
    norm = ("weight",) if llama else ("weight", "bias")
    out |= {f"output_norm.{k}": state[f"transformer.ln_f.{k}"] for k in norm}
    if not llama:
        out["position_embd.weight"] = state["transformer.wpe.weight"]
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        for k in norm:
            out[f"blk.{i}.attn_norm.{k}"] = state[f"{p}ln_1.{k}"]
            out[f"blk.{i}.ffn_norm.{k}"] = state[f"{p}ln_2.{k}"]
        for k in ("weight", "bias") if cfg.bias else ("weight",):
            out[f"blk.{i}.attn_output.{k}"] = state[f"{p}attn.c_proj.{k}"]
            out[f"blk.{i}.ffn_up.{k}"] = state[f"{p}mlp.c_fc.{k}"]
            out[f"blk.{i}.ffn_down.{k}"] = state[f"{p}mlp.c_proj.{k}"]
            qkv = state[f"{p}attn.c_attn.{k}"]
            if not llama:
                out[f"blk.{i}.attn_qkv.{k}"] = qkv
                continue
            q_rows, kv_rows = cfg.n_head * cfg.head_size, cfg.kv_heads * cfg.head_size
            out[f"blk.{i}.attn_q.{k}"] = rope_pairs_adjacent(qkv[:q_rows], cfg.n_head)
            out[f"blk.{i}.attn_k.{k}"] = rope_pairs_adjacent(qkv[q_rows:q_rows + kv_rows], cfg.kv_heads)
            out[f"blk.{i}.attn_v.{k}"] = qkv[q_rows + kv_rows:]
            out[f"blk.{i}.ffn_gate.{k}"] = state[f"{p}mlp.c_gate.{k}"]
    return out


def field(reader, key):
    return reader.fields[key].contents()


@pytest.mark.parametrize("kind,arch", CASES)
def test_gguf_read_back_holds_every_tensor_and_the_tokenizer(tmp_path, kind, arch):
    model, tokenizer, path = export(tmp_path, kind, arch, fmt="gguf")
    reader = gguf.GGUFReader(path)
    assert field(reader, "general.architecture") == arch
    cfg = model.config
    assert [field(reader, f"{arch}.{key}") for key in ("context_length", "embedding_length", "block_count",
                                                       "attention.head_count", "attention.head_count_kv")] \
        == [cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.kv_heads]
    expected = expected_gguf_tensors(model, tokenizer)
    tensors = {tensor.name: torch.from_numpy(tensor.data.copy()) for tensor in reader.tensors}
    assert sorted(tensors) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(tensors[name], tensor), name

    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == expected["token_embd.weight"].shape[0]
    if kind == "char":
        assert field(reader, "tokenizer.ggml.model") == "rwkv"
        unescaped = [t.replace("\\n", "\n").replace("\\\\", "\\") for t in tokens]
        assert unescaped == tokenizer.chars
        return
    assert (field(reader, "tokenizer.ggml.model"), field(reader, "tokenizer.ggml.pre")) == ("gpt2", "gpt-2")
    merges = [tuple(merge.split(" ")) for merge in field(reader, "tokenizer.ggml.merges")]
    gguf_bpe = GPT2BPE({token: i for i, token in enumerate(tokens)}, merges)
    assert gguf_bpe.encode(TEXT) == tokenizer.encode(TEXT)
    assert field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.eot_token
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    types = field(reader, "tokenizer.ggml.token_type")
    assert types[tokenizer.eot_token] == gguf.TokenType.CONTROL
    if kind == "trimmed":
        assert field(reader, "tokenizer.ggml.unknown_token_id") == tokenizer.unk_id
        assert types[tokenizer.unk_id] == gguf.TokenType.UNKNOWN


def test_gguf_export_refuses_what_llama_cpp_cannot_run_in_one_line(tmp_path, sentencepiece_model):
    torch.manual_seed(0)
    tokenizer = CharTokenizer.from_text(TEXT)
    moe = GPT(with_architecture(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2,
                                          n_embd=32), "llama-moe"))
    save_checkpoint(tmp_path / "moe.pt", model_checkpoint(moe, tokenizer, step=0))
    message = one_line_error(["export", "--ckpt", tmp_path / "moe.pt", "--format", "gguf", "--out", tmp_path / "m"])
    assert "GPT-2-style" in message and "dense Llama-style" in message and "n_experts=8" in message
    plain = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32))
    for tokenizer in (None, SentencePieceTokenizer.from_file(sentencepiece_model)):  # neither can be a token table
        save_checkpoint(tmp_path / "plain.pt", model_checkpoint(plain, tokenizer, step=0))
        message = one_line_error(["export", "--ckpt", tmp_path / "plain.pt", "--format", "gguf", "--out",
                                  tmp_path / "p"])
        with pytest.raises(InputError) as refused:  # the library's one check, not a copy of it in the command line
            exported_vocab(tokenizer)
        assert message == f"error: {refused.value}" and "char, GPT-2" in message
    assert not list(tmp_path.glob("*.gguf")) and not (tmp_path / "m").exists()


def test_gguf_export_suggests_the_start_of_the_models_own_kind_of_text(tmp_path, data_root):
    """Its closing hint ran llama.cpp on "Once upon a time" whatever the model; it now starts from the text a run's
    samples start from (its track's prompt, written as llama.cpp reads it), or where the checkpoint's folder does
    not say which track it trained, leaves PROMPT for the user to write."""
    run = tmp_path / "run"
    trained = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", run, data_dir=data_root)
    assert trained.returncode == 0, trained.stderr
    exported = run_cli("tinylm.interop", "export", "--ckpt", run, "--format", "gguf", "--out", tmp_path / "s.gguf",
                       data_dir=data_root)
    assert exported.returncode == 0, exported.stderr
    assert f"llama-completion -m {tmp_path / 's.gguf'} -no-cnv -n 100 -p '\\n')" in exported.stdout
    assert "Once upon a time" not in exported.stdout
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(run / "best.pt", tmp_path / "elsewhere" / "model.pt")
    moved = run_cli("tinylm.interop", "export", "--ckpt", tmp_path / "elsewhere" / "model.pt", "--format", "gguf",
                    "--out", tmp_path / "m.gguf", data_dir=data_root)
    assert moved.returncode == 0 and f"-m {tmp_path / 'm.gguf'} -no-cnv -n 100 -p PROMPT)" in moved.stdout


def test_a_trimmed_vocabulary_without_end_of_text_exports_none():
    trimmed = TrimmedBPETokenizer.from_ids(BPETokenizer().encode(TEXT))
    assert trimmed.eot_token == trimmed.unk_id
    vocab = exported_vocab(trimmed)
    assert vocab.eot is None and vocab.unk == trimmed.unk_id and "<|endoftext|>" in vocab.tokens
