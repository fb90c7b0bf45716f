"""OpenAI-compatible routes: /v1/chat/completions and /v1/completions, for judge harnesses that bring
their own prompt (JudgeBench, RewardBench, FastChat, verl's GenRM recipe). Any model name; max_tokens
above the server's cap is clamped (finish_reason "length" when it bites, and a note in `warnings`);
logprobs and top_logprobs from the engine; `stream: true` as server-sent events. A mixin of the
Ingress (serve/ingress.py); the response objects are serve/openai_api.py's."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods.
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from reflectrm.engines.base import GenerationRequest, SamplingParams
from serve.core import IngressCore
from serve.http import ApiError, app, check_text, request_id
from serve.openai_api import chat_response, chat_stream, completion_response, completion_stream
from serve.schemas import ChatRequest, CompletionRequest, chat_messages


def sampling(body: ChatRequest | CompletionRequest, max_tokens: int, top_logprobs: int) -> SamplingParams:
    """An OpenAI body's sampling settings (its own stop strings only: no judge's </Result>)."""
    return SamplingParams(
        n=body.n,
        temperature=float(body.temperature),
        top_p=float(body.top_p),
        max_new_tokens=max_tokens,
        seed=body.seed,
        stop=(body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ()),
        top_logprobs=top_logprobs,
    )


class OpenAIRoutes(IngressCore):
    def _check_text_tokens(self, text: str, field: str) -> None:
        check_text([text], self.args.model.max_prompt_tokens, field)
        tokens, limit = len(self.tokenizer(text)["input_ids"]), self.args.model.max_prompt_tokens
        if tokens > limit:
            why = f"the prompt has {tokens} tokens; the limit is {limit}"
            raise ApiError(413, field, why, "shorten the prompt", prompt_tokens=tokens, limit=limit)

    def _clamp(self, requested: int | None, field: str) -> tuple[int, list[str]]:
        """OpenAI routes: a max_tokens above the server's cap is clamped to it (judge harnesses send 2048-4096
        and would lose every pair to a 422); a completion cut there ends with finish_reason "length"."""
        cap = self.args.max_new_tokens_cap
        if requested is None:
            return min(self.args.judge.max_new_tokens, cap), []
        if requested > cap:
            return cap, [f"{field}={requested} was clamped to this server's cap of {cap} (max_new_tokens_cap)"]
        return requested, []

    @app.post("/v1/chat/completions")
    async def chat(self, body: ChatRequest, request: Request) -> Any:
        """OpenAI-compatible chat with the served model (for clients that bring their own judge prompt):
        any model name, max_tokens clamped to the cap, logprobs and top_logprobs, stream (server-sent events)."""
        self._authorize(request)
        messages = chat_messages(body.messages)
        field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        max_tokens, notes = self._clamp(body.max_completion_tokens or body.max_tokens, field)
        self._caps(body.n, None)
        if body.top_logprobs and not body.logprobs:
            raise ApiError(422, "top_logprobs", "top_logprobs needs logprobs=true", "send logprobs: true with it")
        self._check_tokens(messages, "messages")
        params = sampling(body, max_tokens, (body.top_logprobs or 0) if body.logprobs else 0)
        gen = (await self._deadline(self._stage1([GenerationRequest(messages, params)]), "chat"))[0]
        model, rid = body.model or self.args.model.name, request_id(request)
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                chat_stream(gen, model, rid, self.text, body.logprobs, usage), media_type="text/event-stream"
            )
        return chat_response(gen, model, rid, self.text, body.logprobs, notes)

    @app.post("/v1/completions")
    async def completions(self, body: CompletionRequest, request: Request) -> Any:
        """OpenAI's legacy completions: raw prompts (no chat template), n each, logprobs as an int, echo, stream."""
        self._authorize(request)
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts:
            raise ApiError(422, "prompt", "prompt is an empty list", "send a string or a non-empty list of strings")
        if body.echo and body.logprobs is not None:
            raise ApiError(
                422, "echo", "echo with logprobs is not supported (no log-probs of prompt tokens)", "drop one of them"
            )
        max_tokens, notes = self._clamp(body.max_tokens, "max_tokens")
        self._caps(body.n * len(prompts), None)
        for i, p in enumerate(prompts):
            self._check_text_tokens(p, "prompt" if isinstance(body.prompt, str) else f"prompt.{i}")
        params = sampling(body, max_tokens, body.logprobs or 0)
        gens = await self._deadline(
            self._stage1([GenerationRequest((), params, prompt_text=p) for p in prompts]), "completions"
        )
        model, rid, lp = body.model or self.args.model.name, request_id(request), body.logprobs is not None
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                completion_stream(gens, prompts, model, rid, self.text, lp, body.echo, usage),
                media_type="text/event-stream",
            )
        return completion_response(gens, prompts, model, rid, self.text, lp, body.echo, notes)
