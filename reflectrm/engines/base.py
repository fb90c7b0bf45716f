"""The generation-engine Protocol: the only thing the method knows about a model.

A batch of requests goes in (chat messages + sampling parameters each); for each request, `n`
completions come out, each with its text, token ids, per-token log-probabilities and why it
stopped. Each request carries its own parameters, so a server can batch requests that ask for
different things, and its own seed, so a request's samples do not depend on its batch-mates'.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

from reflectrm.records import Message

STOP_RESULT = "</Result>"  # every judgment ends here: stop decoding instead of rambling on


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None  # None: not reproducible
    stop: tuple[str, ...] = (STOP_RESULT,)
    # Non-empty: no decoding. One prefill, then the choice whose first token the model rates highest
    # is the one completion (its text, that token, its log-prob); n, temperature and stop do not apply.
    choices: tuple[str, ...] = ()
    top_logprobs: int = 0  # > 0: also the k most likely tokens at each generated position (OpenAI's top_logprobs)

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={self.n}, max_new_tokens={self.max_new_tokens}")
        if self.top_logprobs < 0:
            raise ValueError(f"top_logprobs must be >= 0, got {self.top_logprobs}")


@dataclass(frozen=True)
class GenerationRequest:
    messages: tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    assistant_prefix: str = ""  # the start of the assistant's turn, already written (after the chat template's prompt)
    prompt_text: str | None = None  # a raw prompt with no chat template (OpenAI's /v1/completions); messages are ()


def choice_split(tokenizer: Any, choices: Sequence[str]) -> tuple[list[int], list[int]]:
    """(the tokens all choices start with, each choice's first token after them). A tokenizer may split
    " 1" into " " + "1": the shared " " then ends the prompt and the choice is read at the next token."""
    tokens = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    common: list[int] = []
    while all(len(t) > len(common) for t in tokens) and len({t[len(common)] for t in tokens}) == 1:
        common.append(tokens[0][len(common)])
    if not all(len(t) > len(common) for t in tokens):
        raise ValueError(f"choices {list(choices)} cannot be told apart by one token under this tokenizer")
    return common, [t[len(common)] for t in tokens]


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # log-probability of each generated token under the model (temperature 1)
    finish_reason: Literal["stop", "length"]
    # With params.top_logprobs = k: at each generated position, the k most likely (token id, log-prob), best first.
    top_logprobs: tuple[tuple[tuple[int, float], ...], ...] = ()


@dataclass(frozen=True)
class Generation:
    prompt_tokens: int
    completions: tuple[Completion, ...]
    prompt_ids: tuple[
        int, ...
    ] = ()  # the prompt's token ids where the engine has them (the trainer reuses them: one tokenisation)


class PromptTooLongError(ValueError):
    """A prompt has more tokens than the engine accepts."""

    def __init__(self, tokens: int, limit: int):
        super().__init__(f"prompt has {tokens} tokens; the limit is {limit}: shorten the conversation or the responses")
        self.tokens = tokens
        self.limit = limit

    def __reduce__(self) -> tuple:  # crosses processes (Ray, Serve) with its counts
        return (PromptTooLongError, (self.tokens, self.limit))


@runtime_checkable
class Engine(Protocol):
    name: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """One Generation per request, in order, each with `request.params.n` completions."""
        ...

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """One request, awaitable (the service's path). A continuous-batching engine (engines/vllm_async.py)
        schedules it the moment it arrives; the others run `generate([request])` off the event loop
        (`generate_alone`). PromptTooLongError over the limit."""
        ...

    def count_tokens(self, messages: tuple[Message, ...]) -> int:
        """Prompt tokens after the chat template (for limits and usage)."""
        ...

    def count_text_tokens(self, text: str) -> int:
        """Tokens of a raw prompt (GenerationRequest.prompt_text), as the engine encodes it."""
        ...


async def generate_alone(engine: Engine, request: GenerationRequest) -> Generation:
    """`agenerate` for an engine that batches whole calls: one request in its own call, on a thread."""
    return (await asyncio.to_thread(engine.generate, [request]))[0]


def prompt_tokens(engine: Engine, request: GenerationRequest) -> int:
    """The request's prompt tokens as `engine` counts them: its raw text, or its chat-templated messages."""
    if request.prompt_text is not None:
        return engine.count_text_tokens(request.prompt_text)
    return engine.count_tokens(request.messages)


def generate_each(
    engine: Engine, requests: Sequence[GenerationRequest]
) -> tuple[list[Generation | None], list[PromptTooLongError | None]]:
    """One engine call for the batch. A prompt over the token limit gets None and its typed error;
    the other requests still run (in one call)."""
    try:
        return list(engine.generate(requests)), [None] * len(requests)
    except PromptTooLongError as err:
        limit = err.limit
    counts = [prompt_tokens(engine, r) for r in requests]
    fits = [i for i, c in enumerate(counts) if c <= limit]
    gens: list[Generation | None] = [None] * len(requests)
    errors = [PromptTooLongError(c, limit) if c > limit else None for c in counts]
    for i, gen in zip(fits, engine.generate([requests[i] for i in fits]) if fits else []):
        gens[i] = gen
    return gens, errors
