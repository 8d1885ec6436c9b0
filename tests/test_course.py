"""A notebook's set-up (as a command's), and find_or_train: a notebook that needs another notebook's model finds its
run, or trains a stand-in and says so."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tinylm
from tinylm.course import notebooks as course
from tinylm.course import repository
from tinylm.train import prerequisite


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def fake_run(folder):
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"")
    return folder


def refuse_training(job, **options):
    raise AssertionError(f"trained although a run was there: {job.recipe}")


@pytest.mark.parametrize("name", ["notebook-03b-cpu", "shakespeare-char-cpu", "shakespeare-char-quick-cpu"])
def test_an_existing_run_is_used_as_it_is(runs, monkeypatch, name):
    folder = fake_run(runs / name)
    monkeypatch.setattr(prerequisite, "run_job", refuse_training)
    said = []
    assert course.find_or_train("shakespeare-char", "cpu", say=said.append) == folder
    assert said == [f"shakespeare-char: using the model in {folder}"]


def story_sft(folder, verifier="runs/stories-base-cpu/best.pt"):
    """A finished story SFT run as far as `story_sft_run` reads one: its report and its settings' verifier."""
    folder.mkdir(parents=True)
    (folder / "sft_eval.json").write_text("{}")
    (folder / "settings.json").write_text(json.dumps({"task": {"verifier": verifier} if verifier else {}}))
    return folder


def test_notebooks_10_and_11_start_from_notebook_9s_run_and_fine_tune_only_where_it_is_missing(runs, monkeypatch):
    fine_tuned = []
    monkeypatch.setattr(course, "sft", lambda run, options, **_: fine_tuned.append((run.out, run.seed, options.task)))
    first, second = story_sft(runs / "notebook-09-cpu"), story_sft(runs / "notebook-09-cpu-seed43")
    assert course.story_sft_run("cpu", fallback=runs / "x") == first
    assert course.story_sft_run("cpu", 43, fallback=runs / "y") == second and not fine_tuned
    story_sft(runs / "notebook-09-smoke", verifier=None)  # an SFT run of another task is not the story model
    said = []
    assert course.story_sft_run("smoke", fallback=runs / "sft-stories", say=said.append) == runs / "sft-stories"
    assert fine_tuned == [(runs / "sft-stories", 42, "stories")] and "fine-tuning it now" in said[0]
    story_sft(runs / "sft-stories")  # what the fine-tuning wrote: the next call takes it
    assert course.story_sft_run("smoke", fallback=runs / "sft-stories", say=said.append) == runs / "sft-stories"
    assert len(fine_tuned) == 1


def test_the_notebooks_run_comes_before_the_command_lines_and_the_stand_in(runs, monkeypatch):
    expected = fake_run(runs / "notebook-05-gpu")
    fake_run(runs / "tinystories-gpu")
    fake_run(runs / "tinystories-quick-cpu")
    monkeypatch.setattr(prerequisite, "run_job", refuse_training)
    assert course.find_or_train("tinystories", "gpu", say=lambda _: None) == expected


def test_a_run_of_another_profile_or_without_best_pt_does_not_count(runs, monkeypatch):
    fake_run(runs / "notebook-03b-gpu")
    (runs / "notebook-03b-cpu").mkdir()
    (runs / "notebook-03b-cpu" / "last.pt").write_bytes(b"")  # a run that never finished an evaluation
    calls = []

    def record(job, say, **options):
        calls.append(job.recipe)
        (job.recipe.run.out / "best.pt").write_bytes(b"")
        say("training output")
        job.on_record({"event": "final", "step": 7, "val_loss": 1.9, "best_val_loss": 1.8, "elapsed": 1.0})

    monkeypatch.setattr(prerequisite, "run_job", record)
    said = []
    folder = course.find_or_train("shakespeare-char", "cpu", say=said.append)
    assert folder == runs / "shakespeare-char-quick-cpu"
    (recipe,) = calls
    run = recipe.run
    assert (recipe.track.name, run.profile, run.out, run.resume) == ("shakespeare-char", "cpu", folder, False)
    assert recipe.train.max_steps == course.QUICK_STEPS["shakespeare-char"]
    assert said == [f"shakespeare-char: no trained model in {runs} (notebook-03b-cpu or shakespeare-char-cpu; notebook "
                    "3b makes one); shakespeare-char stand-in (the cpu recipe; its log: train.log): "
                    f"{runs}/shakespeare-char-quick-cpu, none yet: trains first (2,000 steps; its progress shows the "
                    "time). Its text will be rougher than the full run's."]
    log = (folder / "train.log").read_text().splitlines()
    assert log[0] == "training output" and "1.9000" in log[1], "training prints to the log, not the notebook"
    # The next call finds the stand-in instead of training again.
    monkeypatch.setattr(prerequisite, "run_job", refuse_training)
    assert course.find_or_train("shakespeare-char", "cpu", say=said.append) == folder


def test_on_a_gpu_the_stand_in_is_the_cpu_recipe(runs, monkeypatch):
    calls = []

    def record(job, **options):
        calls.append(job.recipe)
        (job.recipe.run.out / "best.pt").write_bytes(b"")

    monkeypatch.setattr(prerequisite, "run_job", record)
    assert course.find_or_train("tinystories", "gpu", say=lambda _: None) == runs / "tinystories-quick-cpu"
    assert (calls[0].track.name, calls[0].run.profile) == ("tinystories", "cpu")


def test_the_smoke_stand_in_really_trains_and_loads(runs):
    said = []
    folder = course.find_or_train("shakespeare-char", "smoke", say=said.append)
    assert folder == runs / "shakespeare-char-quick-smoke"
    preset, recipe = tinylm.get_track("shakespeare-char").recipe("smoke")
    assert f"final step     {recipe.max_steps} | val loss" in (folder / "train.log").read_text()
    model, tokenizer, _ = tinylm.load_model(folder)
    assert (model.config.n_layer, model.config.n_embd, tokenizer.vocab_size) == (preset.n_layer, preset.n_embd, 65)
    assert said[-1].startswith("shakespeare-char: no trained model in ") and "none yet: trains first" in said[-1]


def test_the_notebooks_that_train_a_track_save_where_find_or_train_looks():
    notebooks = Path(__file__).resolve().parents[1] / "notebooks" / "py"
    for track in course.TRAINED_IN_A_NOTEBOOK:
        source = (notebooks / course.TRACK_NOTEBOOKS[track]).with_suffix(".py").read_text()
        folder = course.notebook_run_folder(track, "{PROFILE}").name  # as the notebook's f-string spells it
        assert f'run_dir = tinylm.paths.runs_dir() / f"{folder}"' in source, track


def test_notebook_6a_trains_the_gpt2_track_and_6b_is_what_to_open_after_training_it(runs):
    assert course.notebook_number(course.TRACK_NOTEBOOKS["gpt2-124m"]) == "6a"
    assert course.notebook_number(course.TRACK_NOTEBOOKS["tinystories"]) == "5"
    assert course.notebook_run_folder("gpt2-124m", "cpu") == runs / "notebook-06a-cpu"
    assert course.notebook_run_folder("tinystories", "cpu") == runs / "notebook-05-cpu"
    assert repository.next_notebooks("gpt2-124m") == ["06b_gpt2_124m_evaluation.ipynb", "07_generation.ipynb"]
    assert repository.next_notebooks("tinystories") == ["05_tinystories.ipynb", "07_generation.ipynb"]
    assert repository.next_notebooks("text") == ["14_your_own_model.ipynb", "07_generation.ipynb"]
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    named = [*repository.TRACK_NOTEBOOKS.values(), *repository.EVALUATION_NOTEBOOKS.values()]
    assert all((notebooks / name).is_file() for name in named), "every notebook the course names exists"


def test_after_readmes_first_command_the_epilogue_opens_the_course_at_its_start():
    """`python -m tinylm.train shakespeare-char` is README's first command: what it suggests next starts with the
    course's first notebook (the first file of notebooks/), then the notebook that trains the track, then generation."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert readme[readme.index("python -m tinylm"):].startswith("python -m tinylm.train shakespeare-char")
    first = min(path.name for path in (root / "notebooks").glob("*.ipynb"))
    assert repository.FIRST_NOTEBOOK == first
    assert repository.next_notebooks("shakespeare-char") == [first, "03b_train_char_gpt.ipynb", "07_generation.ipynb"]


def test_a_notebooks_set_up_resolves_the_profile_and_device_and_takes_the_free_cores_as_a_command_does():
    """In a process of its own, as a notebook's kernel (threads last for the process): 2 threads by default, 1 core
    free, so it takes 1 and says why; a device of the notebook's choosing ("cpu") is the one it sets up for."""
    probe = ("import torch, tinylm, tinylm.runtime\ntorch.set_num_threads(2)\n"
             "tinylm.runtime.spare_cores = lambda *args: 1\n"
             "print(tuple(tinylm.set_up_notebook('cpu')), torch.get_num_threads())")
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, "TINYLM_PROFILE": "cpu"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    note, setup = result.stdout.splitlines()
    assert note.startswith("note: using 1 of 2 CPU threads: other processes keep the rest of the cores busy")
    assert setup == "('cpu', device(type='cpu')) 1", result.stderr
