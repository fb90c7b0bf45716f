"""What a caller sends to judge one pair, checked once for the CLI, the service and the integrations.

    pair = pair_from_request(prompt="...", messages=None, response_1="...", response_2="...")

A mistake raises `InvalidRequest(field, message, fix)`: the CLI prints it (exit 2), the service
answers it as a 422 JSON error body.
"""

from __future__ import annotations

from typing import Any, Sequence

from reflectrm.records import Message, PreferencePair, messages_from


class InvalidRequest(ValueError):
    """A request a caller can fix: which field, what is wrong, and how to fix it."""

    def __init__(self, field: str, message: str, fix: str):
        super().__init__(f"{field}: {message} ({fix})")
        self.field, self.message, self.fix = field, message, fix


def context_from(prompt: str | None, messages: Sequence[Any] | None) -> tuple[Message, ...]:
    """The conversation being judged: exactly one of a prompt string or a message list."""
    if (prompt is None) == (messages is None):
        raise InvalidRequest(
            "prompt",
            "give exactly one of prompt and messages",
            'send "prompt": "..." or "messages": [{"role": "user", "content": "..."}]',
        )
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest("prompt", "prompt is empty", "send the user prompt as a non-empty string")
        return (Message("user", prompt),)
    if not isinstance(messages, (list, tuple)):
        raise InvalidRequest(
            "messages", "messages must be a list of {role, content}", 'send [{"role": "user", "content": "..."}]'
        )
    try:
        context = messages_from(list(messages))
    except ValueError as err:
        raise InvalidRequest("messages", str(err), 'send [{"role": "user", "content": "..."}]') from None
    if context[-1].role != "user":
        raise InvalidRequest(
            "messages", "the last message must be the user's", "end messages with the user turn being answered"
        )
    return context


def pair_from_request(
    prompt: str | None, messages: Sequence[Any] | None, response_1: Any, response_2: Any, pair_id: str = ""
) -> PreferencePair:
    """A PreferencePair from a caller's fields, or InvalidRequest naming the field and the fix."""
    context = context_from(prompt, messages)
    for name, value in (("response_1", response_1), ("response_2", response_2)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(name, f"{name} is missing or empty", f"send {name} as a non-empty string")
    return PreferencePair(pair_id, context, response_1, response_2)
