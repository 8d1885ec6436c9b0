"""HellaSwag: the scoring on cases whose answer is known, the one scorer it shares with CORE, the data files, the CLI,
and the distributed split."""

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.helpers import REPO, logits_favouring, tiny_bpe_gpt
from tests.preloaded import run_module
from tinylm.cli.eval import cli, main
from tinylm.config import GPTConfig
from tinylm.download import DownloadError
from tinylm.eval.benchmarks import (
    Benchmark,
    MultipleChoice,
    core_benchmark,
    core_specs,
    hellaswag_item,
    read_hellaswag,
)
from tinylm.eval.hellaswag import SUBSTITUTE_VAL_PATH, locate_val
from tinylm.eval.scoring import evaluate_benchmark, evaluate_hellaswag, render, score_rows
from tinylm.model.gpt import GPT
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.gpt2 import BPETokenizer, TrimmedBPETokenizer
from tinylm.train.checkpoint import model_checkpoint, save_checkpoint

# The official file's first record, with all its fields (the mirror's substitute lacks some).
OFFICIAL_RECORD = {"ind": 24, "activity_label": "Roof shingle removal",
                   "ctx_a": "A man is sitting on a roof.", "ctx_b": "he", "ctx": "A man is sitting on a roof. he",
                   "split": "val", "split_type": "indomain", "label": 3,
                   "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                               "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
                   "source_id": "activitynet~v_-JhWjGDPHMY"}


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer("gpt2")


@pytest.fixture(scope="module")
def val_examples():
    return read_hellaswag(locate_val().path, limit=7)


def ending_losses(model, tokenizer, item: MultipleChoice) -> tuple[list[float], list[int]]:
    """(summed loss, tokens) of each ending, as the benchmark scorer renders and scores them."""
    rendered = render(Benchmark("hellaswag", [item]), 0, tokenizer, model.config.block_size)
    scores = score_rows(model, tokenizer, rendered.rows, "cpu")
    return [loss for loss, _, _ in scores], [count for _, count, _ in scores]


def test_the_ending_the_model_finds_likely_wins(bpe, fixed_logits_model):
    model = fixed_logits_model(logits_favouring(bpe, {" mat": 12.0}), block_size=64)
    endings = ("car.", "mat", "sky of blue", "dog")
    right = evaluate_hellaswag(model, bpe, [MultipleChoice("The cat sat on the", endings, 1)])
    assert right == {"examples": 1, "correct": 1, "correct_norm": 1, "correct_norm_char": 1,
                     "acc": 1.0, "acc_norm": 1.0, "acc_norm_char": 1.0, "left_out": 0, "indices": [0],
                     "correct_items": [True]}
    wrong = evaluate_hellaswag(model, bpe, [MultipleChoice("The cat sat on the", endings, 0)])
    assert (wrong["correct"], wrong["correct_norm"], wrong["correct_norm_char"]) == (0, 0, 0)


def test_summed_and_mean_loss_pick_different_endings(bpe, fixed_logits_model):
    """One likely-ish token (' dog') against three very likely ones (' the the the'): the sum prefers the
    short ending, the mean per token the long one, so acc and acc_norm disagree exactly here."""
    model = fixed_logits_model(logits_favouring(bpe, {" the": 10.0, " dog": 8.0}), block_size=64)
    endings = ("dog", "the the the", "zebra crossing", "quantum chromodynamics")
    summed, scored = ending_losses(model, bpe, MultipleChoice("I saw a", endings, 0))
    assert scored == [len(bpe.encode(" " + e)) for e in endings] and scored[:2] == [1, 3]
    # The losses by hand. log Z sums 50,257 float32 terms, so the two ways of computing it may differ by ~1e-5 nats
    # per token (seen on AVX-512); a wrong token or position would be off by whole nats.
    log_z = torch.logsumexp(model.logits.double(), 0).item()
    assert summed[0] == pytest.approx(log_z - 8.0, abs=1e-4)  # the loss of ' dog'
    assert summed[1] == pytest.approx(3 * (log_z - 10.0), abs=3e-4)

    short_right = evaluate_hellaswag(model, bpe, [MultipleChoice("I saw a", endings, 0)])
    long_right = evaluate_hellaswag(model, bpe, [MultipleChoice("I saw a", endings, 1)])
    assert (short_right["correct"], short_right["correct_norm"]) == (1, 0)
    assert (long_right["correct"], long_right["correct_norm"]) == (0, 1)


def test_per_token_and_per_character_normalisation_pick_different_endings(bpe, fixed_logits_model):
    """' everything' is one token of 10 characters; ' the the the' three likelier tokens of 11 characters. Per
    token the three win, per character the one long token does: the two conventions disagree exactly here, and
    each pick is checked against the losses computed by hand."""
    model = fixed_logits_model(logits_favouring(bpe, {" the": 10.0, " everything": 9.0}), block_size=64)
    endings = ("the the the", "everything", "zebra crossing", "quantum chromodynamics")
    log_z = torch.logsumexp(model.logits.double(), 0).item()
    summed, scored = ending_losses(model, bpe, MultipleChoice("I saw", endings, 1))
    assert scored[:2] == [3, 1]
    assert summed[1] == pytest.approx(log_z - 9.0, abs=1e-4)
    by_hand = {"token": [3 * (log_z - 10.0) / 3, (log_z - 9.0) / 1],  # / tokens of ' the the the', ' everything'
               "char": [3 * (log_z - 10.0) / 11, (log_z - 9.0) / 10]}  # / characters of 'the the the', 'everything'
    assert by_hand["token"][0] < by_hand["token"][1] and by_hand["char"][1] < by_hand["char"][0]
    for label, expected in ((0, (0, 1, 0)), (1, (1, 0, 1))):
        result = evaluate_hellaswag(model, bpe, [MultipleChoice("I saw", endings, label)])
        assert (result["correct"], result["correct_norm"], result["correct_norm_char"]) == expected, label
        assert result["acc_norm_char"] == result["correct_norm_char"]


def test_rows_are_the_end_of_text_token_and_context_then_the_ending(bpe):
    item = MultipleChoice("A man is sitting on a roof. he", ("is", "starts pulling up roofing on a roof.", "x", "y"), 1)
    rows = render(Benchmark("hellaswag", [item]), 0, bpe, 64).rows
    ctx = bpe.encode(item.query)
    assert [row for row in rows] == [([bpe.eot_token, *ctx], bpe.encode(" " + ending)) for ending in item.choices]


def test_eval_hellaswag_and_cores_hellaswag_give_the_same_verdicts(bpe, tmp_path):
    """The command's per-item verdicts are those of CORE's zero-shot HellaSwag through evaluate_benchmark, on the
    same items of the same file: one scorer, one way of tokenising."""
    model = tiny_bpe_gpt(seed=0, block_size=256)  # every one of the first items fits: none is cut or left out
    save_checkpoint(tmp_path / "run.pt", model_checkpoint(model, {"kind": "bpe", "encoding": "gpt2"}, step=0))
    command = main(["hellaswag", "--ckpt", str(tmp_path / "run.pt"), "--limit", "12", "--device", "cpu", "--json"])
    spec = next(spec for spec in core_specs() if spec.name == "hellaswag_zeroshot")
    core = evaluate_benchmark(model, bpe, core_benchmark(spec), limit=12)
    assert command["indices"] == core.indices == list(range(12)) and command["left_out"] == core.left_out == 0
    assert command["correct_items"] == core.correct
    for key, count in (("acc", "correct"), ("acc_norm", "correct_norm"), ("acc_norm_char", "correct_norm_char")):
        assert command[count] == sum(detail[key] for detail in core.details), key
    assert 0 < command["correct_norm"] < 12  # a random model: some right, some wrong, so the lists are not trivial


def test_contexts_longer_than_the_model_are_cropped_and_overlong_endings_left_out(bpe, val_examples):
    """As CORE scores with `truncate`: a row longer than the context keeps its last tokens; an item with an ending
    that fills the context alone is left out, and counted."""
    short = tiny_bpe_gpt(block_size=16)
    rows = {i: [1 + len(bpe.encode(e.query)) + len(bpe.encode(" " + c)) for c in e.choices]
            for i, e in enumerate(val_examples)}
    assert all(max(lengths) > 17 for lengths in rows.values())  # every item is cropped
    assert [i for i, e in enumerate(val_examples) if max(len(bpe.encode(" " + c)) for c in e.choices) >= 16] == [2]
    result = evaluate_hellaswag(short, bpe, val_examples)
    assert (result["examples"], result["left_out"]) == (6, 1) and result["indices"] == [0, 1, 3, 4, 5, 6]


def test_char_models_are_refused(val_examples, make_model):
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(ValueError, match=r"this checkpoint's tokenizer is characters, one token each, 4 tokens"):
        evaluate_hellaswag(make_model(vocab_size=tok.vocab_size), tok, val_examples)


def test_trimmed_vocabulary_is_scored_through_its_own_ids(bpe, val_examples):
    kept = sorted({t for e in val_examples[:3] for t in bpe.encode(e.query)})  # endings' tokens mostly become <unk>
    trimmed = TrimmedBPETokenizer(kept)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=trimmed.vocab_size, block_size=64, n_layer=1, n_head=1, n_embd=8))
    summed, scored = ending_losses(model, trimmed, val_examples[0])
    assert scored == [len(bpe.encode(" " + e)) for e in val_examples[0].choices]  # one id per GPT-2 token
    unks = [trimmed.encode(" " + e).count(trimmed.unk_id) for e in val_examples[0].choices]
    assert min(unks) > 0
    for row_loss, row_unks in zip(summed, unks):  # each <unk> target pays the spread over the dropped tokens
        assert row_loss > row_unks * trimmed.unk_penalty
    assert evaluate_hellaswag(model, trimmed, val_examples)["examples"] == len(val_examples)


def test_mirror_substitute_parses_and_says_it_is_a_substitute(val_examples):
    val = locate_val()
    assert not val.official and "substitute, not the official file" in val.description
    assert val.path == Path(os.environ["TINYLM_DATA_MIRROR"]) / SUBSTITUTE_VAL_PATH
    first = val_examples[0]
    assert first == hellaswag_item(OFFICIAL_RECORD)  # the substitute's first line holds the official first example
    assert all(len(e.choices) == 4 and 0 <= e.gold < 4 and e.query for e in val_examples)
    assert len(read_hellaswag(val.path, limit=3)) == 3


def test_official_records_parse_and_unlabelled_ones_are_refused():
    record = {k: v for k, v in OFFICIAL_RECORD.items() if k != "ctx"}
    assert hellaswag_item(record).query == OFFICIAL_RECORD["ctx"]
    with pytest.raises(ValueError, match="no label"):
        hellaswag_item({**OFFICIAL_RECORD, "label": ""})
    with pytest.raises(ValueError, match="4 strings"):
        hellaswag_item({**OFFICIAL_RECORD, "endings": ["a", "b"]})


def test_damaged_or_missing_mirror_files_are_refused(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "hellaswag").mkdir(parents=True)
    monkeypatch.setenv("TINYLM_DATA_MIRROR", str(mirror))
    with pytest.raises(DownloadError, match="neither"):
        locate_val(tmp_path / "data")
    (mirror / SUBSTITUTE_VAL_PATH).write_text(json.dumps(OFFICIAL_RECORD) + "\n")
    with pytest.raises(DownloadError, match="sha256"):
        locate_val(tmp_path / "data")
    official = mirror / "hellaswag" / "hellaswag_val.jsonl"
    official.write_text(json.dumps(OFFICIAL_RECORD) + "\n")  # preferred over the substitute, but not the real bytes
    with pytest.raises(DownloadError, match="sha256"):
        locate_val(tmp_path / "data")
    assert not list((tmp_path / "data").iterdir())  # the bad copy was discarded


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("hellaswag") / "tiny.pt"
    model = tiny_bpe_gpt(seed=0, block_size=32)
    save_checkpoint(path, model_checkpoint(model, {"kind": "bpe", "encoding": "gpt2"}, step=0))
    return path


def test_cli_limit(tiny_ckpt, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TINYLM_DATA_DIR": str(tmp_path)}
    result = run_module("tinylm.eval", ["hellaswag", "--ckpt", tiny_ckpt, "--limit", "5", "--device", "cpu"], cwd=REPO,
                        env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "substitute, not the official file" in result.stdout
    assert "examples:   5 (the first 5)" in result.stdout
    assert "acc:" in result.stdout and "acc_norm:" in result.stdout and "acc_norm_char:" in result.stdout
    assert "[95% interval]" in result.stdout


def test_cli_json_matches_the_function_on_a_busy_machine_too(tiny_ckpt, bpe, capsys, monkeypatch):
    """On a busy machine the command takes fewer threads, and its output is the same one JSON object, with nothing
    on stderr (the figures do not depend on the threads: tests/test_cli_errors.py)."""
    import tinylm.runtime

    monkeypatch.setattr(tinylm.runtime, "spare_cores", lambda: 1)
    monkeypatch.setattr(tinylm.runtime, "_threads_before_configuring", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    try:
        result = main(["hellaswag", "--ckpt", str(tiny_ckpt), "--limit", "4", "--device", "cpu", "--json"])
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    assert err == ""
    printed = json.loads(out)
    assert printed["official"] is False and printed["examples"] == 4
    model = tiny_bpe_gpt(seed=0, block_size=32)
    assert result == evaluate_hellaswag(model, bpe, read_hellaswag(locate_val().path, limit=4))
    assert {k: printed[k] for k in result} == result


def test_cli_refuses_a_char_checkpoint_in_one_line(tmp_path, make_model):
    tok = CharTokenizer.from_text("abc ")
    model = make_model(vocab_size=tok.vocab_size)
    save_checkpoint(tmp_path / "char.pt", model_checkpoint(model, tok, step=0))
    with pytest.raises(SystemExit) as exit_info:
        cli(["hellaswag", "--ckpt", str(tmp_path / "char.pt"), "--limit", "2", "--device", "cpu"])
    message = str(exit_info.value)
    assert message.startswith("error: HellaSwag scores models with GPT-2's tokens") and "\n" not in message
    assert "tokenizer is characters, one token each, 4 tokens" in message
    assert "python -m tinylm.eval loss --text FILE" in message


def _distributed_worker(rank, world_size, init_file, examples, out_dir):
    """One process of a gloo group: score `examples` with the same tiny model as every other rank."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        result = evaluate_hellaswag(tiny_bpe_gpt(seed=0), BPETokenizer("gpt2"), examples)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_counts_equal_the_single_process_ones(bpe, val_examples, tmp_path):
    single = evaluate_hellaswag(tiny_bpe_gpt(seed=0), bpe, val_examples)  # 7 examples: the ranks get 4 and 3
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), val_examples, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == single
