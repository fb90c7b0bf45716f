"""The HTTP ingress: routes (POST /v1/judge, /get_reward for OpenRLHF, /v1/chat/completions; GET
/healthz, /v1/models, /docs), bearer auth, caps, and the library's pure steps between the stages
(reflectrm.inference.ajudge), so stage 2 of one request overlaps stage 1 of others. No prompt text,
parsing or reward arithmetic here: those are the library's. Request bodies are never logged."""

# No `from __future__ import annotations`: FastAPI must see real types on the ingress methods.
import asyncio
import dataclasses
import hashlib
import hmac
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.util import metrics

from reflectrm.config import JudgeConfig
from reflectrm.engines.base import Generation, GenerationRequest, PromptTooLongError, SamplingParams
from reflectrm.inference import Steps, ajudge
from reflectrm.prompts import response_prompt
from reflectrm.protocols import read_reward_request, read_reward_sample
from reflectrm.records import JudgeResult, Message, PreferencePair
from reflectrm.requests import pair_from_request
from reflectrm.rewards import NEUTRAL_SCORE, both_orders_score, reward_from_score
from reflectrm.scoring import UNANSWERED
from serve.schemas import (
    FIXES,
    ApiError,
    ChatRequest,
    JudgeRequest,
    ServeArgs,
    chat_response,
    install_error_handlers,
    request_id,
)

log = logging.getLogger("ray.serve")
app = FastAPI(title="reflectrm", description="Self-reflective generative reward model (ReflectRM) as a service.")
install_error_handlers(app)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=512)
@serve.ingress(app)
class Ingress:
    def __init__(
        self, stage1: DeploymentHandle, stage2: DeploymentHandle, args: dict[str, Any], token_sha256: str | None
    ):
        from reflectrm.models import load_tokenizer, resolve_model

        self.args = ServeArgs.parse(args)
        self.stage1, self.stage2 = stage1, stage2
        self.token_sha256 = token_sha256
        self.tokenizer = load_tokenizer(
            resolve_model(self.args.model.name), self.args.model.trust_remote_code
        )  # token counts for 413s
        self.m_latency = metrics.Histogram(
            "reflectrm_request_seconds",
            "End-to-end request latency",
            boundaries=[0.1, 0.5, 1, 2, 5, 10, 30, 60, 120],
            tag_keys=("endpoint",),
        )

    # ------------------------------------------------------------------ plumbing

    async def _stage1(self, requests: list[GenerationRequest]) -> list[Generation]:
        try:
            return list(await asyncio.gather(*(self.stage1.generate.remote(r) for r in requests)))
        except PromptTooLongError as err:
            raise ApiError(
                413,
                "prompt",
                str(err),
                "shorten the conversation or the responses",
                prompt_tokens=err.tokens,
                limit=err.limit,
            ) from None

    async def _stage2(self, requests: list[GenerationRequest]) -> list[Generation]:
        async def one(r: GenerationRequest) -> Generation:
            try:
                return await self.stage2.generate.remote(r)
            except (
                PromptTooLongError
            ):  # a reflection prompt over the limit is an invalid answer: "not better" (method.md §4)
                return UNANSWERED

        return list(await asyncio.gather(*(one(r) for r in requests)))

    def _check_tokens(self, messages: tuple[Message, ...], field: str) -> None:
        from reflectrm.models import count_chat_tokens

        tokens, limit = count_chat_tokens(self.tokenizer, messages), self.args.model.max_prompt_tokens
        if tokens > limit:
            raise ApiError(
                413,
                field,
                f"the prompt has {tokens} tokens; the limit is {limit}",
                "shorten the conversation or the responses",
                prompt_tokens=tokens,
                limit=limit,
            )

    def _caps(
        self, n: int | None, max_new_tokens: int | None, n_field: str = "n", tokens_field: str = "max_new_tokens"
    ) -> None:
        if n is not None and n > self.args.max_n:
            raise ApiError(
                422,
                n_field,
                f"{n_field}={n} is above this server's cap of {self.args.max_n}",
                f"send {n_field} <= {self.args.max_n}",
            )
        if max_new_tokens is not None and max_new_tokens > self.args.max_new_tokens_cap:
            raise ApiError(
                422,
                tokens_field,
                f"{tokens_field}={max_new_tokens} is above this server's cap of {self.args.max_new_tokens_cap}",
                f"send {tokens_field} <= {self.args.max_new_tokens_cap}",
            )

    def _authorize(self, request: Request) -> None:
        if self.token_sha256 is None:
            return
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), self.token_sha256):
            raise ApiError(
                401, "Authorization", "missing or wrong bearer token", "send the header Authorization: Bearer <token>"
            )

    async def _judge(self, pair: PreferencePair, mode: str, cfg: JudgeConfig) -> JudgeResult:
        return await ajudge(Steps(cfg, self.args.prompt), pair, mode, self._stage1, self._stage2)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ endpoints

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.args.model.name}

    @app.get("/v1/models")
    async def models(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return {
            "object": "list",
            "data": [{"id": self.args.model.name, "object": "model", "created": 0, "owned_by": "reflectrm"}],
        }

    @app.post("/v1/judge")
    async def judge(self, body: JudgeRequest, request: Request) -> dict[str, Any]:
        self._authorize(request)
        t0 = time.perf_counter()
        messages = (
            None
            if body.messages is None
            else [{"role": m.role, "content": m.text(f"messages.{i}.content")} for i, m in enumerate(body.messages)]
        )
        pair = pair_from_request(body.prompt, messages, body.response_1, body.response_2)
        self._caps(body.n, body.max_new_tokens)
        j = self.args.judge
        cfg = dataclasses.replace(
            j,
            n=body.n or j.n,
            max_new_tokens=body.max_new_tokens or j.max_new_tokens,
            seed=j.seed if body.seed is None else body.seed,
            stage2=body.stage2 or j.stage2,
        )
        self._check_tokens(response_prompt(pair, self.args.prompt), "prompt")
        if body.swap:
            given, swapped = await asyncio.gather(
                self._judge(pair, body.mode, cfg), self._judge(pair.swapped(), body.mode, cfg)
            )
            out = {
                **given.to_dict(),
                "swapped": swapped.to_dict(),
                "consistent": given.preferred is not None and swapped.preferred == 3 - given.preferred,
            }
        else:
            out = (await self._judge(pair, body.mode, cfg)).to_dict()
        self.m_latency.observe(time.perf_counter() - t0, tags={"endpoint": "judge"})
        return {**out, "request_id": request_id(request)}

    @app.post("/get_reward")
    async def get_reward(self, request: Request) -> dict[str, Any]:
        """OpenRLHF's remote reward protocol: {query, prompts, labels} -> {rewards, scores, extra_logs}."""
        self._authorize(request)
        t0 = time.perf_counter()
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "body", "the body is not valid JSON", FIXES["json_invalid"]) from None
        samples = read_reward_request(body)
        if not samples:
            return {"rewards": [], "scores": [], "extra_logs": {}}
        results = await asyncio.gather(*(self._reward_one(q, p, lab) for q, p, lab in samples))
        scores = [r[0] for r in results]
        extra_logs = {k: [float(r[1][k]) for r in results] for k in ("no_reference", "error", "valid_rate")}
        self.m_latency.observe(time.perf_counter() - t0, tags={"endpoint": "get_reward"})
        return {"rewards": [reward_from_score(s) for s in scores], "scores": scores, "extra_logs": extra_logs}

    async def _reward_one(self, query: Any, prompt: Any, label: Any) -> tuple[float, dict[str, float]]:
        """(score, flags) for one sample. Never raises: a bad sample gets the neutral score and a flag."""
        sample = read_reward_sample(query, prompt, label)
        if sample.problem:
            return NEUTRAL_SCORE, {"no_reference": 0, "error": 1, "valid_rate": 0}
        if sample.reference is None:
            return NEUTRAL_SCORE, {"no_reference": 1, "error": 0, "valid_rate": 0}
        pair = PreferencePair("", sample.context, sample.response, sample.reference)
        mode, cfg = self.args.reward_mode, self.args.judge
        try:
            self._check_tokens(response_prompt(pair, self.args.prompt), "query")
            if not self.args.reward_both_orders:
                result = await self._judge(pair, mode, cfg)
                return result.score, {"no_reference": 0, "error": 0, "valid_rate": result.valid_rate}
            given, swapped = await asyncio.gather(self._judge(pair, mode, cfg), self._judge(pair.swapped(), mode, cfg))
            return both_orders_score(given.score, swapped.score), {
                "no_reference": 0,
                "error": 0,
                "valid_rate": (given.valid_rate + swapped.valid_rate) / 2,
            }
        except Exception as err:  # noqa: BLE001 (one bad sample never fails the others: OpenRLHF drops failed requests)
            log.warning("get_reward: a sample failed (%s); neutral score", type(err).__name__)
            return NEUTRAL_SCORE, {"no_reference": 0, "error": 1, "valid_rate": 0}

    @app.post("/v1/chat/completions")
    async def chat(self, body: ChatRequest, request: Request) -> dict[str, Any]:
        """OpenAI-compatible chat generation with the served model (for clients that bring their own judge prompt)."""
        self._authorize(request)
        if body.stream:
            raise ApiError(400, "stream", "streaming is not supported", "send stream=false")
        messages = tuple(Message(m.role, m.text(f"messages.{i}.content")) for i, m in enumerate(body.messages))
        max_tokens = body.max_completion_tokens or body.max_tokens
        self._caps(body.n, max_tokens, "n", "max_tokens")
        self._check_tokens(messages, "messages")
        stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
        params = SamplingParams(
            n=body.n,
            temperature=float(body.temperature),
            top_p=float(body.top_p),
            max_new_tokens=max_tokens or self.args.judge.max_new_tokens,
            seed=body.seed,
            stop=stop,
        )
        gen = (await self._stage1([GenerationRequest(messages, params)]))[0]
        return chat_response(gen, self.args.model.name, request_id(request))
