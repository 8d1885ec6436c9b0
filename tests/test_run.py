"""train(recipe): the library's one training run. A recipe resolves once; --overwrite never loses the old run to a
new one that fails before its first checkpoint."""

import hashlib
import json
from pathlib import Path

import pytest

from tinylm.config import ConfigError
from tinylm.errors import InputError
from tinylm.train.options import RunOptions
from tinylm.train.recipes import TrainOptions, resolve_recipe
from tinylm.train.run import train
from tinylm.train.run_folder import STAGED
from tinylm.train.trainer import TrainingDiverged


def quiet(*args):
    pass


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def old_run(tmp_path):
    out = tmp_path / "run"
    train(resolve_recipe("shakespeare-char", RunOptions(profile="smoke", out=out, max_steps=6)), say=quiet,
          on_record=quiet)
    return out, {name: digest(out / name) for name in ("best.pt", "last.pt", "metrics.jsonl")}


def test_an_overwrite_that_diverges_at_once_keeps_the_old_run(old_run):
    out, before = old_run
    recipe = resolve_recipe("shakespeare-char", RunOptions(profile="smoke", out=out, overwrite=True,
                                                           learning_rate=1e6))
    with pytest.raises(TrainingDiverged, match="no checkpoint was saved yet"):
        train(recipe, say=quiet, on_record=quiet)
    assert {name: digest(out / name) for name in before} == before
    assert not (out / STAGED).exists()


def test_an_overwrite_that_trains_replaces_the_old_run(old_run):
    out, before = old_run
    run = RunOptions(profile="smoke", out=out, overwrite=True, max_steps=8, seed=7)
    finished = train(resolve_recipe("shakespeare-char", run), say=quiet, on_record=quiet)
    assert finished.trainer.step == 8
    assert digest(out / "last.pt") != before["last.pt"] and not (out / STAGED).exists()


def test_an_overwrite_stopped_by_ctrl_c_before_its_first_checkpoint_keeps_the_old_run(old_run):
    """A mistaken --overwrite, cancelled in its first steps: the finished run is still whole, and the new run's
    interrupted steps are not saved over it."""
    out, before = old_run

    def ctrl_c(record):
        if record.get("event") == "train":
            raise KeyboardInterrupt

    said, records = [], []
    run = RunOptions(profile="smoke", out=out, overwrite=True, max_steps=30, seed=7)
    with pytest.raises(KeyboardInterrupt):
        train(resolve_recipe("shakespeare-char", run), say=said.append,
              on_record=lambda record: (records.append(record), ctrl_c(record)))
    assert {name: digest(out / name) for name in before} == before and not (out / STAGED).exists()
    assert records[-1]["event"] == "interrupted" and records[-1]["checkpoint"] is None
    assert any("is as it was" in line for line in said), said


def test_a_recipe_holds_the_options_and_scales_the_floor_with_the_learning_rate(tmp_path):
    recipe = resolve_recipe("tinystories", RunOptions(profile="cpu", learning_rate=8e-3, max_steps=123),
                            TrainOptions(arch="llama-moe", balancing="aux_loss"))
    base = resolve_recipe("tinystories", RunOptions(profile="cpu"))
    assert recipe.run.out.name == "tinystories-llama-moe-aux_loss-cpu" and base.run.out.name == "tinystories-cpu"
    assert recipe.train.max_steps == 123 and recipe.train.learning_rate == 8e-3
    assert recipe.train.min_lr == pytest.approx(base.train.min_lr * 2)  # 8e-3 is twice the recipe's 4e-3
    config = recipe.model_config(type("Tokenizer", (), {"vocab_size": 6872})())
    assert (config.vocab_size, config.n_experts, config.balancing) == (6912, 8, "aux_loss")


@pytest.mark.parametrize("options, changes, message", [
    (dict(arch="gpt2", balancing="aux_loss"), None, "applies to a mixture of experts"),
    ({}, {"learning_rat": 1e-3}, "no such field"),
    ({}, {"max_steps": 3}, "an option of its own, --max-steps"),  # a RunOptions field is set in RunOptions only
    ({}, {"warmup_steps": "many"}, "warmup_steps takes a whole number"),
])
def test_a_bad_recipe_fails_before_anything_runs(options, changes, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        resolve_recipe("shakespeare-char", RunOptions(profile="smoke", set=changes), TrainOptions(**options))


def test_resume_and_overwrite_together_are_refused_where_the_options_are_made():
    with pytest.raises(InputError, match="choose one"):
        RunOptions(resume=True, overwrite=True)


@pytest.mark.parametrize("recipe, optimizer", [("default", "| optimizer AdamW |"),
                                               ("speedrun", "| optimizer Muon (Newton–Schulz in ")])
def test_the_startup_line_names_the_optimizer_and_for_muon_its_newton_schulz_dtype(tmp_path, recipe, optimizer):
    """A learner who overrides --optimizer on the speedrun recipe, or trains it on another CPU, sees what ran."""
    said = []
    run = RunOptions(profile="smoke", out=tmp_path / "run", max_steps=6)
    finished = train(resolve_recipe("shakespeare-char", run, TrainOptions(recipe=recipe)), say=said.append,
                     on_record=quiet)
    [header] = [line for line in said if line.startswith("shakespeare-char | profile smoke")]
    assert optimizer in header
    muon = getattr(finished.trainer.optimizer, "muon", None)
    if muon is not None:
        assert f"Newton–Schulz in {str(muon.ns_dtype).removeprefix('torch.')}) + AdamW |" in header


def test_resume_refuses_a_changed_seed_and_applies_a_new_step_limit_and_rate(old_run):
    """The one resume rule: a fixed option given with another value than the saved run's is one error naming both;
    the step limit and the learning rate may change; options not given keep the saved run's (its profile too)."""
    out, before = old_run
    saved = json.loads((out / "settings.json").read_text())
    assert saved["command"] == "train" and saved["profile"] == "smoke" and saved["train"]["max_steps"] == 6
    resumed = RunOptions(out=out, resume=True)
    for run, options, message in ((RunOptions(out=out, resume=True, seed=7), {}, "--seed 7: .* with --seed 1337"),
                                  (resumed, {"arch": "llama"}, "--arch llama: .* with --arch gpt2")):
        with pytest.raises(InputError, match=message):
            train(resolve_recipe("shakespeare-char", run, TrainOptions(**options)), say=quiet, on_record=quiet)
        assert {name: digest(out / name) for name in before} == before
    run = RunOptions(out=out, resume=True, max_steps=8, learning_rate=1e-3, seed=1337)
    finished = train(resolve_recipe("shakespeare-char", run), say=quiet, on_record=quiet)
    assert finished.trainer.step == 8 and finished.trainer.cfg.learning_rate == 1e-3
    assert finished.trainer.cfg.min_lr == pytest.approx(1e-4)  # the floor scaled with it, from the recipe's 3e-4
    assert json.loads((out / "settings.json").read_text())["train"]["max_steps"] == 8


def test_a_step_limit_shorter_than_the_warmup_shortens_the_warmup_alike():
    """`train shakespeare-char --profile cpu --max-steps 10` is a run, not a refusal: the warmup keeps its share."""
    full = resolve_recipe("shakespeare-char", RunOptions(profile="cpu")).train
    short = resolve_recipe("shakespeare-char", RunOptions(profile="cpu", max_steps=10)).train
    assert short.max_steps == 10 and short.warmup_steps < 10
    assert short.warmup_steps == full.warmup_steps * 10 // full.max_steps
    kept = resolve_recipe("shakespeare-char", RunOptions(profile="cpu", max_steps=10, set={"warmup_steps": "5"}))
    assert kept.train.warmup_steps == 5  # a warmup given with the limit is the one asked for


def test_set_none_is_a_value():
    """`--set grad_clip=none` turns clipping off; it is not taken for "not given"."""
    assert resolve_recipe("shakespeare-char", RunOptions(profile="cpu")).train.grad_clip == 1.0
    unclipped = resolve_recipe("shakespeare-char", RunOptions(profile="cpu", set={"grad_clip": "none"}))
    assert unclipped.train.grad_clip is None


def test_set_changes_the_network_and_a_resume_that_changes_it_again_is_refused(tmp_path):
    run = RunOptions(profile="smoke", out=tmp_path / "run", max_steps=4, set={"n_layer": "1"})
    finished = train(resolve_recipe("shakespeare-char", run), say=quiet, on_record=quiet)
    assert finished.trainer.model.config.n_layer == 1
    assert json.loads((tmp_path / "run" / "settings.json").read_text())["options"]["n_layer"] == 1
    again = RunOptions(out=tmp_path / "run", resume=True, max_steps=6, set={"n_layer": "2"})
    with pytest.raises(InputError, match=r"^--set n_layer=2: the run in .* was started with --set n_layer=1; "):
        train(resolve_recipe("shakespeare-char", again), say=quiet, on_record=quiet)
    same = RunOptions(out=tmp_path / "run", resume=True, max_steps=6, set={"n_layer": "1"})
    assert train(resolve_recipe("shakespeare-char", same), say=quiet, on_record=quiet).trainer.model.config.n_layer == 1


def test_the_settings_lines_print_paths_relative_never_one_machines_absolute_path():
    from tinylm.train.options import describe_settings

    checkpoint = Path.cwd() / "runs" / "base" / "best.pt"
    settings = {"command": "sft", "profile": "cpu", "device": "cpu", "base": {"path": str(checkpoint), "digest": "ab"}}
    lines = describe_settings(settings, Path("runs/x"))
    assert f"path={Path('runs/base/best.pt')}" in lines and str(Path.cwd()) not in lines
