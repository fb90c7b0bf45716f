"""Reading the wire formats of the tools our users already run (../shared/docs/protocols.md).

OpenRLHF's remote reward model sends `query[i]` = the chat-templated prompt + the response, and
`prompts[i]` = the templated prompt. We judge the response against a reference answer taken from
`labels[i]` (a string, or an object with `reference`): a pairwise judge needs something to compare
with, and the reference is what the dataset already carries. `score` = the judged probability that
the response beats the reference; `reward` = 2 * score - 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reflectrm.records import Message

# Chat templates whose turns we can read back: ChatML (Qwen, SmolLM), Llama 3, Gemma.
_TURN_PATTERNS = (
    re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|$)", re.S),
    re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|$)", re.S),
    re.compile(r"<start_of_turn>(\w+)\n(.*?)(?:<end_of_turn>|$)", re.S),
)
# Special tokens that may remain around plain text (BOS/EOS/end-of-turn markers of common tokenizers).
_SPECIAL = re.compile(
    r"<\|(?:im_end|im_start|endoftext|eot_id|end_of_text|begin_of_text|end|assistant|user)\|>|</?s>|<end_of_turn>|<eos>|<bos>"
)
_ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "model": "assistant",
    "gpt": "assistant",
}


def strip_special(text: str) -> str:
    return _SPECIAL.sub("", text).strip()


def detemplate(prompt: str) -> tuple[Message, ...]:
    """The conversation inside a chat-templated prompt; plain text becomes one user message.
    The empty assistant turn the template opens for generation is dropped."""
    for pattern in _TURN_PATTERNS:
        turns = [(_ROLES.get(role.lower(), "user"), strip_special(body)) for role, body in pattern.findall(prompt)]
        if turns:
            while turns and turns[-1][0] == "assistant" and not turns[-1][1]:
                turns.pop()
            turns = [(r, c) for r, c in turns if c]
            if turns and turns[-1][0] == "user":
                return tuple(Message(r, c) for r, c in turns)
    text = strip_special(prompt)
    return (Message("user", text),) if text else ()


@dataclass(frozen=True)
class RewardSample:
    """One OpenRLHF sample, read: the conversation, the response, the reference (None: no reference)."""

    context: tuple[Message, ...]
    response: str
    reference: str | None
    problem: str = ""  # non-empty: this sample cannot be judged (it gets a neutral score)


def reference_of(label: Any) -> str | None:
    """`labels[i]`: a string, or an object with a string `reference`; anything else: no reference."""
    if isinstance(label, dict):
        label = label.get("reference")
    return label if isinstance(label, str) and label.strip() else None


def read_reward_sample(query: Any, prompt: Any, label: Any) -> RewardSample:
    if not isinstance(query, str):
        return RewardSample((), "", None, f"query is {type(query).__name__}, expected a string")
    if isinstance(prompt, str) and prompt and query.startswith(prompt):
        prompt_text, response = prompt, query[len(prompt) :]
    else:  # no prompt, or its text differs (e.g. special tokens normalised): split on the last assistant turn
        prompt_text, response = _split_last_assistant(query)
    context = detemplate(prompt_text)
    response = strip_special(response)
    if not context:
        return RewardSample((), response, None, "no user prompt found in query/prompts")
    return RewardSample(context, response, reference_of(label))


def _split_last_assistant(query: str) -> tuple[str, str]:
    for marker in (
        "<|im_start|>assistant\n",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<start_of_turn>model\n",
    ):
        at = query.rfind(marker)
        if at >= 0:
            return query[: at + len(marker)], query[at + len(marker) :]
    return "", query


def read_reward_request(body: Any) -> list[tuple[Any, Any, Any]]:
    """OpenRLHF's /get_reward body, `{query, prompts?, labels?}`, as one (query, prompt, label) per
    sample. A malformed body raises InvalidRequest; a bad sample is judged apart (read_reward_sample)."""
    from reflectrm.requests import InvalidRequest

    if not isinstance(body, dict):
        raise InvalidRequest(
            "body", "the body must be a JSON object", '{"query": [...], "prompts": [...], "labels": [...]}'
        )
    queries = body.get("query")
    if not isinstance(queries, list):
        raise InvalidRequest(
            "query",
            "query must be a list of strings (prompt + response, as OpenRLHF sends it)",
            'send "query": ["..."]',
        )
    n = len(queries)
    lists = []
    for name in ("prompts", "labels"):
        value = body.get(name)
        value = [None] * n if value is None else value
        if not isinstance(value, list) or len(value) != n:
            raise InvalidRequest(
                name, f"{name} must be a list as long as query ({n})", f"send one {name[:-1]} per query, or omit {name}"
            )
        lists.append(value)
    return list(zip(queries, *lists))
