"""Notebook 2b: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # applies the final LayerNorm too, which the exercise leaves out: the variance of a normalised stream
    "test_residual_variance": """
@torch.no_grad()
def residual_variance(model, idx):
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.size(1)))
    for block in model.transformer.h:
        x = block(x)
    return model.transformer.ln_f(x).var().item()
""",
}
