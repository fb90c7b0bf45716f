"""What the route mixins need from the ingress (serve/openai_routes.py, serve/reward_routes.py, and
/v1/judge in serve/ingress.py): the parsed args, the stage handles, the token limit, caps, auth, deadlines
and the judge between the stages (reflectrm.inference.ajudge). `IngressCore` holds it; each route mixin
derives from it, so what a route may use is this class and nothing else.

The args come parsed (serve/app.py build_app parses them once and binds the typed ServeArgs)."""

# No `from __future__ import annotations`: FastAPI must see real types on the ingress methods.
import asyncio
import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from ray.util import metrics

from reflectrm.config import JudgeConfig
from reflectrm.critic_judge import compare
from reflectrm.engines.base import Generation, GenerationRequest, PromptTooLongError
from reflectrm.inference import Mode, Steps, ajudge
from reflectrm.methods import method_for, spec_for
from reflectrm.methods.critic_rm import critique_prompt, critiques_per_response
from reflectrm.records import JudgeResult, Message, PreferencePair
from reflectrm.scoring import UNANSWERED
from serve import routing  # a module reference: its context variable is not pickled with the app
from serve.http import ApiError, InFlight, check_text
from serve.openai_api import TokenText
from serve.schemas import ServeArgs

log = logging.getLogger("ray.serve")
FIX_RETRY = "retry after the Retry-After seconds"


class IngressCore:
    """The ingress's state and plumbing, shared by every route."""

    def __init__(self, stage1: DeploymentHandle, stage2: DeploymentHandle, args: ServeArgs, token_sha256: str | None):
        from reflectrm.models import load_tokenizer, resolve_model

        self.args = args
        self.stage1, self.stage2 = stage1, stage2  # Critic-RM: both the Critic deployment (serve/critic.py)
        self.pointwise = spec_for(args.judge.method).pointwise
        self.token_sha256 = token_sha256
        model = self.args.model
        self.tokenizer = load_tokenizer(resolve_model(model.name), model.trust_remote_code)  # token counts for 413s
        self.text = TokenText(self.tokenizer)
        # this replica's caps, read by the middleware (serve/http.py) through the replica context
        self.in_flight = InFlight(self.args.max_concurrent_requests, int(self.args.max_body_mb * 2**20))
        self.m_deadline = metrics.Counter(
            "reflectrm_deadline_hits", "Requests (or /get_reward samples) past request_deadline_s", ("endpoint",)
        )
        self.m_rejected = metrics.Counter("reflectrm_stage_rejected", "Engine calls refused: queue full", ("stage",))
        self.m_retries = metrics.Counter("reflectrm_stage_retries", "Engine calls retried: replica failed", ("stage",))
        self.m_latency = metrics.Histogram(
            "reflectrm_request_seconds",
            "End-to-end request latency",
            boundaries=[0.1, 0.5, 1, 2, 5, 10, 30, 60, 120],
            tag_keys=("endpoint",),
        )

    # ------------------------------------------------------------------ plumbing

    async def _call(self, handle: DeploymentHandle, request: GenerationRequest, stage: str) -> Generation:
        """One engine call, routed by the pair's key (prefix affinity)."""
        return await self._remote(lambda: handle.generate.remote(request, affinity=routing.AFFINITY_KEY.get()), stage)

    async def _remote(self, call: Callable[[], Awaitable[Any]], stage: str) -> Any:
        """One call to a deployment. A full queue is a 503 with Retry-After; a replica that dies mid-call is
        retried once (Serve routes it to a live replica, or waits for the restarted one), then a 503."""
        for attempt in (1, 2):
            response = call()
            try:
                return await response
            except asyncio.CancelledError:  # our caller is gone (the deadline): the replica's call stops too
                response.cancel()
                raise
            except BackPressureError as err:
                self.m_rejected.inc(tags={"stage": stage})
                retry = max(1, round(getattr(err, "retry_after_s", None) or 1))
                headers = {"Retry-After": str(retry)}
                raise ApiError(503, "", f"the {stage} queue is full", FIX_RETRY, headers=headers) from None
            except (RayActorError, DeploymentUnavailableError) as err:
                self.m_retries.inc(tags={"stage": stage})
                log.warning("%s replica failed (%s), attempt %d of 2", stage, type(err).__name__, attempt)
        why = f"a {stage} replica failed while serving this request, twice"
        raise ApiError(503, "", why, "retry: Serve restarts failed replicas", headers={"Retry-After": "5"})

    async def _stage1(self, requests: list[GenerationRequest]) -> list[Generation]:
        try:
            return list(await asyncio.gather(*(self._call(self.stage1, r, "stage1") for r in requests)))
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
                return await self._call(self.stage2, r, "stage2")
            except (
                PromptTooLongError
            ):  # a reflection prompt over the limit is an invalid answer: "not better" (method.md §4)
                return UNANSWERED

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _deadline(self, work: Awaitable[Any], endpoint: str) -> Any:
        """`work` within args.request_deadline_s, else 504 (its engine calls are cancelled: vLLM aborts them)."""
        limit = self.args.request_deadline_s
        try:
            return await asyncio.wait_for(work, limit)
        except asyncio.TimeoutError:
            self.m_deadline.inc(tags={"endpoint": endpoint})
            why = f"the request did not finish within this server's deadline of {limit:g} s"
            fix = "retry later, or ask for less (a smaller n or max_new_tokens); the operator sets request_deadline_s"
            raise ApiError(504, "request_deadline_s", why, fix, deadline_s=limit) from None

    def _check_tokens(self, messages: tuple[Message, ...], field: str) -> None:
        from reflectrm.models import count_chat_tokens

        limit = self.args.model.max_prompt_tokens
        check_text((m.content for m in messages), limit, field)
        tokens = count_chat_tokens(self.tokenizer, messages)
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

    def _mode(self, mode: Mode | None) -> Mode:
        """A request's mode (None: the server's judge.mode), or 422 when the judge method has no such mode."""
        mode = mode or self.args.judge.mode
        judge = spec_for(self.args.judge.method)
        if mode not in judge.modes:
            why = f"mode={mode} is not available with this server's judge.method={judge.name}"
            raise ApiError(422, "mode", why, f"send mode as one of {', '.join(judge.modes)}")
        return mode

    def _prompt(self, pair: PreferencePair) -> Any:
        """The stage-1 prompt of `pair` in the served judge method's format (for the token checks); Critic-RM's
        longest: the critique of the longer response."""
        if self.pointwise:
            longer = max(pair.response_1, pair.response_2, key=len)
            return critique_prompt(pair.context, longer, self.args.prompt)
        return method_for(self.args.judge.method).prompt(pair, self.args.prompt)

    async def _critic(
        self, context: tuple[Message, ...], responses: list[str], mode: Mode, cfg: JudgeConfig, key: str = ""
    ) -> Any:
        """Critic-RM: each response scored alone (m critiques by mode, each read by the head): a Scored each.
        `key` seeds the sampled critiques with the response's text (the library's: a pair's id)."""
        m = critiques_per_response(mode, cfg.n)
        try:
            return await self._remote(
                lambda: self.stage1.score.remote(context, responses, key, m, cfg.max_new_tokens, cfg.seed), "critic"
            )
        except PromptTooLongError as err:
            fix = "shorten the conversation or the responses"
            raise ApiError(413, "prompt", str(err), fix, prompt_tokens=err.tokens, limit=err.limit) from None

    async def _critic_pair(self, pair: PreferencePair, mode: Mode, cfg: JudgeConfig) -> Any:
        """Critic-RM on a pair: the two responses' rewards, compared (the higher preferred, score sigmoid(r1 - r2))."""
        s1, s2 = await self._critic(pair.context, [pair.response_1, pair.response_2], mode, cfg, pair.id)
        return compare(s1, s2, pair.id, critiques_per_response(mode, cfg.n))

    async def _judge(self, pair: PreferencePair, mode: Mode, cfg: JudgeConfig) -> JudgeResult:
        routing.AFFINITY_KEY.set(routing.affinity_key(pair))  # this task's engine calls (both stages) go to one replica
        return await ajudge(Steps(cfg, self.args.prompt), pair, mode, self._stage1, self._stage2)  # type: ignore[arg-type]
