"""Critic-RM's critique format (arXiv 2411.16646; method.md §6): a critique of ONE response that ends with a
discrete score, which a scalar reward head then reads (reflectrm/training/reward_head.py). Pointwise: no
reference and no second response, which is what a reward with no reference needs.

    <Critique> what is right and wrong with the response </Critique>
    <Score>7</Score>                                         (an integer from 1 to 10)

The paper's prompt is not public: the text is ours. The context and the response come before the
instructions, so the critiques of one response share a prefix in an engine's cache. Change any text here and
bump TEMPLATE_VERSION. The parser is strict, and a failure is a value (`CritiqueParse.error`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reflectrm.config import PromptConfig
from reflectrm.methods.base import MethodSpec
from reflectrm.prompts import render_conversation
from reflectrm.records import Message

TEMPLATE_VERSION = "critic-rm-prompts-v1"
SCORES = range(1, 11)

SYSTEM = (
    "You are a careful critic. You are given a conversation and one response to its last user turn; you "
    "write a critique of the response and score it."
)

_TASK = """## Task
Critique the response above: check its correctness, how exactly it follows the user's instructions, its helpfulness, honesty and harmlessness, and name what is right and what is wrong with it. Write the critique inside <Critique></Critique>. Then score the response inside <Score></Score> with one integer from 1 (very poor) to 10 (excellent)."""

_SCORE = re.compile(r"\s*(10|[1-9])\s*")


class CriticRM(MethodSpec):
    """Critic-RM as the jobs and the service see it: pointwise, two modes. greedy = one greedy critique per
    response; majority = judge.n sampled critiques per response, their head rewards averaged (the paper's
    inference-time scaling: a mean, not a vote). The model and its head: reflectrm/critic_judge.py."""

    name = "critic_rm"
    template_version = TEMPLATE_VERSION
    modes = ("greedy", "majority")
    pointwise = True


def critiques_per_response(mode: str, n: int) -> int:
    """m: 1 greedy critique in mode greedy, else n sampled."""
    return 1 if mode == "greedy" else n


@dataclass(frozen=True)
class CritiqueParse:
    """What the strict parser read: the critique and its score, or the error (score None)."""

    critique: str | None
    score: int | None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.score is not None


def critique_prompt(
    context: tuple[Message, ...], response: str, cfg: PromptConfig = PromptConfig()
) -> tuple[Message, ...]:
    """The messages that ask for a critique of `response`, the reply to `context`'s last user turn."""
    user = f"## Context\n{render_conversation(context)}\n\n## Response\n{response}\n[End of Response]\n\n{_TASK}"
    if cfg.suffix:
        user = f"{user}\n{cfg.suffix}"
    return (Message("system", SYSTEM), Message("user", user))


def parse_critique(text: str) -> CritiqueParse:
    """One <Critique> block with text, then one <Score> block holding an integer 1-10, nothing after."""
    tags = ("<Critique>", "</Critique>", "<Score>", "</Score>")
    for tag in tags:
        if (count := text.count(tag)) != 1:
            return CritiqueParse(None, None, f"{tag} appears {count} times")
    c_open, c_close, s_open, s_close = (text.index(tag) for tag in tags)
    if not c_open < c_close < s_open < s_close:
        return CritiqueParse(
            None, None, "blocks out of order: expected <Critique>...</Critique> then <Score>...</Score>"
        )
    critique = text[c_open + len("<Critique>") : c_close].strip()
    if not critique:
        return CritiqueParse(None, None, "empty critique")
    if text[c_close + len("</Critique>") : s_open].strip():
        return CritiqueParse(critique, None, "text between </Critique> and <Score>")
    if text[s_close + len("</Score>") :].strip():
        return CritiqueParse(critique, None, "text after </Score>: the score must come last")
    found = _SCORE.fullmatch(text[s_open + len("<Score>") : s_close])
    if found is None:
        return CritiqueParse(critique, None, "the score must be one integer from 1 to 10")
    return CritiqueParse(critique, int(found.group(1)), None)


def render_critique(critique: str, score: int) -> str:
    """The canonical output (an SFT target)."""
    if score not in SCORES:
        raise ValueError(f"score must be an integer from 1 to 10, got {score!r}")
    return f"<Critique>\n{critique.strip()}\n</Critique>\n<Score>{score}</Score>"
