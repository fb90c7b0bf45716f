"""THE output parser: strict, and a failure is a value (method.md §1).

A valid output is, in this order:

    (anything, e.g. a model's empty <think></think> block)
    <Analysis> non-empty text </Analysis>
    (whitespace only)
    <Result>Response 1 is better than Response 2</Result>     (or one of the other sentences)
    (whitespace only)

with exactly one Analysis block and one Result block. Anything else gives
`ParsedOutput(verdict=None, error=...)`, which callers count as invalid; nothing is ever turned
into a default verdict.
"""

from __future__ import annotations

import re

from reflectrm.prompts import Task, verdict_sentence
from reflectrm.records import ParsedOutput

_TAGS = ("<Analysis>", "</Analysis>", "<Result>", "</Result>")


def parse_output(text: str, task: Task = "response") -> ParsedOutput:
    """Read one generated judgment. `task` picks the verdict nouns (Response or Critique)."""
    counts = {tag: text.count(tag) for tag in _TAGS}
    for tag, count in counts.items():
        if count == 0:
            return ParsedOutput(None, None, f"missing {tag}")
        if count > 1:
            return ParsedOutput(None, None, f"{tag} appears {count} times")
    a_open, a_close, r_open, r_close = (text.index(tag) for tag in _TAGS)
    if not a_open < a_close < r_open < r_close:
        return ParsedOutput(
            None, None, "blocks out of order: expected <Analysis>...</Analysis> then <Result>...</Result>"
        )
    analysis = text[a_open + len("<Analysis>") : a_close].strip()
    if not analysis:
        return ParsedOutput(None, None, "empty analysis")
    if text[a_close + len("</Analysis>") : r_open].strip():
        return ParsedOutput(None, analysis, "text between </Analysis> and <Result>")
    if text[r_close + len("</Result>") :].strip():
        return ParsedOutput(None, analysis, "text after </Result>: the result must come last")
    result = re.sub(r"\s+", " ", text[r_open + len("<Result>") : r_close]).strip().rstrip(".").strip()
    for better in (1, 2):
        if result == verdict_sentence(better, task):
            return ParsedOutput(better, analysis, None)  # type: ignore[arg-type]
    return ParsedOutput(None, analysis, f"unrecognised verdict {result[:80]!r}")
