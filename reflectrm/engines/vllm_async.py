"""Continuous batching: the vLLM engine on vLLM's AsyncLLM. Each request enters vLLM's scheduler the
moment it arrives and leaves when it is done, so requests from different clients and from both
judge stages share the running batch; nobody waits for a batch-mate's longest generation.

The same prompts, parameters and answers as VLLMEngine (it subclasses it: one `_inputs`, one
`_finish`), through the Protocol's async method `agenerate(request)`. AsyncLLM runs on its own event
loop in a background thread, so `agenerate` can be awaited from any loop (a Serve replica's) and the
sync `generate` works from plain code; cancelling an `agenerate` aborts the request inside vLLM,
which frees its KV cache (a deadline that passes stops the work, not just the wait).

`counters` holds what an operator watches, from vLLM's own per-step statistics: requests running
and waiting, prompt tokens looked up and found in the prefix cache, tokens generated.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from dataclasses import dataclass
from typing import Any, Sequence

from reflectrm.config import ModelConfig
from reflectrm.engines.base import Generation, GenerationRequest
from reflectrm.engines.vllm import VLLMEngine, engine_args


@dataclass
class EngineCounters:
    running: int = 0  # sequences groups in vLLM's running batch at the last step
    waiting: int = 0  # requests queued in vLLM's scheduler at the last step
    prefix_queries: int = 0  # prompt tokens looked up in the prefix cache (cumulative)
    prefix_hits: int = 0  # of which found (cumulative)
    generated_tokens: int = 0  # cumulative


def stat_logger_factory(counters: EngineCounters) -> Any:
    """A vLLM per-engine stat logger that copies each step's statistics into `counters`."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class Recorder(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0):
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0):
            if scheduler_stats is not None:
                counters.running = scheduler_stats.num_running_reqs
                counters.waiting = scheduler_stats.num_waiting_reqs
                counters.prefix_queries += scheduler_stats.prefix_cache_stats.queries
                counters.prefix_hits += scheduler_stats.prefix_cache_stats.hits
            if iteration_stats is not None:
                counters.generated_tokens += iteration_stats.num_generation_tokens

        def log_engine_initialized(self) -> None:
            pass

    return Recorder


class AsyncVLLMEngine(VLLMEngine):
    name = "vllm"

    def __init__(self, llm: Any, loop: asyncio.AbstractEventLoop, counters: EngineCounters, *args: Any, **kw: Any):
        super().__init__(llm, *args, **kw)
        self.loop, self.counters = loop, counters
        self._ids = itertools.count()

    @classmethod
    def from_config(cls, cfg: ModelConfig, **overrides: Any) -> AsyncVLLMEngine:  # type: ignore[override]
        _, tokenizer, kwargs, max_model_len = engine_args(cfg, overrides)
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="reflectrm-asyncllm", daemon=True).start()
        counters = EngineCounters()

        async def build() -> Any:  # AsyncLLM binds its output handler to the loop it is built on
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs), stat_loggers=[stat_logger_factory(counters)])

        llm = asyncio.run_coroutine_threadsafe(build(), loop).result()
        return cls(
            llm,
            loop,
            counters,
            tokenizer,
            max_prompt_tokens=cfg.max_prompt_tokens,
            max_model_len=max_model_len,
            model_name=cfg.name,
            enable_thinking=cfg.enable_thinking,
        )

    async def _run(self, request: GenerationRequest, prompt: Any, params: Any) -> Generation:
        from vllm.sampling_params import RequestOutputKind

        params.output_kind = RequestOutputKind.FINAL_ONLY  # one output when all n samples are done
        final = None
        async for out in self.llm.generate(prompt, params, request_id=f"reflectrm-{next(self._ids)}"):
            final = out
        if final is None:
            raise RuntimeError("vLLM returned no output for a request")
        return self._finish(final, request)

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """One request through vLLM's scheduler, awaitable from any event loop. PromptTooLongError over the
        limit (raised before anything is queued); cancelling it aborts the request in vLLM."""
        run = self._run(request, *self._inputs(request))  # the prompt check here: the caller gets the typed error
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run, self.loop))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """The sync form (plain code, not inside this engine's loop): all requests at once."""

        inputs = [self._inputs(r) for r in requests]  # every prompt checked before any is queued

        async def gather() -> list[Generation]:
            return list(await asyncio.gather(*(self._run(r, *i) for r, i in zip(requests, inputs))))

        return asyncio.run_coroutine_threadsafe(gather(), self.loop).result()

    def prefix_cache_counters(self) -> tuple[int, int]:
        return self.counters.prefix_queries, self.counters.prefix_hits

    def close(self) -> None:
        self.llm.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)
