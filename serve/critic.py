"""Critic-RM's deployment (judge.method=critic_rm): the export and its reward head in one replica
(reflectrm.critic_judge.CriticJudge on the HF engine: the head reads hidden states). `score` critiques each
response alone, m times, and returns each one's mean head reward with its critiques and tokens; `generate`
serves the OpenAI routes from the same model. Calls run one at a time on a worker thread (one HF engine), so
the replica's event loop keeps taking requests; Serve's bounded queue is in front of it as for the engines."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ray import serve

from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig
from reflectrm.engines.base import Generation, GenerationRequest, generate_each
from reflectrm.records import Message


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class CriticStage:
    def __init__(self, model: ModelConfig, judge: JudgeConfig, prompt: PromptConfig, threads: int | None = None):
        import torch

        from reflectrm.critic_judge import CriticJudge

        torch.set_num_threads(threads or os.cpu_count() or 1)
        self.judge = CriticJudge.for_config(model, judge, prompt)
        self.lock = asyncio.Lock()

    async def score(
        self,
        context: tuple[Message, ...],
        responses: list[str],
        key: str,
        m: int,
        max_new_tokens: int | None = None,
        seed: int | None = None,
    ) -> list[Any]:
        """Each response's Scored (reward, critiques, usage); PromptTooLongError when a prompt is over the limit."""
        async with self.lock:
            return await asyncio.to_thread(self.judge.reward, context, responses, key, m, max_new_tokens, seed)

    async def generate(self, request: GenerationRequest, affinity: str = "") -> Generation:
        """The OpenAI routes' generation, on the critic's own model."""
        async with self.lock:
            gens, errors = await asyncio.to_thread(generate_each, self.judge.engine, [request])
        if errors[0] is not None:
            raise errors[0]
        return gens[0]
