"""Diagrams the notebooks draw where a picture beats prose, in fonts readable on a projector.

`draw_causal_mask` is the score matrix of causal self-attention with each cell labelled (q_t·k_s where a query may
read a key, −∞ where the key is in its future); `draw_pre_norm_block` is GPT-2's transformer block, the residual
stream running straight through and each sub-layer reading a normalised copy of it and adding its result back;
`draw_computation_graph` is the graph of L = tanh(a·b + c) with each node's value and gradient; `draw_kv_cache` is
one layer's key and value cache over the first decode steps, the new query reading every cached key; `draw_lora` is
a frozen weight matrix with LoRA's trainable low-rank path beside it; `draw_tool_tokens` is a text token by token,
the model's tokens apart from a tool's. Each draws on the axes it is given (or a new figure's) and returns them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyBboxPatch, Rectangle

SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def draw_causal_mask(n: int = 6, ax=None):
    """The (n, n) scores after the causal mask: row t is query position t, column s key position s; the future
    (s > t) is shaded and holds −∞, the rest holds q_t·k_s."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 6.5))
    for t in range(n):  # row: the query's position
        for s in range(n):  # column: the key's position
            future = s > t
            ax.add_patch(Rectangle((s, t), 1, 1, facecolor="0.7" if future else "white", edgecolor="black", lw=1))
            label = "−∞" if future else f"q{t}·k{s}".translate(SUBSCRIPT)
            ax.text(s + 0.5, t + 0.5, label, ha="center", va="center", fontsize=13)
    ax.set_xlim(0, n)
    ax.set_ylim(n, 0)  # row 0 at the top, as in a matrix
    ax.set_xticks([s + 0.5 for s in range(n)], [f"k{s}".translate(SUBSCRIPT) for s in range(n)])
    ax.set_yticks([t + 0.5 for t in range(n)], [f"q{t}".translate(SUBSCRIPT) for t in range(n)])
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("column = key position s (who is attended to)")
    ax.set_ylabel("row = query position t (who is attending)")
    ax.set_title("scores after the causal mask: the future (s > t, shaded) is −∞,\nthen a softmax along each row",
                 y=-0.16)
    ax.set_aspect("equal")
    return ax


STREAM_X, BRANCH_X = 2.0, 5.2  # the residual stream's column, the sub-layers' column


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], lw: float = 2) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", lw=lw, color="black"))


def _box(ax, y: float, text: str, color: str) -> None:
    ax.add_patch(FancyBboxPatch((BRANCH_X - 1.6, y - 0.35), 3.2, 0.7, boxstyle="round,pad=0.05", facecolor=color,
                                edgecolor="black", lw=1.5))
    ax.text(BRANCH_X, y, text, ha="center", va="center", fontsize=13)


def _branch(ax, y_split: float, norm: str, sublayer: str, color: str, code: str) -> None:
    """One sub-layer: leave the stream, normalise, transform, and add the result back at y_split + 3."""
    y_add = y_split + 3.0
    ax.plot([STREAM_X, BRANCH_X, BRANCH_X], [y_split, y_split, y_split + 0.55], color="black", lw=2)
    _arrow(ax, (BRANCH_X, y_split + 0.5), (BRANCH_X, y_split + 0.6))
    _box(ax, y_split + 0.95, norm, "#fff2cc")
    _arrow(ax, (BRANCH_X, y_split + 1.35), (BRANCH_X, y_split + 1.65))
    _box(ax, y_split + 2.0, sublayer, color)
    ax.plot([BRANCH_X, BRANCH_X], [y_split + 2.4, y_add], color="black", lw=2)
    _arrow(ax, (BRANCH_X, y_add), (STREAM_X + 0.25, y_add))
    ax.add_patch(Circle((STREAM_X, y_add), 0.25, facecolor="white", edgecolor="black", lw=2, zorder=3))
    ax.text(STREAM_X, y_add, "+", ha="center", va="center", fontsize=18, zorder=4)
    ax.text(BRANCH_X + 1.9, y_add, code, ha="left", va="center", fontsize=13, family="monospace")


def draw_pre_norm_block(ax=None):
    """GPT-2's pre-LayerNorm block: x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)), the stream drawn straight."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 8.5))
    ax.add_patch(FancyBboxPatch((0.9, 0.45), 9.0, 7.05, boxstyle="round,pad=0.1", facecolor="none", edgecolor="gray",
                                lw=1.5, ls="--"))
    ax.text(9.8, 0.75, "× n_layer", ha="right", va="bottom", fontsize=14, color="gray")
    _arrow(ax, (STREAM_X, -0.3), (STREAM_X, 8.3), lw=4)  # the residual stream: a straight path from input to output
    ax.text(STREAM_X - 0.25, 2.3, "residual stream", rotation=90, ha="right", va="center", fontsize=14,
            color="#1f4e79")
    ax.text(STREAM_X, -0.45, "x (B, T, C): embeddings, or the previous block's output", ha="left", va="top",
            fontsize=13)
    ax.text(STREAM_X, 8.45, "to the next block (after the last one: ln_f, lm_head)", ha="left", va="bottom",
            fontsize=13)
    _branch(ax, 0.8, "LayerNorm  ln_1", "causal self-attention  attn", "#dae8fc", "x = x + attn(ln_1(x))")
    _branch(ax, 4.2, "LayerNorm  ln_2", "MLP  (c_fc, GELU, c_proj)", "#d5e8d4", "x = x + mlp(ln_2(x))")
    ax.set_xlim(0, 10.2)
    ax.set_ylim(-1.1, 9.0)
    ax.axis("off")
    ax.set_title("a pre-LayerNorm transformer block (GPT-2)")
    return ax


# L = tanh(a·b + c): each node's position, and the node it feeds
GRAPH = {"a": ((0, 2.2), "e"), "b": ((0, 1.0), "e"), "c": ((2.6, -0.2), "d"), "e = a·b": ((2.6, 1.6), "d"),
         "d = e + c": ((5.2, 0.7), "L"), "L = tanh(d)": ((7.8, 0.7), None)}


def draw_computation_graph(values: dict[str, tuple[float, float]], ax=None):
    """The graph of L = tanh(a·b + c) left to right: `values` maps each node's short name (a, b, c, e, d, L) to its
    (value, gradient ∂L/∂node) after a forward and a backward pass."""
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 4.8))
    short = {label: label.split(" ")[0] for label in GRAPH}
    for label, ((x, y), feeds) in GRAPH.items():
        data, grad = values[short[label]]
        ax.add_patch(FancyBboxPatch((x - 0.95, y - 0.42), 1.9, 0.84, boxstyle="round,pad=0.05",
                                    facecolor="#dae8fc" if feeds else "#d5e8d4", edgecolor="black", lw=1.5))
        ax.text(x, y + 0.18, label, ha="center", va="center", fontsize=13)
        ax.text(x, y - 0.2, f"value {data:.3f}\ngrad {grad:.3f}", ha="center", va="center", fontsize=11,
                family="monospace")
        if feeds:
            target = next(position for name, (position, _) in GRAPH.items() if short[name] == feeds)
            _arrow(ax, (x + 0.97, y), (target[0] - 0.97, target[1]))
    ax.text(3.9, 3.0, "forward: values, left to right    backward: grad = ∂L/∂node, right to left", ha="center",
            fontsize=13)
    ax.set_xlim(-1.1, 8.9)
    ax.set_ylim(-0.8, 3.3)
    ax.axis("off")
    return ax


def _draw_cache_step(ax, prompt_length: int, decoded: int) -> None:
    """One layer's keys and values after the prompt (blue) and `decoded` new tokens (the newest orange)."""
    total = prompt_length + decoded
    colours = ["tab:blue"] * prompt_length + ["tab:green"] * (decoded - 1) + ["tab:orange"]
    for row, name in ((1.0, "keys"), (0.0, "values")):
        for t in range(total):
            ax.add_patch(Rectangle((t, row), 0.9, 0.8, color=colours[t], alpha=0.85))
        ax.text(-0.2, row + 0.4, name, ha="right", va="center", fontsize=13)
    query_x = total - 1 + 0.45
    ax.add_patch(Rectangle((total - 1, 2.6), 0.9, 0.8, color="tab:orange"))
    ax.text(total - 0.55, 3.6, "new query", ha="center", va="bottom", fontsize=12)
    for t in range(total):  # the new query attends to every cached key
        ax.annotate("", xy=(t + 0.45, 1.85), xytext=(query_x, 2.6),
                    arrowprops=dict(arrowstyle="->", color="tab:orange", alpha=0.6, lw=1.2))
    ax.set_xlim(-1.6, prompt_length + 3.2)
    ax.set_ylim(-0.4, 4.3)
    ax.set_xticks([t + 0.45 for t in range(total)], [f"{t}" for t in range(total)], fontsize=12)
    ax.set_xlabel("position")
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"decode step {decoded}: cache of {total}", fontsize=13)


def draw_kv_cache(prompt_length: int = 4, steps: int = 3, axes=None):
    """The cache after each of the first `steps` decode steps, side by side: the prompt's keys and values written
    once (prefill), one pair appended per step, the step's query attending to all of them."""
    if axes is None:
        fig, axes = plt.subplots(1, steps, figsize=(5 * steps, 3.6))
    for step, ax in enumerate(axes, start=1):
        _draw_cache_step(ax, prompt_length, step)
    fig = axes[0].figure
    fig.legend(handles=[Rectangle((0, 0), 1, 1, color=c) for c in ("tab:blue", "tab:green", "tab:orange")],
               labels=["prefill (the prompt, once)", "earlier decode steps", "appended this step"],
               loc="lower center", ncol=3, fontsize=12, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return axes


LORA_BOXES = [((0.3, 0.6), 1.0, 2.2, "x\n(in)", "white"), ((2.2, 0.6), 2.2, 2.2, "W\nout × in\nfrozen", "lightgray"),
              ((5.3, 1.9), 1.5, 0.6, "A: r × in", "tab:orange"), ((5.3, 0.6), 0.6, 1.0, "B:\nout\n× r", "tab:orange"),
              ((8.4, 0.6), 1.2, 2.2, "h\n(out)", "white")]


def draw_lora(ax=None):
    """h = W·x + (α/r)·B·(A·x): x feeds the frozen W (grey) and the trainable A then B (orange); both paths sum."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.4))
    for (x, y), width, height, label, colour in LORA_BOXES:
        ax.add_patch(Rectangle((x, y), width, height, facecolor=colour, edgecolor="black", alpha=0.8))
        ax.text(x + width / 2, y + height / 2, label, ha="center", va="center", fontsize=12)
    for start, end in (((1.3, 1.7), (2.2, 1.7)), ((1.3, 2.4), (5.3, 2.2)), ((4.4, 1.7), (8.4, 1.7)),
                       ((5.9, 1.1), (8.4, 1.1)), ((5.6, 1.9), (5.6, 1.6))):  # the last: A·x feeds B
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->"))
    ax.text(7.1, 1.2, "× α/r", fontsize=12)
    ax.text(7.1, 0.25, "h = W·x + (α/r)·B·(A·x);  B = 0 at the start", fontsize=12, ha="center")
    ax.set_title("LoRA: a frozen matrix and a trainable low-rank path beside it")
    ax.set(xlim=(0, 10), ylim=(0, 3.4))
    ax.axis("off")
    return ax


def draw_tool_tokens(pieces: list[str], by_tool: list[bool], tool: str = "the tool", ax=None):
    """Each token's text in a box, blue where the model writes it, green where `tool` does; spaces shown as ␣."""
    if ax is None:
        _, ax = plt.subplots(figsize=(14, 1.6))
    x = 0.0
    for piece, written_by_tool in zip(pieces, by_tool):
        width = 0.25 + 0.14 * len(piece)
        ax.add_patch(Rectangle((x, 0), width - 0.05, 1, color="tab:green" if written_by_tool else "tab:blue",
                               alpha=0.35))
        ax.text(x + (width - 0.05) / 2, 0.5, piece.replace(" ", "␣"), ha="center", va="center", fontsize=10)
        x += width
    ax.set(xlim=(0, x), ylim=(0, 1), title=f"token by token: the model's to write (blue), {tool}'s (green)")
    ax.axis("off")
    return ax
