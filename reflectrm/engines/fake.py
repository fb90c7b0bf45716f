"""A scripted engine for unit tests of the method's logic. Never used for a feature itself.

The script is a function `(request, sample_index) -> str | Completion`. A plain string becomes a
completion whose "tokens" are its whitespace-separated words, each with log-probability -1.0
unless `logprobs` is given.
"""

from __future__ import annotations

from typing import Callable, Sequence

from reflectrm.engines.base import (
    Completion,
    Generation,
    GenerationRequest,
    PromptTooLongError,
    generate_alone,
    prompt_tokens,
)
from reflectrm.records import Message

Script = Callable[[GenerationRequest, int], "str | Completion"]


def completion(text: str, logprobs: Sequence[float] | None = None, finish_reason: str = "stop") -> Completion:
    words = text.split()
    lps = tuple(logprobs) if logprobs is not None else tuple(-1.0 for _ in words)
    return Completion(text, tuple(range(len(lps))), lps, finish_reason)  # type: ignore[arg-type]


class FakeEngine:
    name = "fake"

    def __init__(self, script: Script, max_prompt_tokens: int | None = None):
        self.script = script
        self.max_prompt_tokens = max_prompt_tokens  # like a real engine's limit: a longer prompt raises
        self.calls: list[list[GenerationRequest]] = []  # every generate() batch, for assertions

    def count_tokens(self, messages: tuple[Message, ...]) -> int:
        return sum(len(m.content.split()) + 2 for m in messages)

    def count_text_tokens(self, text: str) -> int:
        return len(text.split())

    async def agenerate(self, request: GenerationRequest) -> Generation:
        return await generate_alone(self, request)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        over = [prompt_tokens(self, r) for r in requests if self.max_prompt_tokens]
        if over and max(over) > self.max_prompt_tokens:  # type: ignore[operator]
            raise PromptTooLongError(max(over), self.max_prompt_tokens)  # type: ignore[arg-type]
        self.calls.append(list(requests))
        out = []
        for req in requests:
            comps = []
            for k in range(req.params.n):
                got = self.script(req, k)
                comps.append(got if isinstance(got, Completion) else completion(got))
            out.append(Generation(prompt_tokens(self, req), tuple(comps)))
        return out
