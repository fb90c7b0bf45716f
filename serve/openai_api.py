"""OpenAI's response objects for the served model: chat.completion and text_completion, their log-probs,
and their server-sent-event streams. Judge harnesses (JudgeBench, RewardBench, FastChat, verl's GenRM
recipe) read these with the openai SDK or by hand; the shapes follow OpenAI's API reference.

Streams are cut from a finished generation: the engines return whole completions, so the first
chunk comes when the generation is done, then one chunk per token. Clients that stream get the same
text and log-probs as clients that don't.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from reflectrm.engines.base import Completion, Generation


class TokenText:
    """Token ids as text, for log-probs and stream chunks (the served model's tokenizer)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def token(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id], skip_special_tokens=False)

    def pieces(self, completion: Completion) -> list[str]:
        """The completion's text cut at token boundaries: one piece per token (empty where a token only
        completes a character or is special), joined exactly `completion.text`. Where the text was cut
        short (a stop string), the pieces past it are empty; where the decoding does not line up, one
        piece holds the whole text."""
        pieces, prev = [], ""
        ids = completion.token_ids
        for k in range(len(ids)):
            cur = self.tokenizer.decode(list(ids[: k + 1]), skip_special_tokens=True)
            if cur.endswith("\ufffd"):  # half a character: wait for the next token
                pieces.append("")
                continue
            pieces.append(cur[len(prev) :] if cur.startswith(prev) else "")
            prev = cur
        text, out, used = completion.text, [], 0
        for p in pieces:
            take = p[: max(0, len(text) - used)]
            out.append(take)
            used += len(take)
        if "".join(out) != text:
            return [text] + [""] * (len(ids) - 1) if ids else [text]
        return out

    def entry(self, token_id: int, logprob: float) -> dict[str, Any]:
        t = self.token(token_id)
        return {"token": t, "logprob": logprob, "bytes": list(t.encode("utf-8"))}


def chat_logprobs(c: Completion, text: TokenText) -> dict[str, Any]:
    """`choices[i].logprobs` of a chat completion: each generated token, its log-prob, and its top ones."""
    content = []
    for k, (tid, lp) in enumerate(zip(c.token_ids, c.logprobs)):
        top = c.top_logprobs[k] if k < len(c.top_logprobs) else ()
        content.append({**text.entry(tid, lp), "top_logprobs": [text.entry(t, v) for t, v in top]})
    return {"content": content, "refusal": None}


def text_logprobs(c: Completion, text: TokenText, offset: int = 0) -> dict[str, Any]:
    """`choices[i].logprobs` of a legacy completion: tokens, token_logprobs, top_logprobs, text_offset."""
    tokens = [text.token(t) for t in c.token_ids]
    offsets, at = [], offset
    for t in tokens:
        offsets.append(at)
        at += len(t)
    top = [
        {text.token(t): v for t, v in (c.top_logprobs[k] if k < len(c.top_logprobs) else ())}
        for k in range(len(tokens))
    ]
    return {"tokens": tokens, "token_logprobs": list(c.logprobs), "top_logprobs": top, "text_offset": offsets}


def usage(gens: list[Generation]) -> dict[str, int]:
    prompt = sum(g.prompt_tokens for g in gens)
    completion = sum(len(c.token_ids) for g in gens for c in g.completions)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def envelope(
    rid: str, kind: str, model: str, choices: list[dict[str, Any]], gens: list[Generation], notes: list[str]
) -> dict[str, Any]:
    """An OpenAI response object around its choices. `notes` (a clamped max_tokens, say) go in `warnings`,
    a field OpenAI clients ignore and people can read."""
    out = {"id": rid, "object": kind, "created": int(time.time()), "model": model, "choices": choices}
    return out | {"usage": usage(gens)} | ({"warnings": notes} if notes else {})


def chat_response(
    gen: Generation, model: str, rid: str, text: TokenText, logprobs: bool, notes: list[str]
) -> dict[str, Any]:
    """OpenAI's chat.completion object for one generation."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": chat_logprobs(c, text) if logprobs else None,
            "finish_reason": c.finish_reason,
        }
        for i, c in enumerate(gen.completions)
    ]
    return envelope(f"chatcmpl-{rid}", "chat.completion", model, choices, [gen], notes)


def completion_response(
    gens: list[Generation],
    prompts: list[str],
    model: str,
    rid: str,
    text: TokenText,
    logprobs: bool,
    echo: bool,
    notes: list[str],
) -> dict[str, Any]:
    """OpenAI's text_completion object: n choices per prompt, prompt-major (OpenAI's order)."""
    choices = []
    for gen, prompt in zip(gens, prompts):
        for c in gen.completions:
            start = len(prompt) if echo else 0
            choices.append(
                {
                    "index": len(choices),
                    "text": (prompt if echo else "") + c.text,
                    "logprobs": text_logprobs(c, text, start) if logprobs else None,
                    "finish_reason": c.finish_reason,
                }
            )
    return envelope(f"cmpl-{rid}", "text_completion", model, choices, gens, notes)


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def chat_stream(
    gen: Generation, model: str, rid: str, text: TokenText, logprobs: bool, include_usage: bool
) -> Iterator[str]:
    """The chat.completion.chunk events of one generation: per choice a role chunk, one chunk per
    token (with its log-probs), a finish chunk; then the usage chunk if asked; then [DONE]."""
    base = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    for i, c in enumerate(gen.completions):
        yield sse(
            base | {"choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        )
        entries = chat_logprobs(c, text)["content"] if logprobs else []
        for k, piece in enumerate(text.pieces(c)):
            lp = {"content": [entries[k]], "refusal": None} if logprobs else None
            if piece or lp:
                yield sse(
                    base
                    | {"choices": [{"index": i, "delta": {"content": piece}, "logprobs": lp, "finish_reason": None}]}
                )
        yield sse(base | {"choices": [{"index": i, "delta": {}, "finish_reason": c.finish_reason}]})
    if include_usage:
        yield sse(base | {"choices": [], "usage": usage([gen])})
    yield "data: [DONE]\n\n"


def completion_stream(
    gens: list[Generation],
    prompts: list[str],
    model: str,
    rid: str,
    text: TokenText,
    logprobs: bool,
    echo: bool,
    include_usage: bool,
) -> Iterator[str]:
    base = {"id": f"cmpl-{rid}", "object": "text_completion", "created": int(time.time()), "model": model}
    index = 0
    for gen, prompt in zip(gens, prompts):
        for c in gen.completions:
            if echo:
                yield sse(
                    base | {"choices": [{"index": index, "text": prompt, "logprobs": None, "finish_reason": None}]}
                )
            lps = text_logprobs(c, text) if logprobs else None
            for k, piece in enumerate(text.pieces(c)):
                lp = (
                    {key: [lps[key][k]] for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}
                    if lps
                    else None
                )
                if piece or lp:
                    yield sse(
                        base | {"choices": [{"index": index, "text": piece, "logprobs": lp, "finish_reason": None}]}
                    )
            yield sse(
                base | {"choices": [{"index": index, "text": "", "logprobs": None, "finish_reason": c.finish_reason}]}
            )
            index += 1
    if include_usage:
        yield sse(base | {"choices": [], "usage": usage(gens)})
    yield "data: [DONE]\n\n"
