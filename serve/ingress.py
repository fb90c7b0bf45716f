"""The HTTP ingress: routes (POST /v1/judge, /v1/rank, /get_reward for OpenRLHF, OpenAI's
/v1/chat/completions and /v1/completions; GET /healthz, /v1/models, /docs), bearer auth, caps, and
the library's pure steps between the stages (reflectrm.inference.ajudge), so stage 2 of one request
overlaps stage 1 of others. No prompt text, parsing, ranking or reward arithmetic here: those are the
library's. Request bodies are never logged."""

# No `from __future__ import annotations`: FastAPI must see real types on the ingress methods.
import asyncio
import dataclasses
import hashlib
import hmac
import time
from typing import Any

from fastapi import Request
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.util import metrics

from reflectrm.config import JudgeConfig
from reflectrm.engines.base import Generation, GenerationRequest, PromptTooLongError
from reflectrm.inference import Steps, ajudge
from reflectrm.prompts import response_prompt
from reflectrm.ranking import GroupCollector
from reflectrm.records import JudgeResult, Message, PreferencePair
from reflectrm.requests import pair_from_request
from reflectrm.scoring import UNANSWERED
from serve.http import ApiError, app, request_id
from serve.openai_api import TokenText
from serve.openai_routes import OpenAIRoutes
from serve.reward_routes import RewardRoutes
from serve.schemas import JudgeRequest, ServeArgs, chat_messages


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=512)
@serve.ingress(app)
class Ingress(OpenAIRoutes, RewardRoutes):
    """The routes of serve/openai_routes.py and serve/reward_routes.py, and /v1/judge, /healthz, /v1/models,
    with what they share: the stage handles, the token limit, caps, auth and the judge."""

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
        self.text = TokenText(self.tokenizer)
        g = self.args.reward_groups
        self.groups = None if not g.size else GroupCollector(self._rank_for_reward, g.size, g.wait_s)
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

    def _judge_config(self, body: Any) -> JudgeConfig:
        """The server's judge settings with what a request (/v1/judge, /v1/rank) may set, within the caps."""
        self._caps(body.n, body.max_new_tokens)
        j = self.args.judge
        return dataclasses.replace(
            j,
            n=body.n or j.n,
            max_new_tokens=body.max_new_tokens or j.max_new_tokens,
            seed=j.seed if body.seed is None else body.seed,
            stage2=getattr(body, "stage2", None) or j.stage2,
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
        messages = None if body.messages is None else [m.to_dict() for m in chat_messages(body.messages)]
        pair = pair_from_request(body.prompt, messages, body.response_1, body.response_2)
        cfg = self._judge_config(body)
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
