"""A short SFT warm start in this process (no Ray): a base model after `steps` steps of 4 pairs on the
synthetic set's checkable target judgments, so that it writes the judgment format and its sampled
verdicts disagree (what stage 2, build_data and GRPO need from a 135M model).

    from reflectrm.training.warm_start import warm_start
    model_dir = warm_start("smollm2-135m-instruct", steps=15, out=Path("runs/warm"))   # cached in out/final
"""

from __future__ import annotations

from pathlib import Path

from reflectrm.config import ModelConfig
from reflectrm.training.data import TrainDataConfig, load_rows
from reflectrm.training.strategies import OptimConfig
from reflectrm.training.trainer import LocalSession, LoopConfig, TrainerConfig, train_worker

BATCH = 4


def warm_start(base: str, steps: int, out: Path, lr: float = 2e-5, seed: int = 0, critique: bool = True) -> Path:
    """`out/final` (built once; a finished folder is reused as it is). `critique`: the targets of both
    tasks, 4:1 (what GRPO on the mix needs); false: judgments only."""
    final = Path(out) / "final"
    if (final / "config.json").is_file():
        return final
    data = TrainDataConfig(format="synthetic", path=str(steps * BATCH * 2), held_out=0)
    rows, _, _ = load_rows("sft", data, seed=seed)
    rows = [r for r in rows if critique or r["task"] == "response"][: steps * BATCH]
    cfg = LoopConfig(
        recipe="sft",
        model=ModelConfig(name=base),
        optim=OptimConfig(lr=lr),
        max_steps=steps,
        trainer=TrainerConfig(strategy="none", prompts_per_worker=BATCH, micro_batch=BATCH),
        checkpoint_every=0,
        eval_every=0,
        seed=seed,
    )
    train_worker(cfg, LocalSession(rows, BATCH, Path(out)), steps, [])
    return final
