"""The HTTP ingress: routes (POST /v1/judge, /v1/rank, /get_reward for OpenRLHF, OpenAI's
/v1/chat/completions and /v1/completions; GET /healthz, /v1/models, /docs), bearer auth, caps, and
the library's pure steps between the stages (reflectrm.inference.ajudge), so stage 2 of one request
overlaps stage 1 of others. No prompt text, parsing, ranking or reward arithmetic here: those are the
library's. Request bodies are never logged."""

# No `from __future__ import annotations`: FastAPI must see real types on the ingress methods.
import asyncio
import logging
import time
from typing import Any

from fastapi import Request
from ray import serve

from reflectrm.critic_judge import compare
from reflectrm.requests import pair_from_request
from serve.http import app, request_id
from serve.openai_routes import OpenAIRoutes
from serve.reward_routes import RewardRoutes
from serve.schemas import JudgeRequest, chat_messages

log = logging.getLogger("ray.serve")


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=512)
@serve.ingress(app)
class Ingress(OpenAIRoutes, RewardRoutes):
    """The routes of serve/openai_routes.py and serve/reward_routes.py, and /v1/judge, /healthz, /v1/models;
    what they share (the stage handles, the token limit, caps, auth and the judge) is serve/core.py's."""

    # ------------------------------------------------------------------ endpoints

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        """Liveness, and what the clients adapt to: the judge method and whether it scores one response alone."""
        return {
            "status": "ok",
            "model": self.args.model.name,
            "method": self.args.judge.method,
            "pointwise": self.pointwise,
        }

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
        cfg, mode = self._judge_config(body), self._mode(body.mode)
        self._check_tokens(self._prompt(pair), "prompt")
        if self.pointwise:  # Critic-RM: each response critiqued alone; the swapped order reads the same rewards
            given = await self._deadline(self._critic_pair(pair, mode, cfg), "judge")
            out = given.to_dict()
            if body.swap:
                swapped = compare(*reversed(given.responses), pair.id, given.m)
                out = {
                    **out,
                    "swapped": swapped.to_dict(),
                    "consistent": swapped.preferred == 3 - (given.preferred or 0),
                }
        elif body.swap:
            given, swapped = await self._deadline(
                asyncio.gather(self._judge(pair, mode, cfg), self._judge(pair.swapped(), mode, cfg)), "judge"
            )
            out = {
                **given.to_dict(),
                "swapped": swapped.to_dict(),
                "consistent": given.preferred is not None and swapped.preferred == 3 - given.preferred,
            }
        else:
            out = (await self._deadline(self._judge(pair, mode, cfg), "judge")).to_dict()
        self.m_latency.observe(time.perf_counter() - t0, tags={"endpoint": "judge"})
        return {**out, "request_id": request_id(request)}
