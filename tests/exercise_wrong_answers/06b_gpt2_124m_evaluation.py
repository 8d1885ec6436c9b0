"""Notebook 6b: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # acc_norm normalised along the wrong axis: by the tokens of all four endings, which ranks them as the sum does
    "test_hellaswag_accuracy": """
def hellaswag_accuracy(summed, counts, labels):
    acc = (summed.argmin(dim=1) == labels).float().mean().item()
    acc_norm = ((summed / counts.sum(dim=1, keepdim=True)).argmin(dim=1) == labels).float().mean().item()
    return acc, acc_norm
""",
    # the number read off the wrong key: acc, the summed loss's accuracy, where acc_norm was asked
    "test_a_random_model_is_at_chance": """
torch.manual_seed(1)
my_model = tinylm.GPT(model.config)
result = evaluate_hellaswag(my_model, tokenizer, read_examples(val_file.path, limit=my_examples))
my_acc_norm = result["acc"]
""",
}
