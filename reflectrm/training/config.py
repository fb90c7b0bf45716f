"""Every training setting, declared once: the worker's `LoopConfig` and its sections. jobs/ray_training.py's
TrainConfig is LoopConfig plus the job's data, Ray and output sections (as torchtitan keeps its job config
apart from its Trainer)."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from reflectrm.config import Method, ModelConfig, PromptConfig, VLLMConfig
from reflectrm.rewards import RewardConfig

Recipe = Literal["grpo", "rft", "sft", "critic_rm"]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-6  # method.md §3 (the paper's full fine-tuning); LoRA wants ~1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0  # linear warm-up from 0, then constant
    max_grad_norm: float = 1.0  # 0: no clipping

    def lr_lambda(self, step: int) -> float:
        return min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    n: int = 8  # rollouts per prompt (method.md §3): the same N as judge.n, one name for it everywhere
    temperature: float = 1.0  # the loss's log-probs are taken at this temperature too (logits / temperature)
    top_p: float = 1.0  # only 1.0: a nucleus is a truncated distribution the loss does not model
    max_new_tokens: int = 256
    clip: float = 0.2
    kl_coef: float = 0.0  # > 0: KL to the reference policy with the low-variance estimator (0.001 in the sibling code)
    reward: RewardConfig = dataclasses.field(default_factory=RewardConfig)

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"grpo.temperature={self.temperature}: must be >= 0 (1.0 by default; 0 is greedy)")
        if self.top_p != 1.0:
            raise ValueError(
                f"grpo.top_p={self.top_p}: rollouts from a nucleus come from a truncated distribution, while the loss "
                "takes log-probs over the whole vocabulary, so the update would be off-policy: use grpo.top_p=1.0"
            )


@dataclasses.dataclass(frozen=True)
class CriticConfig:
    """Critic-RM's joint loss (reflectrm/training/critic.py): lam * LM(critiques) + (1 - lam) * Bradley-Terry.
    The paper moves the weight from the critique loss to the reward loss; its schedule is not public (ours)."""

    lambda_start: float = 0.8
    lambda_end: float = 0.2
    schedule: Literal["linear", "cosine", "constant"] = "linear"

    def __post_init__(self) -> None:
        if not (0.0 <= self.lambda_start <= 1.0 and 0.0 <= self.lambda_end <= 1.0):
            raise ValueError(f"critic.lambda_start and lambda_end must be in [0, 1], got {self}")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """How the model is trained across workers: the worker group's shape, the strategy and the batch."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0  # on 2 cores with 2 workers use 0.5 (environment.md)
    gpus_per_worker: float = 1.0  # when use_gpu
    threads: int | None = None  # torch CPU threads per worker (None: cores / workers)
    strategy: Literal["none", "ddp", "fsdp2", "deepspeed"] = "ddp"  # none: one process, no wrapper
    zero_stage: int = 2  # deepspeed: 1, 2 or 3
    offload_optimizer: bool = False  # deepspeed: optimizer state in CPU memory (ZeRO-Offload)
    finetune: Literal["full", "lora"] = "full"
    lora: LoraConfig = LoraConfig()
    gradient_checkpointing: bool = False
    prompts_per_worker: int = 4  # prompts per worker per step (x grpo.n rollouts)
    micro_batch: int = 8  # sequences per forward/backward; the rest is gradient accumulation
    # A micro-batch is split further while its padded size (sequences x the longest, prompt + completion)
    # is over this many tokens: memory follows prompt length, not only micro_batch (8 reflection rollouts
    # of ~1,700 tokens held 16.5 GB on SmolLM2). The same gradients (one loss normalizer). 0: no limit.
    micro_batch_tokens: int = 8192
    # GRPO's update encodes each prompt once and packs its rollouts after it (reflectrm/training/packing.py):
    # the same loss and gradients; false: one [prompt, completion] row per rollout
    shared_prefix: bool = True
    max_failures: int = 1  # worker-group restarts from the last checkpoint
    keep_checkpoints: int = 2
    # Who writes GRPO's rollouts (reflectrm/training/rollout_engine.py): hf, the model being trained; vllm, a
    # vLLM engine per worker, loaded with the trainer's weights after every optimizer step; auto: vllm where a
    # GPU and vLLM are present, else hf.
    rollout_engine: Literal["auto", "hf", "vllm"] = "auto"
    # The rollout engine's vLLM settings. CPU: kv_cache_gib; GPU: gpu_memory_utilization sizes its KV cache
    # next to the trainer's memory (colocated), and with vllm_sleep its memory is released during the update.
    vllm: VLLMConfig = VLLMConfig(kv_cache_gib=1, gpu_memory_utilization=0.3)
    vllm_sleep: bool = True

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"trainer.num_workers must be >= 1, got {self.num_workers}")
        if self.zero_stage not in (1, 2, 3):
            raise ValueError(f"trainer.zero_stage must be 1, 2 or 3, got {self.zero_stage}")
        if self.prompts_per_worker < 1 or self.micro_batch < 1:
            raise ValueError("trainer.prompts_per_worker and trainer.micro_batch must be >= 1")
        if self.micro_batch_tokens < 0:
            raise ValueError(f"trainer.micro_batch_tokens must be >= 0 (0: no limit), got {self.micro_batch_tokens}")
        if self.rollout_engine not in ("auto", "hf", "vllm"):
            raise ValueError(f"trainer.rollout_engine={self.rollout_engine!r}: valid values are auto, hf and vllm")


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Everything a worker needs to train. jobs/ray_training.py's TrainConfig is this plus the job's
    data, Ray and output sections, so every training setting is declared here, once."""

    recipe: Recipe = "grpo"
    method: Method = "reflectrm"  # the judge format trained (reflectrm.methods): its prompt, parser and reward
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    grpo: GRPOConfig = GRPOConfig()
    critic: CriticConfig = CriticConfig()  # recipe=critic_rm
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    epochs: int = 1
    max_steps: int | None = None  # None: epochs x steps per epoch
    checkpoint_every: int = 10  # steps; 0: only at the end
    eval_every: int = 10  # steps; greedy accuracy on the held-out rows; 0: only at the end
    eval_max_new_tokens: int = 128
    seed: int = 0
    fail_at_step: int | None = None  # testing only: the last worker raises ONCE at this step

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (or null for whole epochs), got {self.max_steps}")

    def grad_accum(self) -> int:
        per_prompt = {"sft": 1, "critic_rm": 2}.get(self.recipe, self.grpo.n)  # critic_rm: both responses' critiques
        seqs = self.trainer.prompts_per_worker * per_prompt
        return math.ceil(seqs / self.trainer.micro_batch)
