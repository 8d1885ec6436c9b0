"""Rollouts: the completion mask covers exactly the sampled tokens, rewards are the task's scores of the
completions, sampling repeats with its seed, and a held-out pass rate counts what the scores count."""

import random

import torch

from tinylm.config import GPTConfig
from tinylm.model.gpt import GPT
from tinylm.posttrain.grpo.rollout import sample_groups
from tinylm.posttrain.task import greedy_pass_rate
from tinylm.posttrain.tasks._generated import ALPHABET
from tinylm.posttrain.tasks.arithmetic import Arithmetic
from tinylm.tokenizers.char import CharTokenizer


def setup():
    torch.manual_seed(0)
    tokenizer = CharTokenizer(list(ALPHABET))
    model = GPT(GPTConfig(vocab_size=len(ALPHABET), block_size=32, n_layer=1, n_head=2, n_embd=16))
    task = Arithmetic("smoke", digits=2)
    problems = [task.sample(random.Random(i)) for i in range(3)]
    return model, tokenizer, task, problems


def test_mask_covers_the_completions_and_rewards_are_scores():
    model, tokenizer, task, problems = setup()
    rollout = sample_groups(model, tokenizer, task, problems, group_size=4, seed=1)
    assert rollout.sequences.shape[0] == 12 and rollout.rewards.shape == (3, 4)
    for row in range(12):
        targets = rollout.sequences[row, 1:][rollout.completion_mask[row]]
        assert tokenizer.decode(targets.tolist()) == rollout.completions[row]
        problem = problems[row // 4]
        prompt = rollout.sequences[row, : len(problem.prompt)].tolist()
        assert tokenizer.decode(prompt) == problem.prompt
        assert rollout.rewards.view(-1)[row] == task.score(problem, rollout.completions[row]).reward
        assert 1 <= len(rollout.completions[row]) <= task.reply_tokens
    again = sample_groups(model, tokenizer, task, problems, group_size=4, seed=1)
    assert again.completions == rollout.completions and torch.equal(again.sequences, rollout.sequences)


def test_the_greedy_pass_rate_counts_greedy_scores():
    model, tokenizer, task, problems = setup()
    rates = greedy_pass_rate(model, tokenizer, task, problems, batch_size=2)
    greedy = sample_groups(model, tokenizer, task, problems, group_size=1, temperature=0)
    assert rates["pass_rate"] == greedy.correct.float().mean().item()
    assert rates["well_formed"] == greedy.well_formed.float().mean().item()
