"""Hugging Face interop: GPT-2 weights into tinylm and back out, checked on logits, keys and refusals."""

import json

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from tests.helpers import hf_logits, tinylm_logits  # noqa: E402
from tinylm.cli.interop import cli, main  # noqa: E402
from tinylm.config import GPTConfig  # noqa: E402
from tinylm.interop.hf_gpt2 import (  # noqa: E402
    TRANSPOSED,
    InteropError,
    check_exportable,
    from_hf_gpt2,
    hf_to_tinylm_state_dict,
    tinylm_to_hf_state_dict,
    to_hf_gpt2,
)
from tinylm.model.gpt import GPT  # noqa: E402
from tinylm.tokenizers.char import CharTokenizer  # noqa: E402
from tinylm.train.checkpoint import load_checkpoint, load_model, model_checkpoint, save_checkpoint  # noqa: E402

HF_SHAPE = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=100)
TOL = 1e-5


@pytest.fixture(scope="module")
def hf_model():
    """A randomly initialised small transformers GPT-2 (no download), its biases and LayerNorms made non-trivial."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**HF_SHAPE, bos_token_id=None, eos_token_id=None)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:  # initialised to 0 / 1: a swapped one would go unnoticed
                param.add_(0.1 * torch.randn_like(param))
    return model


@pytest.fixture
def ids():
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, HF_SHAPE["vocab_size"], (3, HF_SHAPE["n_positions"]), generator=generator)


def test_hf_gpt2_imports_with_equal_logits(hf_model, ids):
    model = from_hf_gpt2(hf_model)
    cfg = model.config
    assert (cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd) == (100, 64, 2, 2, 32)
    assert cfg.tie_weights and cfg.bias and model.lm_head.weight is model.transformer.wte.weight
    torch.testing.assert_close(tinylm_logits(model, ids), hf_logits(hf_model, ids), atol=TOL, rtol=0)


def test_export_loads_in_transformers_with_equal_logits(make_model, tmp_path, ids):
    model = make_model(seed=3, vocab_size=100, block_size=64).eval()
    folder = to_hf_gpt2(model, tmp_path / "hf")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["activation_function"] == "gelu_new" and config["layer_norm_epsilon"] == 1e-5
    assert (config["n_positions"], config["vocab_size"], config["tie_word_embeddings"]) == (64, 100, True)
    loaded = GPT2LMHeadModel.from_pretrained(folder).eval()
    torch.testing.assert_close(hf_logits(loaded, ids), tinylm_logits(model, ids), atol=TOL, rtol=0)
    # and back again, from the folder's path
    again = from_hf_gpt2(folder)
    torch.testing.assert_close(tinylm_logits(again, ids), tinylm_logits(model, ids), atol=TOL, rtol=0)


def test_mapping_covers_every_parameter_key_for_key(hf_model):
    hf_state = hf_model.state_dict()
    mapped = hf_to_tinylm_state_dict(hf_state)
    tiny_state = GPT(GPTConfig(vocab_size=100, block_size=64, n_layer=2, n_head=2, n_embd=32)).state_dict()
    assert set(mapped) == set(tiny_state)
    for key, value in mapped.items():
        assert value.shape == tiny_state[key].shape, key
        if key.endswith(TRANSPOSED):
            assert torch.equal(value, hf_state[key].t())
        else:
            assert torch.equal(value, hf_state[key])
    assert sum(key.endswith(TRANSPOSED) for key in mapped) == 4 * HF_SHAPE["n_layer"]
    inverse = tinylm_to_hf_state_dict(mapped)
    assert set(inverse) == set(hf_state) and all(torch.equal(inverse[k], hf_state[k]) for k in hf_state)


def test_older_transformers_mask_buffers_are_skipped_but_attention_biases_kept(hf_model):
    state = dict(hf_model.state_dict())
    state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 64, 64).tril()  # transformers 4.x kept the causal mask
    state["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    mapped = hf_to_tinylm_state_dict(state)
    assert "transformer.h.0.attn.bias" not in mapped and "transformer.h.0.attn.masked_bias" not in mapped
    assert "transformer.h.0.attn.c_attn.bias" in mapped  # ends in "attn.bias" too, but it is a weight


def test_untied_hf_model_keeps_its_own_head(ids):
    torch.manual_seed(2)
    hf = GPT2LMHeadModel(GPT2Config(**HF_SHAPE, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None)).eval()
    model = from_hf_gpt2(hf)
    assert not model.config.tie_weights and model.lm_head.weight is not model.transformer.wte.weight
    torch.testing.assert_close(tinylm_logits(model, ids), hf_logits(hf, ids), atol=TOL, rtol=0)


@pytest.mark.parametrize("change, message", [
    (dict(bias=False), "bias=False"),
    (dict(tie_weights=False), "untied"),
    ("relu", "GELU"),
    ("eps", "eps"),
])
def test_export_refuses_models_that_are_not_gpt2_style(make_model, tmp_path, change, message):
    if isinstance(change, dict):
        model = make_model(**change)
    else:
        model = make_model()
        if change == "relu":
            model.transformer.h[1].mlp.act = nn.ReLU()
        else:
            model.transformer.ln_f.eps = 1e-6
    with pytest.raises(InteropError, match=message):
        to_hf_gpt2(model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    with pytest.raises(InteropError, match="only tinylm GPT"):
        check_exportable(nn.Linear(2, 2))


def test_import_refuses_gpt2_variants_tinylm_lacks():
    hf = GPT2LMHeadModel(GPT2Config(**HF_SHAPE, activation_function="relu", bos_token_id=None, eos_token_id=None))
    with pytest.raises(InteropError, match="activation_function='relu'"):
        from_hf_gpt2(hf)


def test_cli_import_and_export_round_trip(hf_model, tmp_path, ids, capsys):
    hf_model.save_pretrained(tmp_path / "hf")
    # GPT-2's slow tokenizer files, which tinylm does not read (without any the import is refused: the test below)
    (tmp_path / "hf" / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}))
    ckpt = main(["import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "imported.pt")])
    state = load_checkpoint(ckpt)
    assert state["step"] == 0 and state["tokenizer"] is None  # a 100-token vocabulary cannot use GPT-2's tokenizer
    model, tokenizer, _ = load_model(ckpt)
    torch.testing.assert_close(tinylm_logits(model, ids), hf_logits(hf_model, ids), atol=TOL, rtol=0)

    folder = main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "exported")])
    exported = GPT2LMHeadModel.from_pretrained(folder).eval()
    torch.testing.assert_close(hf_logits(exported, ids), hf_logits(hf_model, ids), atol=TOL, rtol=0)
    out = capsys.readouterr().out
    assert "wrote" in out and "not GPT-2's" in out


def test_cli_import_of_a_gpt2_vocabulary_records_the_gpt2_tokenizer_and_says_it_assumed_it(tmp_path, capsys):
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=8, n_positions=16, vocab_size=50257))
    hf.save_pretrained(tmp_path / "hf")
    ckpt = main(["import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path)])  # a folder: written as last.pt
    assert ckpt == tmp_path / "last.pt"
    _, tokenizer, state = load_model(tmp_path)
    assert state["tokenizer"] == {"kind": "bpe", "encoding": "gpt2"} and tokenizer.vocab_size == 50257
    assert (f"tokenizer: GPT-2's BPE, assumed: {tmp_path / 'hf'} holds no tokenizer files, and the model's 50,257 "
            "rows hold GPT-2's 50,257 tokens\n") in capsys.readouterr().out


def test_cli_import_of_a_folder_without_tokenizer_files_and_another_vocabulary_is_refused(hf_model, tmp_path):
    """It wrote a checkpoint without a tokenizer, whose ids nothing in tinylm can turn into text; it now says so, in
    one line with what to do, and writes nothing."""
    hf_model.save_pretrained(tmp_path / "hf")
    with pytest.raises(SystemExit) as info:
        cli(["import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "imported.pt")])
    assert str(info.value.code) == (
        f"error: {tmp_path / 'hf'} holds no tokenizer files, and its vocabulary of 100 tokens is not GPT-2's 50,257, "
        "so no tokenizer tinylm has fits it; give the one it was trained with: --tokenizer-model FILE (a SentencePiece "
        "tokenizer.model)")
    assert not (tmp_path / "imported.pt").exists()


def test_cli_hf_export_lists_every_file_it_wrote(make_model, tmp_path, capsys):
    """generation_config.json, which transformers writes, was missing from the line; a file that was in the folder
    before is not listed."""
    tokenizer = CharTokenizer.from_text("hello world")
    save_checkpoint(tmp_path / "model.pt", model_checkpoint(make_model(vocab_size=tokenizer.vocab_size), tokenizer))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "notes.txt").write_text("mine")
    folder = main(["export", "--ckpt", str(tmp_path / "model.pt"), "--out", str(tmp_path / "hf")])
    written = sorted(path.name for path in folder.iterdir() if path.name != "notes.txt")
    assert "generation_config.json" in written and "tokenizer.json" in written
    assert f"wrote {folder} ({', '.join(written)}): GPT2LMHeadModel" in capsys.readouterr().out


def test_cached_greedy_generation_matches_transformers_generate():
    """Two independent KV-cache implementations, one answer: ragged prompts, left-padded in both."""
    from tinylm.generate.decode import generate_batch

    torch.manual_seed(0)
    reference = GPT2LMHeadModel(GPT2Config(**HF_SHAPE, bos_token_id=None, eos_token_id=None)).double().eval()
    with torch.no_grad():
        for name, param in reference.named_parameters():  # large weights: greedy choices that depend on the context
            param.copy_(1 + 0.1 * torch.randn_like(param) if ".ln_" in name and "weight" in name
                        else 0.3 * torch.randn_like(param))
    model = from_hf_gpt2(reference).double()
    prompts = [[5, 17, 3], [42, 8, 99, 1, 63, 7, 20], [11]]
    ours = generate_batch(model, prompts, 12, temperature=0)
    assert len({tuple(row) for row in ours}) == 3  # the context matters: a wrong mask or position would show

    longest = max(map(len, prompts))
    input_ids = torch.tensor([[0] * (longest - len(p)) + p for p in prompts])
    attention_mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        theirs = reference.generate(input_ids, attention_mask=attention_mask, max_new_tokens=12, do_sample=False,
                                    pad_token_id=0, use_cache=True)
    assert ours == theirs[:, longest:].tolist()


def test_an_imported_gpt2_scores_as_transformers_own_losses():
    """Offline: a random transformers GPT-2 with GPT-2's vocabulary goes through from_hf_gpt2, and its validation
    loss and HellaSwag counts, as tinylm scores them, equal those computed from transformers' logits."""
    import numpy as np
    import torch.nn.functional as F

    from tinylm.eval.benchmarks import read_hellaswag
    from tinylm.eval.hellaswag import locate_val
    from tinylm.eval.loss import evaluate_loss_sum
    from tinylm.eval.scoring import evaluate_hellaswag
    from tinylm.tokenizers.gpt2 import BPETokenizer

    torch.manual_seed(0)
    block = 64
    reference = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=block, vocab_size=50257)).eval()
    with torch.no_grad():  # larger weights than the initialisation's: endings whose losses clearly differ
        for name, param in reference.named_parameters():
            if ".ln_" not in name:
                param.copy_(0.3 * torch.randn_like(param))
    tokenizer = BPETokenizer("gpt2")
    text = "The Independent Jane. For all the love, romance and scandal in Jane Austen's books, " * 12
    val = np.array([tokenizer.eot_token, *tokenizer.encode(text)][: 3 * block + 1], dtype=np.uint16)
    examples = read_hellaswag(locate_val().path, limit=10)

    imported = from_hf_gpt2(reference)
    nats, count = evaluate_loss_sum(imported, val, block, 2, "cpu", None, tokenizer)
    scores = {"val_loss": nats / count, "val_tokens": count, **evaluate_hellaswag(imported, tokenizer, examples)}

    windows = torch.from_numpy(val.astype(np.int64)).unfold(0, block + 1, block)  # 3 non-overlapping windows
    logits = hf_logits(reference, windows[:, :-1])
    expected_loss = F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()).item()
    assert scores["val_tokens"] == 3 * block
    assert scores["val_loss"] == pytest.approx(expected_loss, abs=1e-5)

    correct = correct_norm = 0
    for example in examples:  # the end-of-text token, context + " " + ending (as CORE), the ending's losses only
        ctx = [tokenizer.eot_token, *tokenizer.encode(example.query)]
        summed, means = [], []
        for ending in example.choices:
            ids = torch.tensor(ctx + tokenizer.encode(" " + ending))
            assert len(ids) <= block
            losses = F.cross_entropy(hf_logits(reference, ids[None, :-1])[0], ids[1:], reduction="none")
            ending_losses = losses[len(ctx) - 1:]
            summed.append(ending_losses.sum().item())
            means.append(ending_losses.mean().item())
        correct += min(range(4), key=summed.__getitem__) == example.gold
        correct_norm += min(range(4), key=means.__getitem__) == example.gold
    assert (scores["examples"], scores["correct"], scores["correct_norm"]) == (10, correct, correct_norm)


@pytest.mark.parametrize("kind", ["char", "trained_bpe", "trained_bpe_llama"])
def test_an_exported_folder_imports_back_whole_and_samples_the_same_text(make_model, tmp_path, kind):
    """export --format hf, then import --hf of that folder: the tokenizer comes back with the weights, and greedy
    sampling writes the same text."""
    from tinylm.generate.decode import generate_batch
    from tinylm.tokenizers.hf_bpe import TrainedBPETokenizer

    text = "the cat sat on the mat; 12 dogs ran. " * 30
    tokenizer = CharTokenizer.from_text(text) if kind == "char" else \
        TrainedBPETokenizer.train([text], 300, show_progress=False)
    llama = dict(norm="rmsnorm", position="rope", mlp="swiglu", bias=False) if kind.endswith("llama") else {}
    model = make_model(seed=1, vocab_size=tokenizer.vocab_size, **llama)
    save_checkpoint(tmp_path / "run.pt", model_checkpoint(model, tokenizer, step=0))
    folder = main(["export", "--ckpt", str(tmp_path / "run.pt"), "--out", str(tmp_path / "hf")])
    back, back_tokenizer, _ = load_model(main(["import", "--hf", str(folder), "--out", str(tmp_path / "back.pt")]))
    prompt = "the cat "

    def greedy(model, tokenizer):
        return tokenizer.decode(generate_batch(model, [tokenizer.encode(prompt)], 40, temperature=0)[0])

    assert back_tokenizer.encode(prompt) == tokenizer.encode(prompt)
    assert greedy(back, back_tokenizer) == greedy(model, tokenizer)
