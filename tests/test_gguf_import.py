"""GGUF import: a real model (the mirror's SmolLM2-135M-Instruct) against transformers' own GGUF loader, logits and
token ids; every tensor type tinylm reads against the `gguf` package's round trip on a small exported Llama; the
chat template against the file's own; refusals in one line with nothing written."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize, quantize  # noqa: E402

from tinylm.cli.interop import cli  # noqa: E402
from tinylm.cli.interop import main as cli_main  # noqa: E402
from tinylm.interop.gguf_file import write_gguf  # noqa: E402
from tinylm.interop.gguf_import import SMOLLM2_INSTRUCT, TENSOR_TYPES, from_gguf  # noqa: E402
from tinylm.interop.vocab_export import exported_vocab, with_rows  # noqa: E402
from tinylm.model.rope import interleaved_to_rotate_half  # noqa: E402
from tinylm.tokenizers.chat_template import ChatTemplate  # noqa: E402
from tinylm.tokenizers.hf_bpe import TrainedBPETokenizer  # noqa: E402
from tinylm.train.checkpoint import load_model, model_checkpoint, save_checkpoint  # noqa: E402

MIRRORED = Path(os.environ.get("TINYLM_DATA_MIRROR", "/nonexistent")) / SMOLLM2_INSTRUCT.mirror_path
needs_smollm2 = pytest.mark.skipif(not MIRRORED.is_file(), reason="the offline mirror has no SmolLM2 GGUF")
# Digits, code, runs of spaces and newlines, accents, emoji, and the special tokens written as text.
TRICKY = ("In 2024, 3.14159 * 1,000,000 = 3141590.\n\n    def f(x):\n\treturn x**2  # café, naïve, Ünïcödé 🙂🚀"
          " <|im_start|>user\nHi<|im_end|> <|endoftext|>  \u00a0 tail")
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    if n < 2:", "12 + 35 = 47, and 47 * 3 =",
           "<|im_start|>user\nWhat is a bee?<|im_end|>\n<|im_start|>assistant\n"]


@pytest.fixture(scope="module")
def smollm2():
    return from_gguf(MIRRORED)


@pytest.fixture(scope="module")
def transformers_side():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    folder, name = str(MIRRORED.parent), MIRRORED.name
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name, split_special_tokens=True)
    return model, tokenizer


@needs_smollm2
def test_smollm2_logits_and_token_ids_equal_transformers_gguf_loader(smollm2, transformers_side):
    model, tokenizer = smollm2
    hf_model, hf_tokenizer = transformers_side
    assert model.num_parameters() == sum(p.numel() for p in hf_model.parameters()) == 134_515_008
    assert tokenizer.encode(TRICKY) == hf_tokenizer(TRICKY, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(tokenizer.encode(TRICKY)) == TRICKY
    for prompt in [TRICKY, *PROMPTS]:
        ids = torch.tensor([hf_tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            theirs, ours = hf_model(ids).logits, model(ids)[0]
        assert ours.shape == theirs.shape
        assert ((ours - theirs).abs().max() / theirs.abs().max()) < 1e-4, prompt


@needs_smollm2
def test_smollm2_chat_prompt_is_the_files_own_template(smollm2, transformers_side):
    _, tokenizer = smollm2
    _, hf_tokenizer = transformers_side
    template = ChatTemplate(tokenizer)
    assert tokenizer.system_prompt == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    conversation = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "What is 2+2?"}]
    theirs = hf_tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    ours = template.render_prompt([{"role": "system", "content": tokenizer.system_prompt}, *conversation])
    assert tokenizer.decode(ours) == theirs
    assert tokenizer.token_id("<|im_end|>") in template.stop_tokens
    assert tokenizer.token_id("<|im_end|>") not in template.not_text  # SmolLM2 pads with <|im_end|>: it still stops


def small_llama(make_model, vocab: int):
    """A grouped-query Llama whose every width is a multiple of 32, the block of GGUF's quantised types."""
    return make_model(seed=3, vocab_size=vocab, n_embd=64, n_head=4, n_kv_head=2, n_layer=2, block_size=32,
                      norm="rmsnorm", position="rope", mlp="swiglu", mlp_hidden=96, rope_theta=500.0, bias=False,
                      tie_weights=True)


@pytest.fixture
def exported(tmp_path, make_model):
    """(model, tokenizer, path) of a small Llama with a trained BPE, exported as a float32 GGUF."""
    tokenizer = TrainedBPETokenizer.train(["the cat sat on the mat 12 times. " * 40], 300, show_progress=False)
    model = small_llama(make_model, tokenizer.vocab_size)
    vocab = exported_vocab(tokenizer)
    return model, tokenizer, write_gguf(with_rows(model, vocab.rows), vocab, tmp_path / "small.gguf")


def requantized(source: Path, dest: Path, kind: str) -> dict[str, np.ndarray]:
    """`source` rewritten with every 2-D tensor in `kind` (metadata kept); returns what each tensor now holds."""
    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(dest, "llama")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        value_type = field.types[0]
        if value_type == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(field.name, field.contents(), value_type, sub_type=field.types[-1])
        else:
            writer.add_key_value(field.name, field.contents(), value_type)
    held = {}
    qtype = gguf.GGMLQuantizationType[kind]
    for tensor in reader.tensors:
        values = np.array(tensor.data, dtype=np.float32)
        if values.ndim == 2:
            packed = quantize(values, qtype)
            writer.add_tensor(tensor.name, packed, raw_shape=packed.shape, raw_dtype=qtype)
            held[tensor.name] = dequantize(packed, qtype)
        else:
            writer.add_tensor(tensor.name, values)
            held[tensor.name] = values
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return held


def test_float32_export_imports_back_exactly(exported):
    model, tokenizer, path = exported
    imported, imported_tokenizer = from_gguf(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(imported.state_dict()[name], tensor), name
    text = "the cat sat 1234 times  on\nthe mat"
    assert imported_tokenizer.encode(text) == tokenizer.encode(text)
    assert imported_tokenizer.eot_token == tokenizer.eot_token


@pytest.mark.parametrize("kind", [kind for kind in TENSOR_TYPES if kind != "F32"])
def test_every_tensor_type_is_dequantised_as_the_gguf_package_does(exported, tmp_path, kind):
    model, _, path = exported
    held = requantized(path, tmp_path / f"{kind}.gguf", kind)
    imported, _ = from_gguf(tmp_path / f"{kind}.gguf")
    state, cfg = imported.state_dict(), model.config
    assert torch.equal(state["transformer.wte.weight"], torch.from_numpy(held["token_embd.weight"]))
    q = interleaved_to_rotate_half(torch.from_numpy(held["blk.1.attn_q.weight"]), cfg.n_head)
    assert torch.equal(state["transformer.h.1.attn.c_attn.weight"][:cfg.n_embd], q)
    assert torch.equal(state["transformer.h.0.mlp.c_proj.weight"], torch.from_numpy(held["blk.0.ffn_down.weight"]))
    # the quantised model computes what the float one does, to the quantisation's error
    ids = torch.arange(20)[None] % model.config.vocab_size
    with torch.no_grad():
        gap = (imported(ids)[0] - model(ids)[0]).abs().max() / model(ids)[0].abs().max()
    assert gap < {"F16": 1e-3, "BF16": 1e-2, "Q8_0": 3e-2}.get(kind, 0.3)
    assert gap > 0 or kind in ("F16",)


def test_refusals_are_one_line_and_write_nothing(exported, tmp_path, make_model):
    _, _, path = exported
    out = tmp_path / "run"

    def refusal(gguf_path) -> str:
        with pytest.raises(SystemExit) as info:
            cli(["import", "--gguf", str(gguf_path), "--out", str(out)])
        assert not out.exists()
        message = str(info.value.code)
        assert "\n" not in message and "Traceback" not in message
        return message

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "not a whole GGUF file" in refusal(cut) or "damaged" in refusal(cut)
    requantized(path, tmp_path / "q5.gguf", "Q5_0")
    assert "Q5_0" in refusal(tmp_path / "q5.gguf") and "Q4_1" in refusal(tmp_path / "q5.gguf")
    gpt2_style = make_model(seed=0, vocab_size=300)
    tokenizer = TrainedBPETokenizer.train(["a b c " * 50], 300, show_progress=False)
    vocab = exported_vocab(tokenizer)
    write_gguf(with_rows(gpt2_style, vocab.rows), vocab, tmp_path / "gpt2.gguf")
    assert "'gpt2' model" in refusal(tmp_path / "gpt2.gguf")
    text = path.read_bytes().replace(b"gpt-2", b"qwen2", 1)  # the pre-tokenizer's name, same length
    (tmp_path / "qwen.gguf").write_bytes(text)
    assert "pre-tokenizer 'qwen2'" in refusal(tmp_path / "qwen.gguf")
    assert "no GGUF file" in refusal(tmp_path / "missing.gguf")


@needs_smollm2
@pytest.mark.parametrize("format", ["gguf", "hf"])
def test_an_imported_tokenizer_survives_export_and_import(smollm2, make_model, tmp_path, format):
    """A small Llama with SmolLM2's tokenizer, exported and imported again: the same weights, ids, special tokens,
    chat template and default system prompt."""
    _, tokenizer = smollm2
    model = small_llama(make_model, tokenizer.vocab_size)
    ckpt = tmp_path / "small.pt"
    save_checkpoint(ckpt, model_checkpoint(model, tokenizer, step=0))
    exported = cli_main(["export", "--ckpt", str(ckpt), "--format", format, "--out", str(tmp_path / "out")])
    source = ["--gguf", str(exported)] if format == "gguf" else ["--hf", str(exported)]
    back = cli_main(["import", *source, "--out", str(tmp_path / "back.pt")])
    imported, imported_tokenizer, _ = load_model(back)
    for name, tensor in model.state_dict().items():
        assert torch.equal(imported.state_dict()[name], tensor), name
    assert imported_tokenizer.encode(TRICKY) == tokenizer.encode(TRICKY)
    for name in ("bos", "eos", "pad", "chatml", "system_prompt", "eot_token"):
        assert getattr(imported_tokenizer, name) == getattr(tokenizer, name), name
