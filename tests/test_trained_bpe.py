"""bpe:N, the byte-level BPE trained on your own text (tinylm.tokenizers.hf_bpe): exact round trips on any UTF-8,
special tokens never made from text, the saved form, and the chat tokens a chat model adds to it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tinylm.config import GPTConfig
from tinylm.download import mirror_dir
from tinylm.errors import InputError
from tinylm.model.gpt import GPT
from tinylm.posttrain.vocab import add_chat_tokens
from tinylm.tokenizers import EOT
from tinylm.tokenizers.chat_template import ChatTemplate, chat_token_ids
from tinylm.tokenizers.hf_bpe import TrainedBPETokenizer
from tinylm.tokenizers.saved import tokenizer_from_dict

# Text no one here wrote: the opening of the Universal Declaration of Human Rights in several scripts (public
# domain translations), the mirror's Shakespeare, and emoji with skin tones, flags and joiners.
UDHR = [
    "All human beings are born free and equal in dignity and rights.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "Όλοι οι άνθρωποι γεννιούνται ελεύθεροι και ίσοι στην αξιοπρέπεια και τα δικαιώματα.",
    "Все люди рождаются свободными и равными в своем достоинстве и правах.",
    "人人生而自由，在尊严和权利上一律平等。",
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。",
    "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق.",
    "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता और समानता प्राप्त है।",
    "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다.",
]
EMOJI = "👍🏽 🇯🇵 👩‍👩‍👧 ❤️ 🙂"


@pytest.fixture(scope="module")
def trained():
    shakespeare = (mirror_dir() / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:200_000]
    return TrainedBPETokenizer.train([shakespeare, *UDHR * 20], vocab_size=600, show_progress=False)


@pytest.mark.parametrize("text", [*UDHR, EMOJI, "tabs\tand\r\nCRLF\n\n\n  spaces  ", "e\u0301 \u200b\x00\x7f",
                                  "ROMEO:\nBut, soft! what light through yonder window breaks?", ""])
def test_any_utf8_text_comes_back_exactly(trained, text):
    ids = trained.encode(text)
    assert trained.decode(ids) == text
    assert all(0 <= i < trained.vocab_size for i in ids)


def test_a_script_it_never_saw_still_encodes_byte_by_byte(trained):
    text = "ᚠᚢᚦᚨᚱᚲ ⵜⴰⵎⴰⵣⵉⵖⵜ"  # runes and Tifinagh: in no training text, so bytes (3 per character here)
    ids = trained.encode(text)
    assert trained.decode(ids) == text and len(ids) >= len(text.replace(" ", "")) * 2


def test_it_learns_merges_from_its_text(trained):
    assert trained.vocab_size == 600
    assert len(trained.encode(" the")) == 1  # the commonest word of its English text is one token
    udhr = TrainedBPETokenizer.train(UDHR * 20, vocab_size=2000, show_progress=False)
    assert len(udhr.encode(UDHR[4])) < len(UDHR[4]) / 2  # fewer tokens than Chinese characters (3 bytes each)


def test_special_tokens_are_never_made_from_text(trained):
    text = f"a{EOT}b<|im_start|>user\n<|im_end|>"
    chat = trained.with_chat_tokens(["<|im_start|>", "<|im_end|>", "<|pad|>"])
    for tokenizer in (trained, chat):
        ids = tokenizer.encode(text)
        specials = {tokenizer.eot_token, *(chat_token_ids(tokenizer) or {}).values()}
        assert not specials & set(ids) and tokenizer.decode(ids) == text
    assert trained.decode([trained.eot_token]) == EOT


def test_the_saved_form_is_the_tokenizers_json_and_rebuilds_the_same_tokenizer(trained):
    saved = trained.to_dict()
    assert saved["kind"] == "trained_bpe" and json.loads(saved["json"])["model"]["type"] == "BPE"
    rebuilt = tokenizer_from_dict(json.loads(json.dumps(saved)))
    text = " ".join(UDHR) + EMOJI
    assert rebuilt.encode(text) == trained.encode(text) and rebuilt.eot_token == trained.eot_token


@pytest.mark.parametrize("size, message", [(100, "257 to 65,536 tokens"), (70_000, "257 to 65,536 tokens")])
def test_an_impossible_size_is_refused(size, message):
    with pytest.raises(InputError, match=message):
        TrainedBPETokenizer.train(["some text"], vocab_size=size, show_progress=False)


def test_a_chat_model_grows_by_the_chat_tokens_and_keeps_its_logits(trained):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=640, n_layer=1, n_head=2, n_embd=16, block_size=64)).eval()
    ids = torch.tensor([trained.encode("ROMEO: wherefore")])
    before = model(ids)[0][..., : trained.vocab_size]
    grown, chat = add_chat_tokens(model, trained)
    ids_of = chat_token_ids(chat)
    assert ids_of == {"<|im_start|>": 600, "<|im_end|>": 601, "<|pad|>": 602}
    assert torch.allclose(grown.eval()(ids)[0][..., : trained.vocab_size], before, atol=1e-5)
    rendered = ChatTemplate(chat).render([{"role": "user", "content": "Ελληνικά?"},
                                          {"role": "assistant", "content": "Ναι 🙂"}])
    assert rendered.ids.count(601) == 2 and chat.decode(rendered.ids).endswith("Ναι 🙂<|im_end|>\n")
    with torch.no_grad():
        assert not math.isnan(float(grown(torch.tensor([rendered.ids]))[0].sum()))
