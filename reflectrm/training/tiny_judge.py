"""`tiny-judge`: tiny-random after 80 SFT steps (~30 s on 2 cores) on the synthetic set's judgment
format with a content-free analysis, `<Analysis>ok</Analysis><Result>(the gold verdict)</Result>`.
It writes valid judgments about half the time, with a verdict it cannot yet get right, so GRPO on
it has real reward variance (what the training tests need).

    reflectrm models prepare tiny-judge        (make setup does it once; then `model=tiny-judge` resolves)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from reflectrm.config import ModelConfig
from reflectrm.data.items import TrainingItem
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.models import build_alias
from reflectrm.prompts import render_judgment
from reflectrm.training.config import LoopConfig, OptimConfig, TrainerConfig
from reflectrm.training.session import LocalSession
from reflectrm.training.trainer import train_worker

STEPS, BATCH = 80, 4


def build(dest: Path) -> None:
    pairs = synthetic_pairs(STEPS * BATCH, seed=11)
    rows = [TrainingItem.preference(p).with_target(render_judgment("ok", p.label)) for p in pairs]
    cfg = LoopConfig(
        recipe="sft",
        model=ModelConfig(name="tiny-random"),
        optim=OptimConfig(lr=3e-3),
        trainer=TrainerConfig(strategy="none", prompts_per_worker=BATCH, micro_batch=BATCH),
        max_steps=STEPS,
        checkpoint_every=0,
        eval_every=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        train_worker(cfg, LocalSession(rows, BATCH, Path(tmp)), STEPS, [])
        for f in (Path(tmp) / "final").iterdir():
            shutil.copy(f, dest / f.name)


def prepare() -> Path:
    """The cached tiny-judge folder, built on first use."""
    return build_alias("tiny-judge", build)
