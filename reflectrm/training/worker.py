"""What one training worker holds: the engine over the model being trained, the strategy that wraps it,
the KL reference and, with trainer.rollout_engine=vllm, the vLLM engine that writes the rollouts.

    worker = Worker.build(cfg, "cpu")
    engine = worker.policy(step)        # this step's rollout engine, synced to the current weights
    ...
    worker.close()
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from reflectrm.engines.hf import HFEngine
from reflectrm.training.config import LoopConfig
from reflectrm.training.model import build_model
from reflectrm.training.rollout_engine import VLLMRollouts, choose_rollout_engine, lora_scaling
from reflectrm.training.strategies import Strategy, make_strategy


@dataclass
class Worker:
    cfg: LoopConfig
    engine: HFEngine  # the tokenizer, and generation over the model being trained (hf rollouts, the greedy check)
    strategy: Strategy
    ref: torch.nn.Module | None  # the KL reference (None: no KL term)
    vllm: VLLMRollouts | None = None  # trainer.rollout_engine=vllm: the engine that writes GRPO's rollouts
    sync_seconds: float = 0.0  # the weight sync into the vLLM engine before this step's rollouts (0: none)

    @classmethod
    def build(cls, cfg: LoopConfig, device: str = "cpu") -> Worker:
        torch.manual_seed(cfg.seed)
        engine, model, ref = build_model(cfg, device)
        t = cfg.trainer
        strategy = make_strategy(
            model,
            cfg.optim,
            t.strategy,
            cfg.grad_accum(),
            bf16=device.startswith("cuda"),
            zero_stage=t.zero_stage,
            offload_optimizer=t.offload_optimizer,
        )
        vllm = None
        if cfg.recipe in ("grpo", "rft") and choose_rollout_engine(t.rollout_engine, device) == "vllm":
            vllm = VLLMRollouts(cfg.model, t.vllm, device, sleep=t.vllm_sleep)
        return cls(cfg, engine, strategy, ref, vllm)

    def policy(self, step: int) -> Any:
        """The engine that writes this step's rollouts. hf: the engine over the rollout model (a collective
        under FSDP2 / ZeRO-3). vllm: the vLLM engine, loaded with the current weights when they changed since
        its last sync (every optimizer step, and a resume); the gather is a collective, timed in sync_seconds."""
        self.sync_seconds = 0.0
        if self.vllm is None:
            return self.engine.with_model(self.strategy.rollout_model().eval())
        if self.vllm.synced_step != step:
            t0 = time.perf_counter()
            state = self.strategy.full_state_dict()  # collective under FSDP2 / ZeRO-3
            self.vllm.sync(state, step, lora_scaling(self.strategy.module))
            del state
            self.sync_seconds = time.perf_counter() - t0
        return self.vllm.engine

    def after_rollout(self) -> None:
        """Between generation and the update: vLLM releases its memory on GPU (sleep mode)."""
        if self.vllm is not None:
            self.vllm.release()

    def close(self) -> None:
        if self.vllm is not None:
            self.vllm.close()
