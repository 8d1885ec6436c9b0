"""Notebook 6a: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # the processes left out: every GPU's micro-batch counted as if it were the only one
    "test_micro_steps": """
def micro_steps(total_batch_tokens, batch_size, block_size, world_size):
    per_micro_step = batch_size * block_size
    if total_batch_tokens % per_micro_step:
        raise ValueError(f"{total_batch_tokens} tokens do not split into micro-batches of {per_micro_step}")
    return total_batch_tokens // per_micro_step
""",
    # 2ND, the forward pass alone: the backward pass's 4ND left out
    "test_gpu_hours_6nd": """
def gpu_hours_6nd(n_params, n_tokens, mfu, peak_flops):
    return 2 * n_params * n_tokens / (mfu * peak_flops) / 3600
""",
    # one process at the recipe's batch of 4 (one rank's share), not the two ranks' 8 together
    "test_one_process_with_batch_8_trains_what_two_with_batch_4_train": """
my_run = tinylm.paths.runs_dir() / "one-process-batch-4"
subprocess.run([sys.executable, "-m", "tinylm.train", "gpt2-124m", "--profile", "smoke", "--out", str(my_run),
                "--overwrite", "--max-steps", str(DDP_STEPS), "--device", "cpu"], check=True)
""",
}
