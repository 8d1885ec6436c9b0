"""Notebook tools for looking at a trained model: `playground` (a prompt, the samplers' settings, a streamed
continuation), `attention_viewer` (one head's attention over the prompt as a heatmap, layer and head picked) and
`chat_box` (a conversation with a tinylm.serve.session.ChatSession, the reply streamed).

They use widgets in a Jupyter kernel with ipywidgets installed and `TINYLM_WIDGETS` not `0`; elsewhere (a terminal, a
script, CI's nbval run, the committed notebooks' outputs) they do their work once with the given settings and print
or draw the result, because a kernel cannot tell whether a front end is attached to draw widgets.
"""

from __future__ import annotations

import html
import os
import sys
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..errors import InputError
from ..generate.stream import stream
from ..runtime import evaluating, model_device, resolve_device
from ..serve.session import ChatSession
from ..tokenizers.chat_template import ContextOverflow
from ..train.checkpoint import load_model
from .plotting import in_notebook


def widgets_enabled() -> bool:
    if os.environ.get("TINYLM_WIDGETS", "1") == "0":
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show_widget(widget) -> None:
    """Display an ipywidgets widget, in Colab too (which draws ipywidgets 8 only through its own widget manager)."""
    from IPython.display import display

    if "google.colab" in sys.modules:  # Colab draws ipywidgets 8 only through its custom widget manager
        from google.colab import output

        output.enable_custom_widget_manager()
    display(widget)


def _model_and_tokenizer(model, tokenizer):
    """Accept a model and its tokenizer, or a checkpoint path / run folder."""
    if isinstance(model, torch.nn.Module):
        if tokenizer is None:
            raise InputError("pass the model's tokenizer too (or a checkpoint, which carries its own)")
        return model, tokenizer
    loaded, loaded_tokenizer, _ = load_model(model, resolve_device())
    if loaded_tokenizer is None and tokenizer is None:
        raise InputError(f"{model} carries no tokenizer; pass one with tokenizer=")
    return loaded, tokenizer or loaded_tokenizer


def run_generation(model, tokenizer, prompt: str, on_text=None, **settings) -> dict:
    """Generate once, handing each text piece to on_text(piece) as it comes; returns text, tokens, speed, and why
    it stopped (`stop`: a stop token, a stop string or the length limit, in words)."""
    start = time.perf_counter()
    text_stream = stream(model, tokenizer, prompt, **settings)
    pieces = []
    for piece in text_stream:
        pieces.append(piece)
        if on_text is not None:
            on_text(piece)
    seconds = time.perf_counter() - start
    tokens = len(text_stream.new_ids)
    return {"text": "".join(pieces), "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / max(seconds, 1e-9),
            "stop": text_stream.stop_description}


def _speed_line(result: dict) -> str:
    return (f"{result['tokens']} tokens in {result['seconds']:.2f} s ({result['tokens_per_s']:,.0f} tokens/s); "
            f"{result['stop']}")


class Playground:
    """The widgets and their wiring, starting from `settings` (run_generation's: max_new_tokens, temperature, top_k,
    top_p, seed); `playground()` builds and shows one."""

    def __init__(self, model, tokenizer, prompt: str, settings: dict):
        import ipywidgets as w

        self.model, self.tokenizer = model, tokenizer
        slider = dict(continuous_update=False, style={"description_width": "initial"})
        self.prompt = w.Textarea(value=prompt, description="Prompt", layout=w.Layout(width="100%", height="4em"))
        self.temperature = w.FloatSlider(value=settings["temperature"], min=0, max=2, step=0.05,
                                         description="temperature", **slider)
        self.top_k = w.IntSlider(value=settings["top_k"] or 0, min=0, max=min(tokenizer.vocab_size, 200),
                                 description="top-k (0: off)", **slider)
        self.top_p = w.FloatSlider(value=settings["top_p"], min=0.05, max=1, step=0.05, description="top-p", **slider)
        self.max_new_tokens = w.IntSlider(value=settings["max_new_tokens"], min=1, max=1000, description="max tokens",
                                          **slider)
        self.seed = w.IntText(value=settings["seed"], description="seed", layout=w.Layout(width="12em"))
        self.button = w.Button(description="Generate", button_style="primary", icon="play")
        self.output = w.Textarea(layout=w.Layout(width="100%", height="16em"))
        self.speed = w.Label()
        self.button.on_click(lambda _: self.generate())
        self.widget = w.VBox([
            self.prompt,
            w.HBox([self.temperature, self.top_k]),
            w.HBox([self.top_p, self.max_new_tokens]),
            w.HBox([self.seed, self.button, self.speed]),
            self.output,
        ])

    def settings(self) -> dict:
        return dict(max_new_tokens=self.max_new_tokens.value, temperature=self.temperature.value,
                    top_k=self.top_k.value or None, top_p=self.top_p.value, seed=self.seed.value)

    def generate(self) -> dict | None:
        """Run one generation into the output area (what the button does); errors show in the speed label."""
        self.button.disabled = True
        self.output.value = self.prompt.value
        self.speed.value = "generating..."

        def show(piece: str) -> None:
            self.output.value += piece

        try:
            result = run_generation(self.model, self.tokenizer, self.prompt.value, on_text=show, **self.settings())
        except ValueError as error:  # e.g. a character the tokenizer does not know: say so where the user looks
            self.speed.value = f"error: {error}"
            return None
        finally:
            self.button.disabled = False
        self.speed.value = _speed_line(result)
        return result


def playground(model, tokenizer=None, prompt: str = "", *, max_new_tokens: int = 200, temperature: float = 0.8,
               top_k: int = 0, top_p: float = 1.0, seed: int = 0):
    """Open the generation playground on a model (with its tokenizer) or on a checkpoint file / run folder.

    Returns the Playground (widgets), or, without a widget front end, the result dict of one generation.
    """
    model, tokenizer = _model_and_tokenizer(model, tokenizer)
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k or None, top_p=top_p, seed=seed)
    if widgets_enabled():
        panel = Playground(model, tokenizer, prompt, settings)
        show_widget(panel.widget)
        panel.generate()
        return panel
    print(f"[playground without widgets: one generation with {settings}]")
    print(prompt, end="", flush=True)
    result = run_generation(model, tokenizer, prompt, on_text=lambda piece: print(piece, end="", flush=True),
                            **settings)
    print(f"\n[{_speed_line(result)}]")
    return result


@torch.no_grad()
def attention_maps(model, idx: torch.Tensor) -> torch.Tensor:
    """idx (1, T) -> every layer's attention weights, (n_layer, n_head, T, T); row t is what position t reads."""
    maps = []

    def record(attention, inputs):  # a forward pre-hook on each layer's attention: inputs = (ln_1(x), rope, cache)
        maps.append(attention.attention_weights(*inputs[:2])[0])  # (nh, T, T)

    hooks = [block.attn.register_forward_pre_hook(record) for block in model.transformer.h]
    try:
        with evaluating(model):
            model(idx)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(maps)


def describe_attention(weights: torch.Tensor, labels: list[str], top: int = 3) -> str:
    """A (T, T) pattern as text: for each position, the positions it reads most."""
    lines = []
    for t, row in enumerate(weights):
        best = row[: t + 1].topk(min(top, t + 1))
        reads = ", ".join(f"{labels[k]}@{k} {w:.2f}" for w, k in zip(best.values.tolist(), best.indices.tolist()))
        lines.append(f"{t:3d} {labels[t]:>8s} reads {reads}")
    return "\n".join(lines)


def _token_label(tokenizer, token: int) -> str:
    return tokenizer.decode([token]).replace("\n", "⏎").replace(" ", "·") or "∅"


def plot_attention(weights: torch.Tensor, labels: list[str], title: str = "", ax=None):
    """A (T, T) attention pattern as a heatmap: rows attend (queries), columns are read (keys)."""
    if ax is None:
        size = min(2 + 0.28 * len(labels), 10)
        _, ax = plt.subplots(figsize=(size, size))
    values = weights.float().cpu().numpy()
    future = np.triu(np.ones_like(values, dtype=bool), k=1)
    colours = plt.get_cmap("viridis").copy()
    colours.set_bad("white")  # the future: masked, so the causal triangle shows as blank
    ax.imshow(np.ma.masked_where(future, values), cmap=colours, vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("key: the position read")
    ax.set_ylabel("query: the position attending")
    ax.set_title(title)
    return ax


def attention_viewer(model, tokenizer=None, prompt: str = "", *, layer: int = 0, head: int = 0):
    """Show the attention pattern of `layer`, `head` over the prompt; with widgets, pickers for both.

    Returns the (n_layer, n_head, T, T) weights.
    """
    model, tokenizer = _model_and_tokenizer(model, tokenizer)
    ids = tokenizer.encode(prompt)
    if not ids:
        raise InputError("the attention viewer needs a non-empty prompt")
    block_size = model.config.block_size
    if len(ids) > block_size:
        raise InputError(f"the prompt has {len(ids)} tokens but the model's context is {block_size}; shorten it")
    n_layer, n_head = model.config.n_layer, model.config.n_head
    if not (0 <= layer < n_layer and 0 <= head < n_head):
        raise InputError(f"layer must be in [0, {n_layer}) and head in [0, {n_head}), got layer {layer}, head {head}")
    weights = attention_maps(model, torch.tensor([ids], device=model_device(model)))
    labels = [_token_label(tokenizer, t) for t in ids]

    def draw(layer: int, head: int) -> None:
        plot_attention(weights[layer, head], labels, f"layer {layer}, head {head}")
        plt.show()

    if widgets_enabled():
        import ipywidgets as w

        pickers = dict(layer=w.IntSlider(value=layer, min=0, max=n_layer - 1, description="layer"),
                       head=w.IntSlider(value=head, min=0, max=n_head - 1, description="head"))
        show_widget(w.VBox([w.HBox(list(pickers.values())), w.interactive_output(draw, pickers)]))
    elif in_notebook():
        draw(layer, head)
    else:
        print(f"layer {layer}, head {head}:\n{describe_attention(weights[layer, head], labels)}")
    return weights


class ChatPanel:
    """A history, a text box (Enter sends) and a New chat button around a ChatSession; replies stream in. The history
    shows every turn, also those the model's context has dropped; the status line says how many it still holds."""

    def __init__(self, session: ChatSession):
        import ipywidgets as w

        self.session = session
        self.log: list[tuple[str, str]] = []  # (who, text) of every turn shown
        self.history = w.HTML(layout=w.Layout(width="100%", min_height="12em", border="1px solid #ccc",
                                              padding="0.5em"))
        self.text = w.Text(placeholder="Ask something and press Enter", continuous_update=False,
                           layout=w.Layout(width="80%"))
        self.new_chat = w.Button(description="New chat")
        self.status = w.Label()
        self.text.observe(lambda change: self.ask(change["new"]), "value")
        self.new_chat.on_click(lambda _: self.reset())
        self.widget = w.VBox([self.history, w.HBox([self.text, self.new_chat]), self.status])

    def draw(self, partial_reply: str | None = None) -> None:
        turns = self.log + ([("bot", partial_reply + " ▌")] if partial_reply is not None else [])
        self.history.value = "<br>".join(f"<b>{who}:</b> {html.escape(text)}" for who, text in turns)

    def ask(self, text: str) -> None:
        """Send `text` (the text box's change; clearing the box is a change too, and sends nothing)."""
        text = text.strip()
        if not text:
            return
        self.text.value = ""
        try:
            pieces = self.session.reply(text)
        except ContextOverflow as error:
            self.status.value = f"not sent: {error}"
            return
        self.log.append(("you", text))
        reply = ""
        for piece in pieces:
            reply += piece
            self.draw(reply)
        self.log.append(("bot", reply.strip()))
        self.draw()
        in_context = len(self.session.messages) - len(self.session.system)
        self.status.value = f"{in_context} of the {len(self.log)} messages are in the model's context"

    def reset(self) -> None:
        self.session.reset()
        self.log = []
        self.draw()
        self.status.value = "a new conversation"


def chat_box(session: ChatSession, questions: tuple[str, ...] = ("What is the capital of France?",)):
    """Open the chat box on `session`; returns the ChatPanel. Without a widget front end, ask `questions` in turn,
    print the exchange as it streams, and return the session."""
    if widgets_enabled():
        panel = ChatPanel(session)
        show_widget(panel.widget)
        return panel
    for question in questions:
        print(f"you> {question}\nbot> ", end="", flush=True)
        for piece in session.reply(question):
            print(piece, end="", flush=True)
        print()
    print(f"[no widget front end: a scripted exchange; {len(session.messages)} messages kept in the context]")
    return session
