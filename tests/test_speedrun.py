"""The speedrun recipes and the race between recipes: `--recipe speedrun` resolves, trains and resumes; the seconds to
a target are read off the validation curve; `python -m tinylm.bench speedrun` races both recipes and says so."""

import dataclasses

import pytest
import torch
from helpers import run_cli

import tinylm.train.muon
from tinylm.bench.speedrun import RACE_DEFAULTS, Race, RaceRun, compared, race, seconds_to_target, validation_curve
from tinylm.config import ConfigError
from tinylm.errors import InputError
from tinylm.train.checkpoint import load_checkpoint
from tinylm.train.options import RunOptions
from tinylm.train.recipes import TRACKS, TrainOptions, default_run_name, get_track, resolve_recipe


@pytest.mark.parametrize("bf16_fast", [True, False])
@pytest.mark.parametrize("track, changes", [
    ("shakespeare-char", {"batch_size": 32}),  # one block, a batch of 32 sequences instead of 12
    ("tinystories", {}),  # Muon alone
])
def test_the_speedrun_recipe_is_the_default_one_with_muon_and_its_changes_whatever_the_hardware(
        monkeypatch, track, changes, bf16_fast):
    """Only Muon's arithmetic depends on the hardware (Newton–Schulz in bfloat16 where that is fast), not the recipe."""
    monkeypatch.setattr(tinylm.train.muon, "bf16_is_fast", lambda device: bf16_fast)
    recipe = resolve_recipe(track, RunOptions(profile="cpu", seed=3), TrainOptions(recipe="speedrun"))
    shape, train = get_track(track).recipe("cpu")
    assert recipe.train == dataclasses.replace(train, optimizer="muon", seed=3, **changes)
    assert recipe.shape == shape
    assert get_track(track).speedrun_changes("cpu") == {"optimizer": "muon", **changes}
    assert recipe.run.out.name == f"{track}-speedrun-cpu"
    default = resolve_recipe(track, RunOptions(profile="cpu"))
    assert default.train.optimizer == "adamw" and default.train == train and default.shape == shape  # unchanged
    # the user's options still win over the recipe's
    run = RunOptions(profile="cpu", batch_size=7)
    assert resolve_recipe(track, run, TrainOptions(recipe="speedrun")).train.batch_size == 7


def test_only_the_tracks_and_profiles_that_were_measured_have_a_speedrun():
    assert {name for name, track in TRACKS.items() if track.speedruns} == set(RACE_DEFAULTS)
    with pytest.raises(ConfigError, match="measured for the smoke and cpu profiles, not for gpu"):
        resolve_recipe("shakespeare-char", RunOptions(profile="gpu"), TrainOptions(recipe="speedrun"))
    with pytest.raises(ConfigError, match="gpt2-124m has no speedrun recipe"):
        resolve_recipe("gpt2-124m", RunOptions(profile="cpu"), TrainOptions(recipe="speedrun"))
    with pytest.raises(ConfigError, match="drop --arch"):
        resolve_recipe("shakespeare-char", RunOptions(profile="cpu"), TrainOptions(recipe="speedrun", arch="llama"))
    with pytest.raises(ConfigError, match="unknown recipe 'fast'"):
        resolve_recipe("shakespeare-char", RunOptions(profile="cpu"), TrainOptions(recipe="fast"))
    assert default_run_name("tinystories", "cpu", "gpt2", recipe="speedrun") == "tinystories-speedrun-cpu"


def test_seconds_to_target_interpolates_between_the_evaluations_around_the_crossing():
    curve = [(1.0, 3.0), (2.0, 2.5), (4.0, 1.5), (5.0, 1.4)]
    assert seconds_to_target(curve, 2.0) == pytest.approx(3.0)  # half-way from 2.5 at 2 s to 1.5 at 4 s
    assert seconds_to_target(curve, 1.5) == pytest.approx(4.0)
    assert seconds_to_target(curve, 3.5) == 1.0  # already there at the first evaluation
    assert seconds_to_target(curve, 1.0) is None
    assert seconds_to_target([(1.0, 2.0), (2.0, 2.5), (3.0, 1.9)], 1.95) == pytest.approx(2.0 + 0.55 / 0.6)
    records = [{"event": "train", "elapsed": 0.5, "loss": 9.0}, {"event": "eval", "elapsed": 1.0, "val_loss": 3.0},
               {"event": "final", "elapsed": 2.0, "val_loss": 2.0}]
    assert validation_curve(records) == [(1.0, 3.0), (2.0, 2.0)]


def test_a_race_compares_mean_losses_and_mean_seconds_to_the_target():
    def runs(losses, seconds):
        return [RaceRun("", seed, [], loss, 1, s) for seed, (loss, s) in enumerate(zip(losses, seconds))]

    gap, speedup = compared({"default": runs([2.0, 2.2], [40.0, 60.0]), "speedrun": runs([1.9, 1.9], [20.0, 30.0])})
    assert gap == pytest.approx(-0.2) and speedup == pytest.approx(2.0)
    assert compared({"default": runs([2.0], [40.0]), "speedrun": runs([1.9], [None])})[1] is None


def test_a_race_takes_the_tracks_settings_where_none_are_given():
    settled = Race("tinystories", "smoke", seconds=10.0).settled()
    assert (settled.target, settled.seconds, settled.eval_interval) == (3.3, 10.0, 25)


def test_a_race_trains_both_recipes_at_every_seed_in_alternating_order():
    order = []
    plan = Race("shakespeare-char", "smoke", target=4.0, seeds=2, seconds=60.0, eval_interval=10)
    runs = race(plan, on_run=lambda run, done, total: order.append((run.recipe, run.seed, done, total)))
    assert order == [("default", 0, 1, 4), ("speedrun", 0, 2, 4), ("speedrun", 1, 3, 4), ("default", 1, 4, 4)]
    for name, recipe_runs in runs.items():
        assert [run.seed for run in recipe_runs] == [0, 1]
        for run in recipe_runs:
            assert run.steps == 30  # the smoke recipes' steps come long before 60 s
            assert len(run.curve) == 3 and run.curve[-1][1] == run.val_loss  # steps 10 and 20, then the final one
            assert run.curve[-1][1] < run.curve[0][1]  # it learned
            assert run.seconds_to_target == seconds_to_target(run.curve, 4.0)
    # the same seed gives the same run, up to rounding (Muon's Newton-Schulz runs in bfloat16 where the hardware does
    # that fast, tinylm.runtime.bf16_is_fast): the race is repeatable
    again = race(plan, seeds=[1], recipes=["speedrun"])
    assert again["speedrun"][0].val_loss == pytest.approx(runs["speedrun"][1].val_loss, abs=1e-3)


def test_train_with_the_speedrun_recipe_saves_its_changes_and_resumes(tmp_path, data_root):
    out = tmp_path / "run"
    first = run_cli("tinylm.train", "shakespeare-char", "--recipe", "speedrun", "--profile", "smoke", "--out", out,
                    "--max-steps", "12", data_dir=data_root)
    assert first.returncode == 0, first.stderr
    saved = load_checkpoint(out / "last.pt")
    assert saved["model_config"]["n_layer"] == get_track("shakespeare-char").speedrun("smoke")[0].n_layer
    assert saved["train_config"]["optimizer"] == "muon" and set(saved["optimizer"]) == {"muon", "adamw"}
    resumed = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", out, "--resume",
                      "--max-steps", "20", data_dir=data_root)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out / "last.pt")["step"] == 20


def test_the_speedrun_bench_prints_both_recipes_and_their_ratio(data_root):
    result = run_cli("tinylm.bench", "speedrun", "--profile", "smoke", "--seeds", "2", "--seconds", "60",
                     "--eval-interval", "10", "--target", "4.1", data_dir=data_root)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "run 4/4" in out and "ETA" in out
    assert "the speedrun recipe: the default one with optimizer=muon (Muon's Newton–Schulz in" in out
    assert "default  val loss" in out and "speedrun val loss" in out and "(2 seeds)" in out
    assert "speedrun - default, val loss:" in out
    assert "nothing was written to disk" in out and "--recipe speedrun" in out


@pytest.mark.parametrize("profile_option, environment, raced", [([], None, "cpu"), ([], "smoke", "smoke"),
                                                                (["--profile", "smoke"], "cpu", "smoke")])
def test_the_speedrun_bench_races_cpus_recipes_unless_told_even_on_a_machine_with_cuda(profile_option, environment,
                                                                                        raced, monkeypatch, capsys):
    """The speedrun recipes exist for cpu and smoke; `resolve_profile` would pick gpu where CUDA is, and fail."""
    import tinylm.cli.bench as bench

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    if environment is None:
        monkeypatch.delenv("TINYLM_PROFILE", raising=False)
    else:
        monkeypatch.setenv("TINYLM_PROFILE", environment)

    class Raced(Exception):
        pass

    def race(plan, **options):
        raise Raced(plan.profile)

    monkeypatch.setattr(bench, "race", race)
    with pytest.raises(Raced) as raced_with:
        bench.main(["speedrun", *profile_option, "--device", "cpu"])
    assert raced_with.value.args == (raced,)
    with pytest.raises(InputError, match="has speedrun recipes for the smoke and cpu profiles, not for gpu: add "
                                         "--profile cpu"):
        bench.main(["speedrun", "--profile", "gpu", "--device", "cpu"])


@pytest.mark.parametrize("module, args, message", [
    ("tinylm.bench", ["speedrun", "--profile", "smoke", "--seconds", "0"],
     "error: --seconds must be positive, got 0.0"),
    ("tinylm.train", ["shakespeare-char", "--profile", "smoke", "--recipe", "speedrun", "--arch", "llama"],
     "error: the speedrun recipe chooses its own block"),
    ("tinylm.train", ["gpt2-124m", "--profile", "smoke", "--recipe", "speedrun"],
     "error: gpt2-124m has no speedrun recipe"),
])
def test_bad_speedrun_options_are_one_line_errors(module, args, message, data_root):
    result = run_cli(module, *args, data_dir=data_root)
    assert result.returncode == 1
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]  # one line, no traceback
    assert result.stderr.startswith(message)


def test_muon_beats_adamw_at_equal_steps_on_shakespeare(data_root, monkeypatch):
    """Learning happening, and the speedrun's main idea at a size CI affords: the smoke recipe's model and 60 steps,
    the same seeds, weights and batches; only the optimizer differs, and Muon ends lower at both seeds."""
    from tinylm.model.gpt import GPT
    from tinylm.train.trainer import Trainer

    monkeypatch.setenv("TINYLM_DATA_DIR", str(data_root))
    track = get_track("shakespeare-char")
    data = track.prepare("smoke")
    shape, cfg = track.recipe("smoke")
    for seed in (0, 1):
        finals = {}
        for optimizer in ("adamw", "muon"):
            torch.manual_seed(seed)
            model = GPT(shape.config(data.tokenizer.vocab_size))
            run_cfg = dataclasses.replace(cfg, max_steps=60, seed=seed, optimizer=optimizer)
            finals[optimizer] = Trainer(model, run_cfg, data.train, data.val, device="cpu").fit()["val_loss"]
        assert finals["muon"] < finals["adamw"] - 0.05, (seed, finals)


def test_step_costs_are_timed_in_rounds_whose_order_rotates_across_arms(monkeypatch, tiny_config, train_config,
                                                                        tokens):
    """measure_step_costs warms every arm up, then times rounds of steps with the arms' order rotated each round; the
    budget then buys each arm the steps its median round allows, and every seed of a budgeted arm trains exactly
    those steps, whatever the machine did meanwhile, with the same loss on a repeat."""
    from tinylm.course import speedrun as course
    from tinylm.course.ablation import Arm, train_arms

    calls = []

    class RecordingTrainer(course.Trainer):
        def fit(self, stop_after=None):
            calls.append((self.model.config.n_layer, stop_after))
            return super().fit(stop_after)

    monkeypatch.setattr(course, "Trainer", RecordingTrainer)
    train, val = tokens
    arms = [Arm("one", "1 block", tiny_config(n_layer=1), None),
            Arm("three", "3 blocks", tiny_config(n_layer=3), "one", (("optimizer", "muon"),))]
    costs = course.measure_step_costs(arms, train_config(), train, val, device="cpu", rounds=3, steps=2, warmup=1)
    assert calls == [(1, 1), (3, 1), (1, 2), (3, 2), (3, 2), (1, 2), (1, 2), (3, 2)]
    for arm in arms:
        cost = costs[arm.name]
        assert len(cost.rounds) == 3 and all(seconds > 0 for seconds in cost.rounds)
        assert cost.seconds == sorted(cost.rounds)[1]
    budget = 40 * costs["one"].seconds
    budgeted = course.within_budget(arms, costs, budget)
    assert [dict(arm.train_options)["max_steps"] for arm in budgeted] == [
        round(budget / costs[name].seconds) for name in ("one", "three")]
    assert all(dict(arm.train_options)["max_seconds"] is None for arm in budgeted)
    assert dict(budgeted[1].train_options)["optimizer"] == "muon"  # the arm's own options kept
    config = train_config(max_seconds=1e-9)  # a clock that would stop every run at once: the budget replaces it
    runs = train_arms(budgeted, [0, 1], config, train, val, device="cpu", report=None)
    again = train_arms(budgeted[:1], [1], config, train, val, device="cpu", report=None)
    assert [run.steps for run in runs["one"]] == [dict(budgeted[0].train_options)["max_steps"]] * 2
    assert runs["one"][1].val_loss == again["one"][0].val_loss


def priced_runs(steps: dict[str, int], losses: dict[str, list[float]]):
    """ArmRuns of one step budget per arm: an evaluation at a fifth of the steps (loss 2.5), the final one at the
    end; their own clocks (70-72 s) disagree with the costs on purpose: a priced race does not read them."""
    from tinylm.course.ablation import ArmRun

    records = lambda n, loss: [{"event": "eval", "step": n // 5, "elapsed": 1.0, "val_loss": 2.7},  # noqa: E731
                               {"event": "eval", "step": 2 * n // 5, "elapsed": 2.0, "val_loss": 2.5},
                               {"event": "final", "step": n, "elapsed": 9.0, "val_loss": loss}]
    return {arm: [ArmRun(arm, seed, loss, steps[arm], 70.0 + seed, records(steps[arm], loss), None)
                  for seed, loss in enumerate(losses[arm])] for arm in steps}


def test_a_priced_race_reads_seconds_at_the_measured_cost_and_calls_verdicts_by_the_rule(tiny_config):
    from tinylm.course import speedrun as course
    from tinylm.course.ablation import Arm

    arms = [Arm("default", "d", tiny_config(), None), Arm("speedrun", "s", tiny_config(), "default"),
            Arm("+X", "x", tiny_config(), "speedrun")]
    costs = {"default": course.StepCost((0.010, 0.014, 0.011, 0.010, 0.020)),
             "speedrun": course.StepCost((0.040, 0.035, 0.090, 0.036, 0.030)),
             "+X": course.StepCost((0.035, 0.035, 0.035, 0.035, 0.035))}
    budgeted = course.within_budget(arms, costs, 70.0)
    assert [dict(arm.train_options)["max_steps"] for arm in budgeted] == [6364, 1944, 2000]  # 70 s / median cost
    assert all("eval_interval" not in dict(arm.train_options) for arm in budgeted)
    evaluated = course.within_budget(arms, costs, 70.0, eval_seconds=3.5)  # every 3.5 s of training, in steps
    assert [dict(arm.train_options)["eval_interval"] for arm in evaluated] == [318, 97, 100]
    runs = priced_runs({"default": 6364, "speedrun": 1944, "+X": 2000},
                       {"default": [1.70, 1.71, 1.72], "speedrun": [1.60, 1.61, 1.62], "+X": [1.60, 1.63, 1.61]})
    table = course.race_table(arms, runs, costs, target=2.6, budget="70 s", split="test")
    assert "| seconds to 2.6 | test loss at 70 s |" in table
    # default: the crossing of 2.6 half-way between step 1,272 (2.7) and 2,545 (2.5), at 11 ms a step; the runs' own
    # clocks (70-72 s over 6,364 steps) are shown beside the measured cost, and read nowhere else
    assert ("| default | d | 11.0 (10.0–20.0) | 11.2 ± 0.2 | 6,364 | 14.0 | 21.0 ± 0.0 (3 seeds) | "
            "1.710 ± 0.010 (3 seeds) |") in table
    assert "| speedrun | s | 36.0 (30.0–90.0) | 36.5 ± 0.5 | 1,944 | 14.0 | 21.0 ± 0.0 (3 seeds) |" in table
    assert "Budget: 70 s of training at each arm's median step cost, measured in 5 rounds" in table
    verdicts = course.race_verdicts(arms, runs, costs, target=2.6, budget="70 s", split="test")
    assert len(verdicts) == 4
    assert verdicts[0].startswith("speedrun beats default on test loss at 70 s by 0.100")
    assert "): told apart:" in verdicts[0]
    assert verdicts[1].startswith("speedrun beats default on seconds to 2.6")  # 20.97 s against 20.99 s
    assert verdicts[2].startswith("speedrun beats +X on test loss at 70 s by 0.003") and "not told apart" in verdicts[2]
    runs["+X"][0].records[:2] = []  # seed 0 of +X evaluated only at the end, above the target
    runs["+X"][0].records[0]["val_loss"] = 2.9
    verdicts = course.race_verdicts(arms, runs, costs, target=2.6, budget="70 s")
    assert verdicts[3] == ("+X vs speedrun on seconds to 2.6: not every seed reached it (2 of 3 seeds reached it vs "
                           "21.0 ± 0.0 (3 seeds)): no verdict")


def test_the_race_by_seed_summary_gives_each_recipe_its_spread_and_verdicts(tmp_path, capsys):
    """scripts/speedrun_race_by_seed.py summarize: seeds gathered from several files, verdicts by the course's rule."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "speedrun_race_by_seed.py"
    spec = importlib.util.spec_from_file_location("speedrun_race_by_seed", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    runs = {"default": ([1.70, 1.71, 1.72], [20.0, 21.0, 22.0]), "speedrun": ([1.60, 1.61, 1.62], [21.5, 18.0, 19.0]),
            "second-block": ([1.605, 1.65, 1.705], [30.0, 31.0, None])}
    for seed in range(3):
        lines = [{"recipe": name, "seed": seed, "val_loss": losses[seed], "steps": 100 + seed, "seconds": 70.0,
                  "seconds_to_target": times[seed]} for name, (losses, times) in runs.items()]
        (tmp_path / f"{seed}.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    script.summarize(sorted(tmp_path.glob("*.jsonl")))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("default      seeds 0 1 2: val loss 1.7100 ± 0.0100 (3 seeds), 100-102 steps, 21.0 ± 1.0")
    assert out[2].strip() == "against default: loss told apart, seconds to 1.886 not told apart"  # 21.5 > 20.0
    assert out[3].startswith("second-block seeds 0 1 2") and "2 of 3 seeds reached 1.886" in out[3]
    assert out[4].strip() == "against default: loss not told apart, seconds to 1.886 not told apart"
    assert out[5].strip() == "against speedrun: loss not told apart, seconds to 1.886 not told apart"


def test_each_model_change_sets_fields_the_model_reads(tiny_config):
    """Every MODEL_CHANGES entry is a GPTConfig change that alters the network: its parameters or its output."""
    from tinylm.course.speedrun import MODEL_CHANGES
    from tinylm.model.gpt import GPT

    x = torch.randint(0, tiny_config().vocab_size, (2, 8))
    torch.manual_seed(0)
    base = GPT(tiny_config())
    reference = base(x)[0]
    for change in MODEL_CHANGES:
        torch.manual_seed(0)
        changed = GPT(tiny_config(**change.model))
        same_shapes = [p.shape for p in changed.parameters()] == [p.shape for p in base.parameters()]
        assert not same_shapes or not torch.equal(changed(x)[0], reference), change.name


def test_step_cost_line_tells_costs_apart_only_when_the_rounds_do_not_overlap(tiny_config):
    from tinylm.course import speedrun as course
    from tinylm.course.ablation import Arm

    arms = [Arm("dense", "d", tiny_config(), None), Arm("mixture", "m", tiny_config(), "dense")]
    apart = course.step_cost_line(arms, {"dense": course.StepCost((0.050, 0.052, 0.049)),
                                         "mixture": course.StepCost((0.070, 0.075, 0.060))})
    assert apart.splitlines() == ["dense: 50.0 (49.0–52.0) ms per step (median of 3 rounds; fastest–slowest)",
                                  "mixture: 70.0 (60.0–75.0) ms per step (median of 3 rounds; fastest–slowest)",
                                  "mixture against dense: 1.40x the step cost; told apart (the rounds do not overlap)"]
    overlapping = course.step_cost_line(arms, {"dense": course.StepCost((0.050, 0.049, 0.061)),
                                               "mixture": course.StepCost((0.070, 0.075, 0.060))})
    assert overlapping.endswith("1.40x the step cost; not told apart (the rounds overlap)")


def test_an_arm_with_its_baselines_compute_takes_its_price_and_equal_steps_read_the_curves(tiny_config, train_config,
                                                                                          tokens):
    """An arm named in same_cost_as is not timed and costs what its source costs; equal_steps_verdicts compares the
    two arms' losses at the fewest steps any of their runs trained, interpolated between evaluations."""
    from tinylm.course import speedrun as course
    from tinylm.course.ablation import Arm

    train, val = tokens
    arms = [Arm("one", "1 block", tiny_config(n_layer=1), None),
            Arm("zero", "zero-init", tiny_config(n_layer=1, zero_init_projections=True), "one")]
    costs = course.measure_step_costs(arms, train_config(), train, val, device="cpu", rounds=2, steps=1, warmup=1,
                                      same_cost_as={"zero": "one"})
    assert costs["zero"] is costs["one"] and len(costs["one"].rounds) == 2
    assert [change.name for change in course.MODEL_CHANGES if change.same_step_cost] == ["+zero-init"]

    records = [{"event": "eval", "step": 100, "val_loss": 2.0}, {"event": "eval", "step": 200, "val_loss": 1.5},
               {"event": "final", "step": 300, "val_loss": 1.4}]
    assert course.loss_at_step(records, 150) == 1.75 and course.loss_at_step(records, 300) == 1.4
    with pytest.raises(ValueError):
        course.loss_at_step(records, 50)
    runs = priced_runs({"one": 500, "zero": 400}, {"one": [1.7, 1.71, 1.72], "zero": [1.6, 1.61, 1.62]})
    sentences = course.equal_steps_verdicts(arms, runs, split="test")
    # both read at step 400, the zero arm's final evaluation, against one's line from step 200 (2.5) to 500
    assert len(sentences) == 1 and sentences[0].startswith("zero beats one on test loss at step 400")
    assert "): told apart:" in sentences[0]
