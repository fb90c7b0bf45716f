"""The shared request validator (reflectrm.requests): what every route and integration accepts as a pair, and
the field and fix it names for everything else."""

from __future__ import annotations

import pytest

from reflectrm.records import Message
from reflectrm.requests import InvalidRequest, pair_from_request

USER = [{"role": "user", "content": "2+2?"}]


@pytest.mark.parametrize(
    "prompt, messages, r1, r2, context",
    [
        ("2+2?", None, "4", "5", (Message("user", "2+2?"),)),
        (None, USER, "4", "5", (Message("user", "2+2?"),)),
        (
            None,
            [{"role": "system", "content": "Be brief."}, *USER],
            "4",
            " 5 ",
            (Message("system", "Be brief."), Message("user", "2+2?")),
        ),
        (None, [Message("user", "2+2?")], "4", "5", (Message("user", "2+2?"),)),  # records pass through
    ],
    ids=["prompt", "messages", "system-turn", "message-records"],
)
def test_valid_requests_make_the_pair(prompt, messages, r1, r2, context):
    pair = pair_from_request(prompt, messages, r1, r2, pair_id="k")
    assert (pair.id, pair.context, pair.response_1, pair.response_2, pair.label) == ("k", context, r1, r2, None)


@pytest.mark.parametrize(
    "prompt, messages, r1, r2, field, words",
    [
        (None, None, "4", "5", "prompt", "exactly one of prompt and messages"),
        ("2+2?", USER, "4", "5", "prompt", "exactly one of prompt and messages"),
        ("   ", None, "4", "5", "prompt", "prompt is empty"),
        (7, None, "4", "5", "prompt", "prompt is empty"),
        (None, "2+2?", "4", "5", "messages", "must be a list"),
        (None, [], "4", "5", "messages", ""),
        (None, [{"role": "assistant", "content": "hi"}], "4", "5", "messages", "the last message must be the user's"),
        (None, [{"role": "user"}], "4", "5", "messages", ""),
        (None, [{"role": "wizard", "content": "x"}], "4", "5", "messages", ""),
        ("2+2?", None, "", "5", "response_1", "missing or empty"),
        ("2+2?", None, "4", "  ", "response_2", "missing or empty"),
        ("2+2?", None, None, "5", "response_1", "missing or empty"),
        ("2+2?", None, "4", 5, "response_2", "missing or empty"),
    ],
    ids=[
        "neither",
        "both",
        "blank-prompt",
        "prompt-not-text",
        "messages-not-list",
        "messages-empty",
        "last-not-user",
        "message-without-content",
        "unknown-role",
        "empty-response-1",
        "blank-response-2",
        "missing-response-1",
        "response-2-not-text",
    ],
)
def test_bad_requests_name_the_field_and_the_fix(prompt, messages, r1, r2, field, words):
    with pytest.raises(InvalidRequest) as err:
        pair_from_request(prompt, messages, r1, r2)
    assert err.value.field == field and words in err.value.message and err.value.fix
