"""The playground, the attention viewer and the chat box: the widget wiring, the printed fallback, and the attention
maps."""

import html
import math

import pytest
import torch

from tests.chat_fixtures import tiny_chat_model
from tinylm.course.playground import (
    ChatPanel,
    Playground,
    attention_maps,
    attention_viewer,
    chat_box,
    playground,
    widgets_enabled,
)
from tinylm.generate.stream import generate_text
from tinylm.serve.session import ChatSession
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.checkpoint import model_checkpoint, save_checkpoint

TOKENIZER = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz .,;:!?'\n"))  # 35 characters; the tiny model has 37 ids


def test_widgets_need_a_kernel_and_can_be_switched_off(monkeypatch):
    import IPython

    class KernelShell:
        kernel = object()

    monkeypatch.delenv("TINYLM_WIDGETS", raising=False)
    assert not widgets_enabled()  # pytest is no Jupyter kernel
    monkeypatch.setattr(IPython, "get_ipython", lambda: KernelShell())
    assert widgets_enabled()
    monkeypatch.setenv("TINYLM_WIDGETS", "0")
    assert not widgets_enabled()


def test_without_widgets_the_playground_prints_one_generation(make_model, capsys):
    model = make_model()
    result = playground(model, TOKENIZER, "to be", max_new_tokens=12, temperature=0.9, top_k=5, seed=3)
    expected = generate_text(model, TOKENIZER, "to be", 12, temperature=0.9, top_k=5, seed=3)
    printed = capsys.readouterr().out
    assert expected in printed and "tokens/s" in printed
    assert "to be" + result["text"] == expected and result["tokens"] == 12
    assert result["stop"] == "stopped at the length limit, max_new_tokens=12" and result["stop"] in printed


def test_the_playground_says_when_a_stop_token_ended_the_text(make_model):
    model = make_model()
    unlimited = playground(model, TOKENIZER, "to be", max_new_tokens=30, temperature=0)
    first = TOKENIZER.encode(unlimited["text"][0])[0]

    class WithStop(CharTokenizer):  # a tokenizer whose end-of-text token is the model's first greedy token
        eot_token = first

    result = playground(model, WithStop(TOKENIZER.chars), "to be", max_new_tokens=30, temperature=0)
    assert result["text"] == "" and result["stop"] == f"stopped at {unlimited['text'][0]}"


def test_the_playground_opens_on_a_run_folder(make_model, tmp_path, capsys):
    model = make_model()
    save_checkpoint(tmp_path / "best.pt", model_checkpoint(model, TOKENIZER))
    result = playground(tmp_path, prompt="a", max_new_tokens=5, temperature=0)
    assert result["text"] == generate_text(model, TOKENIZER, "a", 5, temperature=0)[1:]
    with pytest.raises(ValueError, match="pass the model's tokenizer"):
        playground(model)


def test_the_generate_button_streams_into_the_output_with_the_sliders_settings(make_model):
    pytest.importorskip("ipywidgets")
    model = make_model()
    panel = Playground(model, TOKENIZER, "the king", dict(max_new_tokens=20, temperature=1.0, top_k=None, top_p=1.0,
                                                          seed=0))
    panel.temperature.value, panel.top_k.value, panel.top_p.value = 0.7, 8, 0.9
    panel.max_new_tokens.value, panel.seed.value = 15, 11
    seen = []
    panel.output.observe(lambda change: seen.append(change["new"]), names="value")
    panel.button.click()
    expected = generate_text(model, TOKENIZER, "the king", 15, temperature=0.7, top_k=8, top_p=0.9, seed=11)
    assert panel.output.value == expected
    assert len(seen) > 2  # the text arrived piece by piece, not at the end
    assert "15 tokens" in panel.speed.value and "tokens/s" in panel.speed.value
    assert panel.speed.value.endswith("stopped at the length limit, max_new_tokens=15")
    assert not panel.button.disabled


def test_a_bad_prompt_shows_its_error_in_the_panel(make_model):
    pytest.importorskip("ipywidgets")
    settings = dict(max_new_tokens=5, temperature=1.0, top_k=None, top_p=1.0, seed=0)
    panel = Playground(make_model(), TOKENIZER, "THE KING", settings)  # upper case is not in the vocabulary
    assert panel.generate() is None
    assert panel.speed.value.startswith("error:") and not panel.button.disabled


def test_attention_maps_are_causal_rows_of_probabilities(make_model):
    model = make_model(n_layer=3, n_head=4, n_embd=32)
    idx = torch.randint(0, 37, (1, 11), generator=torch.Generator().manual_seed(0))
    maps = attention_maps(model, idx)
    assert maps.shape == (3, 4, 11, 11)
    torch.testing.assert_close(maps.sum(-1), torch.ones(3, 4, 11))
    assert torch.all(maps.triu(diagonal=1) == 0)  # nobody reads the future
    assert torch.all(maps[..., 0, 0] == 1)  # the first position can only read itself


def test_attention_maps_match_a_hand_computation_of_the_first_layer(make_model):
    model = make_model().eval()
    idx = torch.randint(0, 37, (1, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(9))
        q, k, _ = model.transformer.h[0].attn.c_attn(model.transformer.h[0].ln_1(x)).split(32, dim=2)
        q, k = (t.view(1, 9, 2, 16).transpose(1, 2) for t in (q, k))  # (1, 2 heads, 9, 16)
        scores = (q @ k.transpose(-2, -1) / math.sqrt(16)).masked_fill(torch.ones(9, 9).triu(1).bool(), -math.inf)
    torch.testing.assert_close(attention_maps(model, idx)[0], torch.softmax(scores, -1)[0])


def test_without_widgets_the_viewer_prints_what_each_position_reads(make_model, capsys):
    model = make_model()
    weights = attention_viewer(model, TOKENIZER, "to be or", layer=1, head=1)
    printed = capsys.readouterr().out
    assert weights.shape == (2, 2, 8, 8) and printed.startswith("layer 1, head 1:")
    assert "  0        t reads t@0 1.00" in printed


@pytest.mark.parametrize("prompt, kwargs, message", [("", {}, "non-empty prompt"), ("a" * 17, {}, "context is 16"),
                                                     ("ab", dict(layer=2), r"layer must be in \[0, 2\)"),
                                                     ("ab", dict(head=-1), r"head in \[0, 2\)")])
def test_viewer_arguments_are_checked(make_model, prompt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        attention_viewer(make_model(), TOKENIZER, prompt, **kwargs)


def test_the_chat_box_sends_on_enter_streams_the_reply_and_starts_over(monkeypatch):
    pytest.importorskip("ipywidgets")
    model, tokenizer = tiny_chat_model()
    expected = "".join(ChatSession(model, tokenizer, max_new_tokens=12, temperature=0).reply("Hello!"))
    panel = ChatPanel(ChatSession(model, tokenizer, max_new_tokens=12, temperature=0))
    seen = []
    panel.history.observe(lambda change: seen.append(change["new"]), names="value")
    panel.text.value = "Hello!"  # what pressing Enter in the box does
    assert panel.log == [("you", "Hello!"), ("bot", expected.strip())] and panel.text.value == ""
    assert len(seen) > 2 and "▌" in seen[0]  # the reply arrived piece by piece, with a cursor
    assert html.escape(expected.strip()) in panel.history.value
    assert panel.status.value == "2 of the 2 messages are in the model's context"
    panel.text.value = "Paris? " * 40  # longer than the context: refused, nothing added
    assert panel.status.value.startswith("not sent: this message is too long") and len(panel.log) == 2
    panel.new_chat.click()
    assert panel.log == [] and panel.session.messages == panel.session.system and panel.history.value == ""


def test_without_widgets_the_chat_box_prints_a_scripted_exchange(capsys):
    model, tokenizer = tiny_chat_model()
    expected = "".join(ChatSession(model, tokenizer, max_new_tokens=12, temperature=0).reply("Hello!"))
    session = chat_box(ChatSession(model, tokenizer, max_new_tokens=12, temperature=0), questions=("Hello!",))
    assert f"you> Hello!\nbot> {expected}\n" in capsys.readouterr().out
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant"]
