"""Notebook 9: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # each row's mean over all its positions: the padding's zero losses dilute the shorter conversations
    "test_per_conversation_loss": """
def per_conversation_loss(logits, targets):
    losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1, reduction="none")
    return losses.view_as(targets).mean(dim=1).mean()
""",
    # counts the input tokens that are not padding, prompts included, not the targets that carry loss
    "test_counted_targets": """
loader = ConversationLoader(train_examples.rendered, 16, STORY_PAD, seed=1)
my_counts = []
for _ in range(20):
    inputs, _ = loader.next_batch()
    my_counts.append(int((inputs != STORY_PAD).sum()))
""",
    # the lesson's call copied without max_steps: the recipe's steps, not SHORT_STEPS
    "test_short_pass_rate": """
short = sft(RunOptions(profile=PROFILE, out=run_dir.with_name(run_dir.name + "-short"), overwrite=True, seed=SEED),
            PostTrainingOptions(task=TASK))
my_short_pass_rate = short["after"]["pass_rate"]
""",
    # the block-diagonal mask without restarting the positions: the second conversation starts where the first ends
    "test_packed_logits": """
def packed_logits(model, ids, positions, segment):
    T = ids.size(0)
    visible = (segment[:, None] == segment[None, :]) & torch.ones(T, T, dtype=torch.bool).tril()
    x = (model.transformer.wte(ids) + model.transformer.wpe(torch.arange(T)))[None]
    for block in model.transformer.h:
        q, k, v = block.attn.heads(block.ln_1(x))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)
        x = x + block.attn.c_proj(attended.transpose(1, 2).reshape(1, T, -1))
        x = x + block.mlp(block.ln_2(x))
    return model.lm_head(model.transformer.ln_f(x))[0]
""",
}
