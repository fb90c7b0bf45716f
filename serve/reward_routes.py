"""The reward routes: OpenRLHF's /get_reward (against a reference answer, or ranked within its
prompt's group when there is none) and /v1/rank (group-wise judging). A mixin of the Ingress
(serve/ingress.py), whose plumbing (`_judge`, `_check_tokens`, `_caps`, `_authorize`) it uses; the
ranking and the reward arithmetic are the library's (reflectrm.ranking, reflectrm.rewards)."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods.
import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from fastapi import Request

from reflectrm.config import JudgeConfig
from reflectrm.critic_judge import critique_valid_rate, pointwise_score
from reflectrm.protocols import read_reward_request, read_reward_sample
from reflectrm.ranking import GroupCollector, comparisons, group_scores
from reflectrm.records import JudgeResult, Message, PreferencePair
from reflectrm.requests import context_from
from reflectrm.rewards import NEUTRAL_SCORE, both_orders_score, reward_from_score
from serve.core import IngressCore
from serve.http import FIXES, ApiError, app, request_id
from serve.schemas import RankRequest, chat_messages

log = logging.getLogger("ray.serve")
FLAGS = ("no_reference", "error", "valid_rate", "grouped", "timeout")  # /get_reward's extra_logs, one value per sample


def comparison_trace(i: int, j: int, r: JudgeResult) -> dict[str, Any]:
    """One judgment of a ranking: which responses it compared (by index), the winner, and the whole result."""
    winner = None if r.preferred is None else (i, j)[r.preferred - 1]
    return {
        "response_1": i,
        "response_2": j,
        "preferred": winner,
        "score": r.score,
        "valid_rate": r.valid_rate,
        "result": r.to_dict(),
    }


class RewardRoutes(IngressCore):
    """/get_reward and /v1/rank, on what the ingress shares (serve/core.py); `groups` collects /get_reward's
    label-less samples of one prompt when args.reward_groups is on."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        g = self.args.reward_groups
        self.groups = None if not g.size else GroupCollector(self._rank_for_reward, g.size, g.wait_s)

    async def _rank(
        self, context: tuple[Message, ...], responses: list[str], scheme: str, method: str, mode: str, cfg: JudgeConfig
    ) -> tuple[list[float], list[dict[str, Any]]]:
        """The responses judged against each other (reflectrm.ranking): one score each, and each judgment."""
        pairs = comparisons(len(responses), scheme)  # type: ignore[arg-type]
        results = await asyncio.gather(
            *(self._judge(PreferencePair("", context, responses[i], responses[j]), mode, cfg) for i, j in pairs)
        )
        scores = group_scores(len(responses), [(i, j, r.score) for (i, j), r in zip(pairs, results)], method)  # type: ignore[arg-type]
        traces = [comparison_trace(i, j, r) for (i, j), r in zip(pairs, results)]
        return scores, traces

    async def _rank_for_reward(self, context: tuple[Message, ...], responses: list[str]) -> list[tuple[float, float]]:
        """/get_reward's groups (args.reward_groups): (score, valid rate of its judgments) per response."""
        g = self.args.reward_groups
        scores, traces = await self._rank(
            context, responses, g.scheme, g.method, self._mode(self.args.reward_mode), self.args.judge
        )
        valid = [
            [t["valid_rate"] for t in traces if k in (t["response_1"], t["response_2"])] for k in range(len(responses))
        ]
        return [(s, sum(v) / len(v) if v else 0.0) for s, v in zip(scores, valid)]

    @app.post("/get_reward")
    async def get_reward(self, request: Request) -> dict[str, Any]:
        """OpenRLHF's remote reward protocol: {query, prompts, labels} -> {rewards, scores, extra_logs}."""
        self._authorize(request)
        t0 = time.perf_counter()
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
            raise ApiError(
                400, "body", "the body is not valid JSON, or is nested too deeply", FIXES["json_invalid"]
            ) from None
        samples = read_reward_request(body)
        if not samples:
            return {"rewards": [], "scores": [], "extra_logs": {}}
        results = await asyncio.gather(*(self._reward_within(q, p, lab) for q, p, lab in samples))
        scores = [r[0] for r in results]
        extra_logs = {k: [float(r[1].get(k, 0)) for r in results] for k in FLAGS}
        self.m_latency.observe(time.perf_counter() - t0, tags={"endpoint": "get_reward"})
        return {"rewards": [reward_from_score(s) for s in scores], "scores": scores, "extra_logs": extra_logs}

    async def _reward_within(self, query: Any, prompt: Any, label: Any) -> tuple[float, dict[str, float]]:
        """A sample not scored within args.request_deadline_s gets the neutral score and `timeout` (its engine
        calls are cancelled); the others keep theirs. A full queue or failed replicas stay a 503 (retry)."""
        try:
            return await asyncio.wait_for(self._reward_one(query, prompt, label), self.args.request_deadline_s)
        except asyncio.TimeoutError:
            self.m_deadline.inc(tags={"endpoint": "get_reward"})
            return NEUTRAL_SCORE, {"timeout": 1}

    async def _reward_one(self, query: Any, prompt: Any, label: Any) -> tuple[float, dict[str, float]]:
        """(score, flags) for one sample. Never raises: a bad sample gets the neutral score and a flag.
        With no reference it is ranked within its prompt's group when args.reward_groups is on."""
        sample = read_reward_sample(query, prompt, label)
        if sample.problem:
            return NEUTRAL_SCORE, {"error": 1}
        mode, cfg = self._mode(self.args.reward_mode), self.args.judge
        try:
            if self.pointwise:  # Critic-RM: the response's own reward; against the reference when there is one
                return await self._critic_reward(sample.context, sample.response, sample.reference, mode, cfg)
            if sample.reference is None:
                if self.groups is None:
                    return NEUTRAL_SCORE, {"no_reference": 1}
                self._check_tokens(
                    self._prompt(PreferencePair("", sample.context, sample.response, sample.response)), "query"
                )
                key = hashlib.sha256(json.dumps([m.to_dict() for m in sample.context]).encode()).hexdigest()
                got = await self.groups.score(key, sample.context, sample.response)
                if got is None:  # the group closed with this response alone: nothing to compare with
                    return NEUTRAL_SCORE, {"no_reference": 1, "grouped": 1}
                return got[0], {"valid_rate": got[1], "grouped": 1}
            pair = PreferencePair("", sample.context, sample.response, sample.reference)
            self._check_tokens(self._prompt(pair), "query")
            if not self.args.reward_both_orders:
                result = await self._judge(pair, mode, cfg)
                return result.score, {"valid_rate": result.valid_rate}
            given, swapped = await asyncio.gather(self._judge(pair, mode, cfg), self._judge(pair.swapped(), mode, cfg))
            return both_orders_score(given.score, swapped.score), {
                "valid_rate": (given.valid_rate + swapped.valid_rate) / 2
            }
        except ApiError as err:
            if err.status == 503:  # overloaded or replicas down: the whole request is retried by the client
                raise
            log.warning("get_reward: a sample failed (%s); neutral score", err.status)
            return NEUTRAL_SCORE, {"error": 1}
        except Exception as err:  # noqa: BLE001 (one bad sample never fails the others: OpenRLHF drops failed requests)
            log.warning("get_reward: a sample failed (%s); neutral score", type(err).__name__)
            return NEUTRAL_SCORE, {"error": 1}

    async def _critic_reward(
        self, context: tuple[Message, ...], response: str, reference: str | None, mode: str, cfg: JudgeConfig
    ) -> tuple[float, dict[str, float]]:
        """Critic-RM's /get_reward score: sigmoid(r) of the response alone (no reference needed), or
        sigmoid(r - r_reference) with one, as every method's P(response better than the reference)."""
        self._check_tokens(self._prompt(PreferencePair("", context, response, reference or response)), "query")
        if reference is None:
            (scored,) = await self._critic(context, [response], mode, cfg)  # type: ignore[arg-type]
            return pointwise_score(scored.reward), {"valid_rate": critique_valid_rate([scored])}
        result = await self._critic_pair(PreferencePair("", context, response, reference), mode, cfg)  # type: ignore[arg-type]
        return result.score, {"valid_rate": result.valid_rate}

    async def _critic_rank(
        self, context: tuple[Message, ...], responses: list[str], mode: str, cfg: JudgeConfig
    ) -> dict[str, Any]:
        """/v1/rank on Critic-RM: each response scored alone (no pairs, no group needed): score sigmoid(r)."""
        scored = await self._critic(context, responses, mode, cfg)  # type: ignore[arg-type]
        scores = [pointwise_score(s.reward) for s in scored]
        return {
            "scores": scores,
            "rewards": [reward_from_score(s) for s in scores],
            "head_rewards": [s.reward for s in scored],
            "scheme": "pointwise",
            "critiques": [list(s.critiques) for s in scored],
            "judgments": sum(len(s.critiques) for s in scored),
        }

    @app.post("/v1/rank")
    async def rank(self, body: RankRequest, request: Request) -> dict[str, Any]:
        """Group-wise judging with no reference: each response against the others (circular: each with the
        next, both orders, 2G judgments; all_pairs: G(G-1)), one score per response (win rate or Bradley-Terry)."""
        self._authorize(request)
        t0 = time.perf_counter()
        messages = None if body.messages is None else [m.to_dict() for m in chat_messages(body.messages)]
        context = context_from(body.prompt, messages)
        if len(body.responses) > self.args.max_group:
            why = f"{len(body.responses)} responses; this server ranks at most {self.args.max_group}"
            raise ApiError(422, "responses", why, f"send at most {self.args.max_group} responses (max_group)")
        cfg, mode = self._judge_config(body), self._mode(body.mode)
        longest = max(body.responses, key=len)
        self._check_tokens(self._prompt(PreferencePair("", context, longest, longest)), "responses")
        if self.pointwise:
            out = await self._deadline(self._critic_rank(context, list(body.responses), mode, cfg), "rank")
            self.m_latency.observe(time.perf_counter() - t0, tags={"endpoint": "rank"})
            return {**out, "method": "pointwise", "comparisons": [], "request_id": request_id(request)}
        if len(body.responses) < 2:
            why = f"1 response; judge.method={self.args.judge.method} ranks responses against each other"
            raise ApiError(422, "responses", why, "send 2 or more responses, or serve judge.method=critic_rm")
        scores, traces = await self._deadline(
            self._rank(context, list(body.responses), body.scheme, body.method, mode, cfg), "rank"
        )
        self.m_latency.observe(time.perf_counter() - t0, tags={"endpoint": "rank"})
        return {
            "scores": scores,
            "rewards": [reward_from_score(s) for s in scores],
            "scheme": body.scheme,
            "method": body.method,
            "judgments": len(traces),
            "comparisons": traces,
            "request_id": request_id(request),
        }
