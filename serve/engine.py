"""The engine deployment: one engine per replica, two ways of batching (args.batching):

- continuous (the vLLM engine; `auto` picks it there): each request goes straight into vLLM's
  scheduler (AsyncLLM, reflectrm/engines/vllm_async.py) the moment it arrives, so requests of
  different clients and of both stages share the running batch;
- static (`@serve.batch`; the HF engine): concurrent calls are gathered into one engine call.

A cancelled call (the ingress's deadline, a client that disconnects) stops its engine work: vLLM aborts it, the
HF engine drops its rows from the running batch (`HFEngine.cancel`). A prompt over the limit comes back as the
typed PromptTooLongError, raised to the caller of
`generate` (Ray re-raises it there as an instance of the same class). `affinity` is read by the
router (serve/routing.py), not here. Per-stage metrics on Ray's Prometheus endpoint: queue length,
running batch size, generated tokens (a counter and tokens/s), prefix-cache hit rate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from ray import serve
from ray.util import metrics

from reflectrm.config import ModelConfig
from reflectrm.engines.base import Generation, GenerationRequest, PromptTooLongError, generate_each
from serve.schemas import StageArgs

log = logging.getLogger("ray.serve")
WINDOW_S = 5.0  # tokens/s and the prefix-cache hit rate are over the last few seconds


def load_stage_engine(cfg: ModelConfig, continuous: bool) -> Any:
    """The engine for a stage: vLLM's async engine for continuous batching, else the Protocol's own."""
    from reflectrm.engines import load_engine

    if continuous:
        from reflectrm.engines.vllm_async import AsyncVLLMEngine

        return AsyncVLLMEngine.from_config(cfg)
    return load_engine(cfg)


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class EngineStage:
    def __init__(self, stage: str, cfg: ModelConfig, batch: StageArgs, continuous: bool = False):
        import torch

        torch.set_num_threads(batch.threads or os.cpu_count() or 1)
        self.continuous = continuous  # serve/app.py decides: vLLM and batching != static
        self.engine = load_stage_engine(cfg, continuous)
        self.generate_batch.set_max_batch_size(batch.max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(batch.batch_wait_timeout_s)
        tags = ("stage",)
        sizes, seconds = [1, 2, 4, 8, 16, 32, 64], [0.1, 0.5, 1, 2, 5, 10, 30, 60]
        self.m_batch = metrics.Histogram("reflectrm_stage_batch_size", "Requests per engine call (static)", sizes, tags)
        self.m_batch_s = metrics.Histogram(
            "reflectrm_stage_batch_seconds", "Seconds per engine call (static)", seconds, tags
        )
        self.m_queue = metrics.Gauge("reflectrm_stage_queue_length", "Requests waiting for the engine", tags)
        self.m_running = metrics.Gauge("reflectrm_stage_running", "Requests in the engine's running batch", tags)
        self.m_tokens = metrics.Counter("reflectrm_stage_generated_tokens", "Tokens generated", tags)
        self.m_tps = metrics.Gauge(
            "reflectrm_stage_tokens_per_s", f"Tokens generated per second (last {WINDOW_S:g} s)", tags
        )
        hit = f"Prompt tokens found in the prefix cache (last {WINDOW_S:g} s)"
        self.m_hit = metrics.Gauge("reflectrm_stage_prefix_cache_hit_rate", hit, tags)
        for m in (self.m_batch, self.m_batch_s, self.m_queue, self.m_running, self.m_tokens, self.m_tps, self.m_hit):
            m.set_default_tags({"stage": stage})
        self.inside = 0  # requests in this replica (waiting or running)
        self.running = 0  # static: requests in the current engine call
        self.tokens = 0  # static: tokens generated (continuous: the engine's counters)
        self.sampler: asyncio.Task | None = None

    # ------------------------------------------------------------------ metrics

    def _counts(self) -> tuple[int, int, int, int, int]:
        """(queue, running, generated tokens, prefix lookups, prefix hits) now."""
        if self.continuous:
            c = self.engine.counters
            return c.waiting, c.running, c.generated_tokens, c.prefix_queries, c.prefix_hits
        queries, hits = self.engine.prefix_cache_counters() if hasattr(self.engine, "prefix_cache_counters") else (0, 0)
        return self.inside - self.running, self.running, self.tokens, queries, hits

    async def _sample(self) -> None:
        """Every WINDOW_S: the gauges (queue, running batch, tokens/s, prefix-cache hit rate) and the counter."""
        _, _, tokens0, q0, h0 = self._counts()
        while True:
            await asyncio.sleep(WINDOW_S)
            queue, running, tokens, q, h = self._counts()
            self.m_queue.set(queue)
            self.m_running.set(running)
            if tokens > tokens0:
                self.m_tokens.inc(tokens - tokens0)
            self.m_tps.set((tokens - tokens0) / WINDOW_S)
            if q > q0:
                self.m_hit.set((h - h0) / (q - q0))
            tokens0, q0, h0 = tokens, q, h

    def metrics_now(self) -> dict[str, Any]:
        """The counts behind the gauges (tests, benchmarks): batching, queue, running, tokens, prefix cache."""
        queue, running, tokens, q, h = self._counts()
        return {
            "batching": "continuous" if self.continuous else "static",
            "queue": queue,
            "running": running,
            "generated_tokens": tokens,
            "prefix_queries": q,
            "prefix_hits": h,
        }

    # ------------------------------------------------------------------ generation

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02)
    async def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation | PromptTooLongError]:
        self.m_batch.observe(len(requests))
        self.running = len(requests)
        t0 = time.perf_counter()
        try:
            gens, errors = await asyncio.to_thread(generate_each, self.engine, requests)  # the loop keeps queueing
        finally:
            self.running = 0
        self.m_batch_s.observe(time.perf_counter() - t0)
        self.tokens += sum(len(c.token_ids) for g in gens if g is not None for c in g.completions)
        return [g if g is not None else e for g, e in zip(gens, errors)]  # type: ignore[misc]

    async def generate(self, request: GenerationRequest, affinity: str = "") -> Generation:
        """One request's generation; PromptTooLongError when its prompt is over the limit."""
        if self.sampler is None:
            self.sampler = asyncio.get_running_loop().create_task(self._sample())
        self.inside += 1
        try:
            if self.continuous:
                return await self.engine.agenerate(request)
            out = await self.generate_batch(request)
        except asyncio.CancelledError:  # the caller is gone (a deadline): vLLM's agenerate aborts; HF drops its rows
            if not self.continuous and hasattr(self.engine, "cancel") and self.engine.cancel(request):
                log.warning("engine call cancelled by its caller (rows dropped)")
            raise
        finally:
            self.inside -= 1
        if isinstance(out, PromptTooLongError):
            raise out
        return out
