"""ChatSession (context fitting that keeps the system prompt, streamed replies equal to plain generation) and the
`python -m tinylm.chat` REPL run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.chat_fixtures import save_tiny_chat_checkpoint, tiny_chat_model
from tests.helpers import REPO
from tinylm.cli import COMMANDS
from tinylm.cli.chat import CHAT_MODEL_COMMAND
from tinylm.generate.decode import generate_batch
from tinylm.serve.session import ChatSession, ContextOverflow
from tinylm.tokenizers.chat_template import ChatFormatError, ChatTemplate
from tinylm.tokenizers.gpt2 import BPETokenizer


def test_a_reply_is_the_greedy_continuation_of_the_rendered_conversation():
    model, tokenizer = tiny_chat_model()
    session = ChatSession(model, tokenizer, max_new_tokens=12, temperature=0)
    expected_prompt = ChatTemplate(tokenizer).render_prompt([*session.system, {"role": "user", "content": "Hello!"}])
    expected = generate_batch(model, [expected_prompt], 12, stop_tokens=session.template.stop_tokens, temperature=0)[0]
    reply = "".join(session.reply("Hello!"))
    assert reply == tokenizer.decode(expected)
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant"]
    assert session.messages[-1]["content"] == reply.strip()
    session.reset()
    assert session.messages == session.system


def test_old_exchanges_are_dropped_first_and_the_system_prompt_stays():
    model, tokenizer = tiny_chat_model(block_size=64)
    session = ChatSession(model, tokenizer, system_prompt="Be brief.", max_new_tokens=16, temperature=0)
    for question in ("Name a color.", "What is the capital of France?", "Thank you, goodbye."):
        session.messages += [{"role": "user", "content": question}, {"role": "assistant", "content": "Paris is red."}]
    messages, ids = session.fit_to_context("Hello!")
    assert len(ids) + 16 <= 64
    assert messages[0] == {"role": "system", "content": "Be brief."} and messages[-1]["content"] == "Hello!"
    kept = messages[1:-1]
    assert 0 < len(kept) < 6 and kept == session.messages[-len(kept):]  # the newest exchanges, whole
    assert len(ChatTemplate(tokenizer).render_prompt([messages[0], *session.messages[-len(kept) - 2:],
                                                      messages[-1]])) + 16 > 64  # one more would not fit


def test_a_reply_also_ends_at_im_start_which_never_shows():
    """A model that forgets to close its turn opens the next one with <|im_start|>: the reply ends there."""
    model, tokenizer = tiny_chat_model()
    template = ChatTemplate(tokenizer)
    with torch.no_grad():  # the last hidden state is `direction` whatever the input, and <|im_start|> wins the argmax
        direction = torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(0))
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(direction)
        model.lm_head.weight[template.im_start] = 10 * direction
    session = ChatSession(model, tokenizer, max_new_tokens=12, temperature=0)
    assert "".join(session.reply("Hello!")) == ""
    assert session.messages[-1] == {"role": "assistant", "content": ""}


def test_a_message_too_long_for_the_context_is_refused_and_changes_nothing():
    model, tokenizer = tiny_chat_model(block_size=64)
    session = ChatSession(model, tokenizer, max_new_tokens=16, temperature=0)
    before = list(session.messages)
    with pytest.raises(ContextOverflow, match="too long.*context of 64"):
        session.reply("Hello! " * 30)
    assert session.messages == before
    with pytest.raises(ValueError, match="max_new_tokens must be between"):
        ChatSession(model, tokenizer, max_new_tokens=64)
    with pytest.raises(ChatFormatError, match="fine-tune it first"):
        ChatSession(model, BPETokenizer("gpt2"))


def run_chat(*args, stdin: str):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tinylm.chat", *map(str, args)], cwd=REPO, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_the_repl_streams_replies_resets_and_refuses_long_messages(tmp_path):
    ckpt = save_tiny_chat_checkpoint(tmp_path / "chat.pt")
    result = run_chat("--ckpt", ckpt, "--temperature", "0", "--max-new-tokens", "8",
                      stdin="Hello!\n/reset\n" + "Hello! " * 30 + "\nName a color.\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"chatting with {ckpt} (context 64 tokens")
    assert result.stdout.count("bot> ") == 2 and "(a new conversation)" in result.stdout
    assert "(not sent: this message is too long" in result.stdout


def test_a_checkpoint_without_chat_tokens_is_a_one_line_error(tmp_path):
    ckpt = save_tiny_chat_checkpoint(tmp_path / "plain.pt", tokenizer=BPETokenizer("gpt2"))
    result = run_chat("--ckpt", ckpt, stdin="Hello!\n")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: this model's tokenizer has no chat tokens, so it was not fine-tuned for chat; fine-tune it first: "
        "python -m tinylm.sft --base CHECKPOINT --out DIR"]


def test_no_chat_model_at_ckpt_is_an_error_that_names_the_command_that_makes_one(tmp_path):
    """`chat --ckpt runs/chat-cpu` with no run there advised `python -m tinylm.train`, which makes no chat model."""
    for missing in (tmp_path / "runs" / "sft-cpu", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        result = run_chat("--ckpt", missing, stdin="Hello!\n")
        assert result.returncode == 1 and result.stderr == (
            f"error: no chat model at {missing}; make one with {CHAT_MODEL_COMMAND} (its run folder is the --ckpt to "
            "give), or check the path\n")
    assert CHAT_MODEL_COMMAND.startswith("python -m tinylm.") and "train" not in CHAT_MODEL_COMMAND


def test_the_chat_model_command_is_one_of_the_commands():
    assert CHAT_MODEL_COMMAND.removeprefix("python -m tinylm.") in COMMANDS
