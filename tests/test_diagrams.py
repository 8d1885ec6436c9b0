"""The notebooks' diagrams: what each cell of the causal-mask drawing says, and the block's two residual branches."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from tinylm.course.diagrams import (  # noqa: E402
    draw_causal_mask,
    draw_kv_cache,
    draw_lora,
    draw_pre_norm_block,
    draw_tool_tokens,
)


@pytest.mark.parametrize("n", [3, 6])
def test_the_causal_mask_labels_the_past_with_scores_and_the_future_with_minus_infinity(n):
    fig, ax = plt.subplots()
    assert draw_causal_mask(n, ax=ax) is ax
    labels = [text.get_text() for text in ax.texts]
    assert len(labels) == n * n
    assert labels.count("−∞") == n * (n - 1) // 2  # strictly above the diagonal: s > t
    assert labels[0] == "q₀·k₀" and labels[n] == "q₁·k₀" and labels[1] == "−∞"  # row-major: (t=0, s=1) is future
    plt.close(fig)


def test_the_block_diagram_adds_each_sub_layer_back_onto_the_stream():
    ax = draw_pre_norm_block()
    texts = [text.get_text() for text in ax.texts]
    assert texts.count("+") == 2
    assert "x = x + attn(ln_1(x))" in texts and "x = x + mlp(ln_2(x))" in texts
    plt.close(ax.figure)


def test_the_cache_grows_by_one_key_and_one_value_per_decode_step():
    axes = draw_kv_cache(prompt_length=4, steps=3)
    for step, ax in enumerate(axes, start=1):
        cells = [patch for patch in ax.patches if patch.get_y() in (0.0, 1.0)]  # the key and value rows
        assert len(cells) == 2 * (4 + step)
        assert ax.get_title() == f"decode step {step}: cache of {4 + step}"
    plt.close(axes[0].figure)


def test_lora_has_a_frozen_matrix_and_two_trainable_factors_whose_sum_the_caption_gives():
    ax = draw_lora()
    colours = [patch.get_facecolor()[:3] for patch in ax.patches]
    assert colours.count(matplotlib.colors.to_rgb("tab:orange")) == 2  # A and B
    assert colours.count(matplotlib.colors.to_rgb("lightgray")) == 1  # W
    texts = [text.get_text() for text in ax.texts]
    assert "A: r × in" in texts and "h = W·x + (α/r)·B·(A·x);  B = 0 at the start" in texts
    plt.close(ax.figure)


def test_tool_tokens_are_green_in_order_and_the_model_s_blue():
    pieces, by_tool = ["Tom", " has", " 3", "*", "4", " = <<", "3*4=", "1", "2", ">>"], [False] * 7 + [True] * 3
    ax = draw_tool_tokens(pieces, by_tool, tool="the calculator")
    assert ax.get_title().endswith("the calculator's (green)")
    green, blue = matplotlib.colors.to_rgb("tab:green"), matplotlib.colors.to_rgb("tab:blue")
    assert [patch.get_facecolor()[:3] == green for patch in ax.patches] == by_tool
    assert all(patch.get_facecolor()[:3] in (green, blue) for patch in ax.patches)
    assert [text.get_text() for text in ax.texts] == [piece.replace(" ", "␣") for piece in pieces]
    xs = [patch.get_x() for patch in ax.patches]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)  # left to right, none on another
    plt.close(ax.figure)
