"""Frozen records that flow through the whole system: pairs in, judgments and verdicts out.

A verdict is 1 or 2 (which candidate is better) or None (the output could not be parsed). None is
an explicit value that is counted and reported, never silently turned into 1 or 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

Verdict = Literal[1, 2] | None
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def messages_from(value: str | Sequence[Mapping[str, Any] | Message]) -> tuple[Message, ...]:
    """A user prompt string or a chat message list, as Messages. Raises ValueError with the fix."""
    if isinstance(value, str):
        return (Message("user", value),)
    out = []
    for i, m in enumerate(value):
        if isinstance(m, Message):
            out.append(m)
            continue
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} must be an object with 'role' and 'content', got {m!r}")
        if m["role"] not in ("system", "user", "assistant"):
            raise ValueError(f"message {i} has role {m['role']!r}; use system, user or assistant")
        if not isinstance(m["content"], str):
            raise ValueError(f"message {i} content must be a string, got {type(m['content']).__name__}")
        out.append(Message(m["role"], m["content"]))
    if not out:
        raise ValueError("the conversation is empty: give at least one user message")
    return tuple(out)


@dataclass(frozen=True)
class PreferencePair:
    """One item to judge: a conversation (the last user turn is the query) and two responses.

    `label` is the gold answer (1 or 2) when known, None for unlabelled scoring.
    """

    id: str
    context: tuple[Message, ...]
    response_1: str
    response_2: str
    label: Literal[1, 2] | None = None
    source: str = ""
    subset: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def swapped(self) -> PreferencePair:
        """The same pair with the responses in the other order (for positional consistency)."""
        label = None if self.label is None else 3 - self.label
        return dataclasses.replace(self, response_1=self.response_2, response_2=self.response_1, label=label)

    @property
    def query(self) -> str:
        users = [m.content for m in self.context if m.role == "user"]
        return users[-1] if users else ""


@dataclass(frozen=True)
class ParsedOutput:
    """What the strict parser read from one generated text."""

    verdict: Verdict
    analysis: str | None
    error: str | None = None  # why the output is invalid; None when valid

    @property
    def valid(self) -> bool:
        return self.verdict is not None


@dataclass(frozen=True)
class Judgment:
    """One stage-1 sample: an analysis and a verdict about response 1 vs response 2."""

    text: str
    analysis: str | None
    verdict: Verdict
    confidence: float  # mean log-prob of the lowest-probability tokens (method.md §4); -inf if none
    completion_tokens: int
    finish_reason: str
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.verdict is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "analysis": self.analysis,
            "verdict": self.verdict,
            "confidence": self.confidence,
            "valid": self.valid,
            "error": self.error,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
            "text": self.text,
        }


@dataclass(frozen=True)
class Reflection:
    """One stage-2 decision: is judgment `index`'s analysis more reliable than the anchor's?

    `candidate_position` is where judgment `index` was shown (1 or 2; the order is random).
    An invalid answer counts as "not better" (method.md §4).
    """

    index: int
    candidate_position: Literal[1, 2]
    better_than_anchor: bool
    valid: bool
    text: str
    completion_tokens: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class JudgeResult:
    """The final answer for one pair, with its whole trace."""

    preferred: Verdict
    mode: str
    score: float  # the share of final votes for response 1; 0.5 when no valid vote exists
    judgments: tuple[Judgment, ...]
    anchor: int | None = None
    reflections: tuple[Reflection, ...] = ()
    stage2_skipped: bool = False
    majority: Verdict = None  # the plain vote of the stage-1 verdicts (free with reflect)
    usage: Usage = Usage()
    pair_id: str = ""
    not_asked: tuple[
        int, ...
    ] = ()  # valid judgments lazy stage 2 never compared with the anchor (they could not change the result)
    method: str = "reflectrm"  # the judge format (reflectrm.methods) that wrote and read the judgments

    @property
    def valid_rate(self) -> float:
        return sum(j.valid for j in self.judgments) / len(self.judgments) if self.judgments else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.pair_id,
            "preferred": self.preferred,
            "method": self.method,
            "mode": self.mode,
            "score": self.score,
            "majority": self.majority,
            "judgments": [j.to_dict() for j in self.judgments],
            "anchor": self.anchor,
            "reflections": [r.to_dict() for r in self.reflections],
            "stage2_skipped": self.stage2_skipped,
            "stage2_calls": len(self.reflections),
            "not_asked": list(self.not_asked),
            "usage": dataclasses.asdict(self.usage),
        }
