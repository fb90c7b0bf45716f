"""The engine deployment: one engine per replica; concurrent calls are gathered into one engine
call (@serve.batch). A prompt over the limit comes back as the typed PromptTooLongError, raised
to the caller of `generate` (Ray re-raises it there as an instance of the same class)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from ray import serve
from ray.util import metrics

from reflectrm.config import ModelConfig, from_dict
from reflectrm.engines.base import Generation, GenerationRequest, PromptTooLongError
from reflectrm.engines.base import generate_each
from serve.schemas import StageArgs


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class EngineStage:
    def __init__(self, stage: str, model: dict[str, Any], batching: dict[str, Any]):
        import torch

        from reflectrm.engines import load_engine

        cfg, batch = from_dict(ModelConfig, model), from_dict(StageArgs, batching)
        torch.set_num_threads(batch.threads or os.cpu_count() or 1)
        self.engine = load_engine(cfg)
        self.generate_batch.set_max_batch_size(batch.max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(batch.batch_wait_timeout_s)
        self.m_batch = metrics.Histogram(
            "reflectrm_stage_batch_size",
            "Requests per engine call",
            boundaries=[1, 2, 4, 8, 16, 32, 64],
            tag_keys=("stage",),
        )
        self.m_batch_s = metrics.Histogram(
            "reflectrm_stage_batch_seconds",
            "Seconds per engine call",
            boundaries=[0.1, 0.5, 1, 2, 5, 10, 30, 60],
            tag_keys=("stage",),
        )
        self.m_queue = metrics.Gauge(
            "reflectrm_stage_queue_length", "Requests waiting or running in this replica", tag_keys=("stage",)
        )
        for m in (self.m_batch, self.m_batch_s, self.m_queue):
            m.set_default_tags({"stage": stage})
        self.waiting = 0

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02)
    async def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation | PromptTooLongError]:
        self.m_batch.observe(len(requests))
        t0 = time.perf_counter()
        gens, errors = await asyncio.to_thread(generate_each, self.engine, requests)  # the event loop keeps queueing
        self.m_batch_s.observe(time.perf_counter() - t0)
        return [g if g is not None else e for g, e in zip(gens, errors)]  # type: ignore[misc]

    async def generate(self, request: GenerationRequest) -> Generation:
        """One request's generation; PromptTooLongError when its prompt is over the limit."""
        self.waiting += 1
        self.m_queue.set(self.waiting)
        try:
            out = await self.generate_batch(request)
        finally:
            self.waiting -= 1
            self.m_queue.set(self.waiting)
        if isinstance(out, PromptTooLongError):
            raise out
        return out
