"""The training loop of one worker: GRPO (unified or RFT) or SFT, over any `Session`.

    session   where the items come from and where metrics and checkpoints go: Ray Train in
              jobs/ray_training.py (a shard of a Ray Data stream, `ray.train.report`), or `LocalSession`
              (reflectrm/training/session.py: one plain process, the baseline of the Ray Train overhead benchmark)
    worker    the model, its strategy, the KL reference and the rollout engine (reflectrm/training/worker.py)
    step      one GRPO or SFT step (reflectrm/training/step.py)

Resumption: a checkpoint holds the model, optimizer and scheduler (each strategy's own format) and
`state.json` (the step). The data position is the step: an epoch's first `step - epoch * steps`
batches are skipped. Randomness is derived from (seed, item id, step), so nothing else is needed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Sequence

from reflectrm.data.items import TrainingItem
from reflectrm.training.config import CriticConfig, LoopConfig
from reflectrm.training.critic import critic_step
from reflectrm.training.dist import barrier, world
from reflectrm.training.model import export
from reflectrm.training.run_log import RunLog, short
from reflectrm.training.session import Session
from reflectrm.training.step import greedy_check, grpo_step, sft_step
from reflectrm.training.worker import Worker


def train_worker(
    cfg: LoopConfig, session: Session, steps_per_epoch: int, held_out: Sequence[TrainingItem], device: str = "cpu"
) -> dict[str, Any]:
    """The whole run on one worker; returns the last metrics (with the export path on rank 0)."""
    _, size = world()
    if steps_per_epoch < 1:
        raise ValueError(
            f"not one step of data: each step needs {size} worker(s) x {cfg.trainer.prompts_per_worker} prompts"
        )
    worker = Worker.build(cfg, device)
    try:
        return run_loop(worker, session, steps_per_epoch, held_out)
    finally:
        worker.close()


def total_steps(cfg: LoopConfig, steps_per_epoch: int) -> int:
    whole = cfg.epochs * steps_per_epoch
    return whole if cfg.max_steps is None else min(cfg.max_steps, whole)


def run_loop(
    worker: Worker, session: Session, steps_per_epoch: int, held_out: Sequence[TrainingItem]
) -> dict[str, Any]:
    cfg, strategy = worker.cfg, worker.strategy
    rank, size = world()
    total = total_steps(cfg, steps_per_epoch)
    step = 0
    resume = session.checkpoint_dir()
    if resume is not None:
        state = json.loads((resume / "state.json").read_text())
        check_resume(cfg, state, resume)
        strategy.load(resume)
        step = state["step"]
    log = RunLog(session.output)
    if rank == 0:
        log.start(step, total, size)
    bar = session.progress(total, step) if rank == 0 else None

    last: dict[str, Any] = {}
    while step < total:
        epoch = step // steps_per_epoch
        skip = step - epoch * steps_per_epoch
        for i, rows in enumerate(session.batches(epoch)):
            if i < skip:
                continue  # consumed before the checkpoint we resumed from
            if step >= total or i >= steps_per_epoch:
                break
            t0 = time.perf_counter()
            if cfg.recipe == "critic_rm":
                m = critic_step(worker, rows, step, total)
            else:
                m = sft_step(worker, rows) if cfg.recipe == "sft" else grpo_step(worker, rows, step)
            step += 1
            _fail_once(cfg, session.output, step)
            evaluate = cfg.recipe != "critic_rm"  # the greedy check judges pairs: a critic writes critiques
            if evaluate and ((cfg.eval_every and step % cfg.eval_every == 0) or step == total):
                rollout_model = strategy.rollout_model().eval()  # collective under FSDP2 / ZeRO-3
                if rank == 0:
                    m.update(greedy_check(cfg, worker.engine.with_model(rollout_model), held_out))
                barrier()
            m.update(step=step, epoch=epoch, step_seconds=time.perf_counter() - t0)
            session.report(m, _checkpoint(worker, session.output, step, epoch, total))
            if rank == 0:
                log.step(m)
                bar.set_description(short(m))
                bar.update(1)
            last = m
        else:
            continue
        if step >= total:
            break

    state = strategy.full_state_dict()  # collective
    if rank == 0:
        bar.close()
        summary = {k: v for k, v in last.items() if isinstance(v, (int, float))}
        last = {**last, "export": str(export(cfg, state, session.output / "final", summary))}
        log.end(step)
    return last


def _checkpoint(worker: Worker, output: Path, step: int, epoch: int, total: int) -> Path | None:
    """Every checkpoint_every steps and at the end: this rank's files in a staging folder (the session moves it)."""
    every = worker.cfg.checkpoint_every
    if not ((every and step % every == 0) or step == total):
        return None
    rank, _ = world()
    ckpt = Path(output / ".staging" / f"rank{rank}_step{step}")
    ckpt.mkdir(parents=True, exist_ok=True)
    worker.strategy.save(ckpt)
    if rank == 0:
        state = {"step": step, "epoch": epoch, "settings": resume_settings(worker.cfg)}
        (ckpt / "state.json").write_text(json.dumps(state))
    return ckpt


def resume_settings(cfg: LoopConfig) -> dict[str, Any]:
    """What a checkpoint's optimizer and model state depend on: a resume under other values would mix two
    runs (the optimizer keeps the checkpoint's learning rate, for one), so it is refused."""
    flat = {"recipe": cfg.recipe, "method": cfg.method, "seed": cfg.seed, "model.name": cfg.model.name}
    for section in ("optim", "grpo", "critic"):
        for k, v in dataclasses.asdict(getattr(cfg, section)).items():
            flat[f"{section}.{k}"] = list(v) if isinstance(v, tuple) else v
    t = cfg.trainer
    flat |= {
        "trainer.finetune": t.finetune,
        "trainer.lora": dataclasses.asdict(t.lora) if t.finetune == "lora" else None,
    }
    return json.loads(json.dumps(flat))  # as the checkpoint holds them (tuples -> lists)


def check_resume(cfg: LoopConfig, state: dict[str, Any], where: Path) -> None:
    """A ValueError naming every setting that differs from the checkpoint's (one saved without them passes)."""
    saved = state.get("settings")
    if saved is None:
        return
    legacy = {"method": "reflectrm"} | {f"critic.{k}": v for k, v in dataclasses.asdict(CriticConfig()).items()}
    now, saved = resume_settings(cfg), legacy | saved  # saved before these settings existed: their defaults
    differ = [f"{k}={saved.get(k)!r} there, {v!r} now" for k, v in now.items() if saved.get(k) != v]
    if differ:
        raise ValueError(
            f"the checkpoint {where} was made with other settings ({'; '.join(differ)}): resuming would mix two runs "
            "(the optimizer would keep the checkpoint's learning rate). Set them back to resume, or train into "
            "another output folder"
        )


def _fail_once(cfg: LoopConfig, output: Path, step: int) -> None:
    """Testing only (fail_at_step): the last worker raises once at that step, to prove restarts."""
    rank, size = world()
    if cfg.fail_at_step == step and rank == size - 1:
        marker = output / f".failed_once_at_{step}"
        if not marker.exists():
            marker.touch()
            raise RuntimeError(f"injected failure at step {step} (fail_at_step; testing only)")
