"""The SFT warm start, from one source: its data (`warm_start_data`: the synthetic set's checkable target
judgments of both tasks, 4:1) and its settings (`warm_start_config`). The main job runs it as a stage on
Ray Train (jobs/main_config.py), and `warm_start` runs it here in one process (no Ray), for tests and
benchmarks: a base model after `steps` steps of 4 items writes the judgment format, and its sampled
verdicts disagree (what stage 2, build_data and GRPO need from a 135M model).

    from reflectrm.training.warm_start import warm_start
    model_dir = warm_start("smollm2-135m-instruct", steps=15, out=Path("runs/warm"))   # cached in out/final
"""

from __future__ import annotations

from pathlib import Path

from reflectrm.config import ModelConfig
from reflectrm.data.sources import DataConfig
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.training.config import LoopConfig, OptimConfig, TrainerConfig
from reflectrm.training.data import load_items, sft_target_item
from reflectrm.training.session import LocalSession
from reflectrm.training.trainer import train_worker

BATCH = 4  # items per warm-start step


def warm_start_pairs(steps: int) -> int:
    """How many synthetic pairs (of seed 0) a warm start of `steps` steps draws: one batch more than it trains
    on. Held-out sets leave these out."""
    return steps * BATCH + BATCH


def warm_start_data(steps: int) -> DataConfig:
    return DataConfig(format="synthetic", path=str(warm_start_pairs(steps)), held_out=0)


def warm_start_config(base: str, steps: int, lr: float, seed: int = 0) -> LoopConfig:
    return LoopConfig(
        recipe="sft",
        model=ModelConfig(name=base),
        optim=OptimConfig(lr=lr),
        max_steps=steps,
        trainer=TrainerConfig(strategy="none", prompts_per_worker=BATCH, micro_batch=BATCH),
        checkpoint_every=0,
        eval_every=0,
        seed=seed,
    )


def warm_start(base: str, steps: int, out: Path, lr: float = 2e-5, seed: int = 0, critique: bool = True) -> Path:
    """`out/final` (built once; a finished folder is reused as it is). `critique`: the targets of both
    tasks, 4:1 (what GRPO on the mix needs); false: judgments only."""
    final = Path(out) / "final"
    if (final / "config.json").is_file():
        return final
    if critique:
        items, _, _ = load_items("sft", warm_start_data(steps), seed=seed)
    else:
        items = [sft_target_item(p, seed) for p in synthetic_pairs(warm_start_pairs(steps), seed=seed)]
    train_worker(warm_start_config(base, steps, lr, seed), LocalSession(items, BATCH, Path(out)), steps, [])
    return final
