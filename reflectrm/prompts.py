"""THE prompt templates: the only place in the project where prompt text is written.

Two tasks share one judgment format (method.md §1):

- response preference (the judge): Context + "Responses for Judgment" -> which response is better;
- analysis preference (self-reflection): the same Context and responses + "Critiques for
  Judgment" -> which of two analyses of that pair is more reliable.

The paper's prompt texts are not public; these are ours. Both prompts open with the same system
message and render the conversation and the two responses byte-for-byte alike, with the task
instructions AFTER them, so the reflection prompts of a pair extend the judge prompt's prefix and
an engine with prefix caching computes that prefix once (issue 8).

Change any text here and bump TEMPLATE_VERSION: it is written into every data set and result.
The golden tests in tests/golden/ pin the rendered prompts.
"""

from __future__ import annotations

from typing import Literal

from reflectrm.config import PromptConfig
from reflectrm.records import Message, PreferencePair

TEMPLATE_VERSION = "reflectrm-prompts-v1"

Task = Literal["response", "critique"]
NOUN: dict[Task, str] = {"response": "Response", "critique": "Critique"}

SYSTEM = (
    "You are an impartial judge. You are given a context and two candidates, you analyse them "
    "carefully, and you decide which candidate is better."
)

_ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}

_FORMAT = """First write your reasoning inside <Analysis></Analysis>. Then give your verdict inside <Result></Result> as exactly one of these sentences:
{better_1}
{better_2}"""

_RESPONSE_TASK = (
    "## Task\n"
    "Decide which response better answers the last user turn of the context. Judge correctness, "
    "helpfulness, how exactly the user's instructions are followed, honesty and harmlessness. "
    "Do not let the order of the responses or their length sway you.\n" + _FORMAT
)

_CRITIQUE_TASK = (
    "## Task\n"
    "Each critique above analyses the two responses and ends with a verdict. Decide which "
    "critique is more reliable: the one whose analysis is more accurate and whose verdict is "
    "more likely correct.\n" + _FORMAT
)


def verdict_sentence(better: int, task: Task = "response") -> str:
    """`Response 1 is better than Response 2` and its three siblings: the only verdict sentences."""
    if better not in (1, 2):
        raise ValueError(f"better must be 1 or 2, got {better!r}")
    noun = NOUN[task]
    return f"{noun} {better} is better than {noun} {3 - better}"


def render_judgment(analysis: str, verdict: int, task: Task = "response") -> str:
    """The canonical model output: the target of SFT and of the fake engine's scripts."""
    return f"<Analysis>\n{analysis.strip()}\n</Analysis>\n<Result>{verdict_sentence(verdict, task)}</Result>"


VERDICT_CHOICES = (" 1", " 2")  # what follows verdict_prefix: the number of the better candidate


def verdict_prefix(task: Task = "critique") -> str:
    """The start of a judgment up to where the result sentence names the better candidate:
    `<Analysis> </Analysis><Result>Critique` (an empty analysis). Verdict-only reflection
    (judge.stage2_output=verdict) reads the next token: " 1" or " 2" (VERDICT_CHOICES)."""
    return render_judgment("", 1, task).split(f"{NOUN[task]} 1 is better")[0] + NOUN[task]


def render_conversation(context: tuple[Message, ...]) -> str:
    if len(context) == 1 and context[0].role == "user":
        return context[0].content
    return "\n\n".join(f"[{_ROLE_NAMES[m.role]}]\n{m.content}" for m in context)


def _pair_block(pair: PreferencePair) -> str:
    """The part both tasks share, rendered identically (the common prefix)."""
    return (
        "## Context\n"
        f"{render_conversation(pair.context)}\n\n"
        "## Responses for Judgment\n"
        f"[Response 1]\n{pair.response_1}\n[End of Response 1]\n\n"
        f"[Response 2]\n{pair.response_2}\n[End of Response 2]\n\n"
    )


def _finish(user: str, cfg: PromptConfig) -> tuple[Message, ...]:
    if cfg.suffix:
        user = f"{user}\n{cfg.suffix}"
    return (Message("system", SYSTEM), Message("user", user))


def _task_text(task: Task) -> str:
    text = _RESPONSE_TASK if task == "response" else _CRITIQUE_TASK
    return text.format(better_1=verdict_sentence(1, task), better_2=verdict_sentence(2, task))


def response_prompt(pair: PreferencePair, cfg: PromptConfig = PromptConfig()) -> tuple[Message, ...]:
    """Stage 1 / the judge task: which response is better?"""
    return _finish(_pair_block(pair) + _task_text("response"), cfg)


def critique_text(analysis: str, verdict: int) -> str:
    """A judgment shown as a critique: its analysis and the verdict it reached."""
    return f"{analysis.strip()}\nVerdict: {verdict_sentence(verdict, 'response')}"


def reflection_prompt(
    pair: PreferencePair,
    critique_1: tuple[str, int],
    critique_2: tuple[str, int],
    cfg: PromptConfig = PromptConfig(),
) -> tuple[Message, ...]:
    """Stage 2 / the self-reflection task: which of two (analysis, verdict) critiques is better?"""
    critiques = (
        "## Critiques for Judgment\n"
        f"[Critique 1]\n{critique_text(*critique_1)}\n[End of Critique 1]\n\n"
        f"[Critique 2]\n{critique_text(*critique_2)}\n[End of Critique 2]\n\n"
    )
    return _finish(_pair_block(pair) + critiques + _task_text("critique"), cfg)
