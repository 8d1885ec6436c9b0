"""A checkpoint written before the package was laid out by stage (tinylm at commit 37d14ad, a smoke run of
shakespeare-char stopped after 10 steps) still loads, gives the same logits, and resumes."""

import json
import shutil
from pathlib import Path

import torch

from tinylm.generate.decode import generate
from tinylm.train.checkpoint import load_model
from tinylm.train.options import RunOptions
from tinylm.train.recipes import resolve_recipe
from tinylm.train.run import train

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_CHECKPOINT = FIXTURES / "shakespeare-char-smoke-37d14ad.pt"
EXPECTED = json.loads((FIXTURES / "shakespeare-char-smoke-37d14ad.json").read_text())


def test_an_old_checkpoint_loads_and_gives_the_logits_it_gave_then():
    model, tokenizer, state = load_model(OLD_CHECKPOINT)
    ids = torch.tensor([tokenizer.encode(EXPECTED["prompt"])])
    with torch.no_grad():
        logits, _ = model(ids)
    assert torch.allclose(logits[0, -1], torch.tensor(EXPECTED["last_logits"]), atol=1e-5)
    continuation = generate(model, ids, 20, temperature=0)[0, ids.shape[1]:].tolist()
    assert tokenizer.decode(continuation) == EXPECTED["greedy_20"]
    assert state["step"] == EXPECTED["step"]


def test_an_old_training_checkpoint_resumes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(OLD_CHECKPOINT, run / "last.pt")
    recipe = resolve_recipe("shakespeare-char", RunOptions(profile="smoke", out=run, resume=True,
                                                           max_steps=EXPECTED["step"] + 2))
    finished = train(recipe, say=lambda line: None, on_record=lambda record: None)
    assert finished.trainer.step == EXPECTED["step"] + 2
    assert finished.final["val_loss"] < 10
