"""serve/openai_api.py's TokenText on a real tokenizer (tiny-random's byte-level BPE): the text of each
generated token, for log-probs and stream chunks, when characters span several tokens and when a stop
string cut the text short."""

from __future__ import annotations

import pytest

from reflectrm.engines.base import Completion
from reflectrm.models import load_tokenizer, resolve_model
from serve.openai_api import TokenText


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(resolve_model("tiny-random"))


def completion(tok, text: str, generated: str | None = None) -> Completion:
    """A completion whose tokens are `generated` (default: `text`) and whose text is `text`."""
    ids = tok(generated if generated is not None else text, add_special_tokens=False)["input_ids"]
    return Completion(text, tuple(ids), tuple([-0.5] * len(ids)), "stop")


def test_pieces_of_multibyte_characters_join_to_the_text(tok):
    text = "naïve café: 🙂 日本語 — ok"
    c = completion(tok, text)
    pieces = TokenText(tok).pieces(c)
    assert len(pieces) == len(c.token_ids) and "".join(pieces) == text
    assert "" in pieces  # a token that holds only part of a character gives no text of its own
    assert not any("\ufffd" in p for p in pieces)  # never half a character
    emoji = next(i for i, p in enumerate(pieces) if "🙂" in p)
    assert pieces[emoji - 1] == ""  # the emoji's earlier bytes came as pieces with no text
    for k in range(1, len(pieces) + 1):  # each prefix of pieces is the decoded prefix of tokens, where whole
        decoded = tok.decode(list(c.token_ids[:k]), skip_special_tokens=True)
        if not decoded.endswith("\ufffd"):
            assert "".join(pieces[:k]) == decoded


def test_pieces_past_a_stop_string_are_empty(tok):
    full = "<Analysis>fine</Analysis><Result>Response 1 is better than Response 2</Result> and more"
    text = full[: full.index("</Result>")]  # the engine cut its text at the stop string; the tokens go on
    c = completion(tok, text, generated=full)
    pieces = TokenText(tok).pieces(c)
    assert len(pieces) == len(c.token_ids) and "".join(pieces) == text
    last = max(i for i, p in enumerate(pieces) if p)
    assert last < len(pieces) - 1 and all(p == "" for p in pieces[last + 1 :])  # nothing after the cut


def test_pieces_that_do_not_line_up_put_the_whole_text_in_the_first(tok):
    c = completion(tok, "a text the tokens never spelled", generated="something else entirely")
    pieces = TokenText(tok).pieces(c)
    assert pieces[0] == c.text and all(p == "" for p in pieces[1:]) and len(pieces) == len(c.token_ids)


def test_token_entries_carry_their_utf8_bytes(tok):
    text = TokenText(tok)
    (tid,) = tok("ok", add_special_tokens=False)["input_ids"][:1]
    entry = text.entry(tid, -0.25)
    assert entry["logprob"] == -0.25 and bytes(entry["bytes"]).decode("utf-8") == entry["token"]
