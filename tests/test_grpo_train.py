"""GRPO training: the problem stream resumes where it stopped, SFT batches train the answer only, the reward rises,
an update is the clipped objective's AdamW step on the recipe's advantages (std-scaled or not), a resumed run
equals an uninterrupted one, and two DDP ranks make the update one process makes on their batch."""

import copy
import os
import random
import sys
from pathlib import Path

import pytest
import torch

from tests.grpo_ddp_worker import ddp_setup, one_step_trainer
from tests.preloaded import run_python
from tinylm.config import GPTConfig
from tinylm.distributed import World
from tinylm.model.gpt import GPT
from tinylm.posttrain.grpo.objective import clipped_policy_loss, group_advantages, token_logprobs
from tinylm.posttrain.grpo.recipes import GRPO_RECIPES
from tinylm.posttrain.grpo.rollout import greedy_accuracy
from tinylm.posttrain.grpo.task_base import answer_batch, check_tokenizer, task_tokenizer
from tinylm.posttrain.grpo.tasks import (
    FormatOnly,
    ProblemStream,
    TaskError,
    get_task,
    held_out_problems,
    held_out_split,
    training_problems,
)
from tinylm.posttrain.grpo.trainer import GRPOTrainer
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.checkpoint import load_training_checkpoint

WORKER = Path(__file__).with_name("grpo_ddp_worker.py")


def test_problem_stream_is_the_training_stream_and_resumes_from_its_state():
    task = get_task("arithmetic", digits=2)
    held_out = held_out_problems(task, 50)
    reference = training_problems(task, held_out, seed=3)
    stream = ProblemStream(task, held_out, seed=3)
    assert stream.take(20) == [next(reference) for _ in range(20)]
    state = copy.deepcopy(stream.state_dict())
    expected = stream.take(10)
    resumed = ProblemStream(task, held_out, seed=99)
    resumed.load_state_dict(state)
    assert resumed.take(10) == expected and resumed.drawn == 30
    assert not {p.prompt for p in expected} & {p.prompt for p in held_out}


def test_answer_batch_trains_the_answer_and_its_newline_only():
    tokenizer = task_tokenizer()
    problems = [get_task("arithmetic").sample(random.Random(i)) for i in range(3)]
    x, y = answer_batch(tokenizer, problems)
    for row, problem in enumerate(problems):
        targets = y[row][y[row] != -1].tolist()
        assert tokenizer.decode(targets) == problem.answer + "\n"
        text = problem.prompt + problem.answer
        assert tokenizer.decode(x[row, : len(text)].tolist()) == text


def test_format_only_pays_well_formed_wrong_answers():
    task = get_task("arithmetic")
    problem = task.sample(random.Random(0))
    wrong = str(int(problem.answer) + 1) + "\n"
    assert task.score(problem, wrong).reward == 0.1 and FormatOnly(task).score(problem, wrong).reward == 1.0
    assert not FormatOnly(task).score(problem, wrong).correct


def test_the_task_tokenizer_check():
    check_tokenizer(task_tokenizer(), "arithmetic", "the task tokenizer")
    with pytest.raises(TaskError, match="cannot write arithmetic"):
        check_tokenizer(CharTokenizer(list("\nabc +=")), "arithmetic", "a letters-only model")


def tiny(seed: int, train: dict | None = None, **changes):
    """A random 1-layer policy over the task alphabet, its task (1-digit arithmetic) and a small recipe."""
    torch.manual_seed(seed)
    tokenizer, task = task_tokenizer(), get_task("arithmetic", digits=1)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=32))
    recipe = GRPO_RECIPES["smoke"].replace(
        train={"learning_rate": 3e-3, "min_lr": 3e-3, "seed": seed, "max_steps": 30, "eval_interval": 0,
               "log_interval": 1, **(train or {})},
        **{"prompts": 8, "group_size": 4, "updates": 1, "validation": 8, "test": 8, **changes})
    return model, tokenizer, task, recipe, held_out_split(task, recipe.validation, recipe.test)


def test_rollouts_never_draw_a_held_out_problem_and_evaluations_score_the_validation_split():
    model, tokenizer, task, recipe, held_out = tiny(0, reward="format")
    trainer = GRPOTrainer(model, tokenizer, task, recipe, held_out, 6)
    assert trainer.source.stream.excluded == {p.prompt for p in held_out.problems}  # validation and test alike
    validation, test = (dict(zip(("accuracy", "well_formed"), greedy_accuracy(model, tokenizer, task, problems, 6)))
                        for problems in (held_out.validation, held_out.test))
    assert trainer.evaluate() == validation and trainer.accuracy_on(held_out.test) == test


def records_of(trainer: GRPOTrainer) -> list[dict]:
    records = []
    trainer.callbacks.append(records.append)
    return records


@pytest.mark.parametrize("seed", [0, 1])
def test_grpo_raises_the_reward(seed):
    """A random policy rarely writes digits then a newline; paid for exactly that (the format-only reward), GRPO
    makes it the rule within 30 steps (3 seeds measured: 0.07-0.12 over the first 5 steps, 0.58-0.68 over the
    last 5)."""
    model, tokenizer, task, recipe, held_out = tiny(seed, reward="format")
    trainer = GRPOTrainer(model, tokenizer, task, recipe, held_out, 6)
    records = records_of(trainer)
    trainer.fit()
    rewards = [r["reward"] for r in records if r["event"] == "train"]
    assert len(rewards) == 30 and sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.3, rewards
    assert records[-1]["event"] == "final" and records[-1]["best_accuracy"] >= records[-1]["accuracy"]


def test_an_update_is_the_clipped_step_on_the_recipes_advantages():
    """The trainer's step equals one written from tinylm.posttrain.grpo by hand on the rollout it sampled, with the
    group advantages scaled by the std (DeepSeekMath) or only centred (Dr. GRPO) as the recipe says; the two give
    different steps."""
    updated = {}
    for scale in (True, False):
        model, tokenizer, task, recipe, held_out = tiny(0, train={"max_steps": 1}, reward="format",
                                                        scale_advantages=scale)
        trainer = GRPOTrainer(copy.deepcopy(model), tokenizer, task, recipe, held_out, 6)
        trainer.fit()
        sequences, mask, advantages, old, _ = trainer.source.batch  # the rollout of the step: sampled before it
        rewards = advantages.view(-1, recipe.group_size)
        assert advantages.abs().sum() > 0  # some group has mixed rewards, so the step depends on the advantages
        with torch.no_grad():  # the advantages are those of the rollout's rewards, scaled as the recipe says
            assert torch.allclose(group_advantages(rewards, scale=scale), rewards, atol=1e-5) or not scale
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.train.learning_rate, betas=(0.9, 0.999),
                                      weight_decay=0.0)
        with torch.no_grad():
            assert torch.allclose(token_logprobs(model, sequences), old, atol=1e-6)  # π_old: the model that sampled
        clipped_policy_loss(token_logprobs(model, sequences), old, advantages, mask,
                            recipe.clip_eps).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.train.grad_clip)
        optimizer.step()
        for name, weight in model.state_dict().items():
            assert torch.allclose(weight, trainer.model.state_dict()[name], atol=1e-6), (scale, name)
        updated[scale] = model.state_dict()["lm_head.weight"]
    assert not torch.allclose(updated[True], updated[False])


def test_a_resumed_run_equals_an_uninterrupted_one_even_between_a_rollouts_updates(tmp_path):
    """Split after step 3 of 4 with two updates per rollout: the resumed run must reuse the rollout it was in."""
    model, tokenizer, task, recipe, held_out = tiny(0, train={"max_steps": 4, "eval_interval": 2}, reward="format",
                                                    updates=2)
    straight = GRPOTrainer(copy.deepcopy(model), tokenizer, task, recipe, held_out, 6, out_dir=tmp_path / "straight")
    straight_records = records_of(straight)
    straight.fit()
    first = GRPOTrainer(copy.deepcopy(model), tokenizer, task, recipe, held_out, 6, out_dir=tmp_path / "split")
    first.fit(stop_after=3)
    assert first.source.served % recipe.updates == 1  # stopped between the two updates of a rollout
    other_start, *_ = tiny(5)  # the checkpoint's weights replace these
    resumed = GRPOTrainer(other_start, tokenizer, task, recipe, held_out, 6, out_dir=tmp_path / "split")
    resumed.load_state_dict(load_training_checkpoint(tmp_path / "split" / "last.pt"))
    resumed_records = records_of(resumed)
    resumed.fit()
    for name, weight in straight.model.state_dict().items():
        assert torch.equal(weight, resumed.model.state_dict()[name]), name
    assert not torch.equal(first.model.state_dict()["lm_head.weight"], straight.model.state_dict()["lm_head.weight"])
    train = [r for r in straight_records if r["event"] == "train"]
    assert [r["reward"] for r in resumed_records if r["event"] == "train"] == [r["reward"] for r in train[3:]]
    assert resumed.best_step == straight.best_step and resumed.best_score == straight.best_score


def test_two_ranks_make_the_update_of_one_process_on_their_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
               "--out", str(out)]
    done = run_python(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    assert result["world_size"] == 2
    model, tokenizer, task, recipe, held_out = ddp_setup()
    model.load_state_dict(result["start"])
    alone = one_step_trainer(model, tokenizer, task, recipe, held_out, World(), tuple(result["whole"]))
    alone.fit(stop_after=1)
    for name, weight in alone.model.state_dict().items():
        torch.testing.assert_close(result["ddp"][name], weight, atol=1e-6, rtol=0, msg=name)
    assert max((weight - result["start"][k]).abs().max() for k, weight in alone.model.state_dict().items()) > 1e-3
    for name, weight in result["rank0"].items():  # two more steps, each rank sampling its own share: still in sync
        assert torch.equal(weight, result["rank1"][name]), name
    assert all(0 <= r["reward"] <= 1 for r in result["records"]) and [r["step"] for r in result["records"]] == [2, 3]
