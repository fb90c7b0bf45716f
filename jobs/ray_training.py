"""The Ray Train adapter: run reflectrm.training.trainer.train_worker on `trainer.num_workers` workers.

The driver reads the items (reflectrm.training.data), keeps `data.held_out` preference items apart for
the greedy check, and hands the rest to a `TorchTrainer` as a Ray Data dataset of typed Arrow rows
(reflectrm.data.items: the pair and critiques are struct columns); each worker gets its shard
(`get_dataset_shard`) and decodes each batch's items once. The driver draws the progress bar from metrics.jsonl, which rank 0
appends to after every step. Re-running the same command resumes from the latest checkpoint; a
crashed worker restarts the group from it (`trainer.max_failures`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from jobs.common import follow_progress
from jobs.ray_setup import RayConfig, dataset_of, init_ray
from reflectrm.data.items import TrainingItem, items_table
from reflectrm.data.sources import DataConfig
from reflectrm.methods import method_for
from reflectrm.report import plot_curves
from reflectrm.training.config import LoopConfig
from reflectrm.training.data import check_step_orders, load_items
from reflectrm.training.run_log import read_metrics, summarize_metrics
from reflectrm.training.trainer import check_resume, total_steps, train_worker


@dataclasses.dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """The worker's LoopConfig (every training setting, declared there once) plus the job's sections."""

    data: DataConfig = DataConfig(format="mix", path="runs/build_data/mix.parquet", held_out=16)
    ray: RayConfig = RayConfig()
    output: str = "runs/train"


class RaySession:
    """The worker's side of Ray Train: its slice of each step's rows, `ray.train.report`, checkpoints.

    Every worker reads the whole (small) item table in one order and takes its own contiguous slice of
    each step's rows: which rows share a worker and a step is fixed by the order alone, so an item and
    its swapped twin (data.orders=both, side by side) are judged in the same step."""

    def __init__(self, output: Path, batch_size: int):
        import ray.train

        ctx = ray.train.get_context()
        self.output, self.batch_size = output, batch_size
        self.rank, self.size = ctx.get_world_rank(), ctx.get_world_size()
        self.rows = ray.train.get_dataset_shard("train")  # not split (datasets_to_split=[]): every row

    def batches(self, epoch: int):
        step = self.batch_size * self.size
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        for batch in self.rows.iter_batches(batch_size=step, drop_last=True, batch_format="pyarrow"):
            yield [TrainingItem.from_row(r) for r in batch.slice(mine.start, self.batch_size).to_pylist()]

    def checkpoint_dir(self) -> Path | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        return Path(ckpt.path) if ckpt is not None else None  # local storage: the folder itself

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        import ray.train

        if checkpoint is None:
            ray.train.report(metrics)
            return
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint)),
            checkpoint_dir_name=f"step_{metrics['step']:06d}",
        )
        shutil.rmtree(checkpoint, ignore_errors=True)

    def progress(self, total: int, initial: int) -> Any:
        return _NoBar()  # the driver draws the bar (follow_progress)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_description(self, text: str) -> None: ...
    def close(self) -> None: ...


def worker_entry(args: dict[str, Any]) -> None:
    """What each Ray Train worker runs."""
    import ray.train
    import ray.train.torch
    import torch

    cfg: TrainConfig = args["cfg"]
    ctx = ray.train.get_context()
    threads = cfg.trainer.threads or max(1, (os.cpu_count() or 1) // max(1, ctx.get_local_world_size()))
    torch.set_num_threads(threads)
    device = str(ray.train.torch.get_device()) if cfg.trainer.use_gpu else "cpu"
    train_worker(
        cfg,
        RaySession(Path(args["output"]), cfg.trainer.prompts_per_worker),
        args["steps_per_epoch"],
        args["held_out"],
        device,
    )


def latest_checkpoint(storage: Path) -> Any:
    """The newest complete checkpoint under Ray Train's storage folder, to resume a re-run from."""
    import ray.train

    done = sorted(p for p in storage.glob("*/step_*") if (p / "state.json").exists())
    return ray.train.Checkpoint(str(done[-1])) if done else None


def train(cfg: TrainConfig, out: Path) -> dict[str, Any]:
    """The whole run; returns the summary (also summary.json) with the table rows of the first and last steps."""
    train_rows, held_out, notes = load_items(cfg.recipe, cfg.data, cfg.seed, method_for(cfg.method))
    t = cfg.trainer
    check_step_orders(cfg.recipe, cfg.data, t.prompts_per_worker)
    steps_per_epoch = len(train_rows) // (t.num_workers * t.prompts_per_worker)
    if steps_per_epoch < 1:
        raise ValueError(
            f"{len(train_rows)} training rows: not one step of {t.num_workers} worker(s) x {t.prompts_per_worker} prompts "
            "(more data, or smaller trainer.prompts_per_worker)"
        )
    total = total_steps(cfg, steps_per_epoch)
    notes.append(
        f"{len(train_rows)} training rows ({sum(r.task == 'critique' for r in train_rows)} reflection), {len(held_out)} held out; "
        f"{steps_per_epoch} steps per epoch, {total} steps"
    )

    import ray.train
    from ray.data import ExecutionOptions
    from ray.train.torch import TorchTrainer

    init_ray(cfg.ray, out)
    storage = out / "ray"
    resume = latest_checkpoint(storage)  # Ray Train v2 restores it itself: same run name, same storage_path
    state = json.loads((Path(resume.path) / "state.json").read_text()) if resume is not None else {"step": 0}
    initial = state["step"]
    if resume is not None:
        check_resume(cfg, state, Path(resume.path))  # before any worker starts: a clear error, no retries
        notes.append(f"resuming from {resume.path}")
    for note in notes:
        print(f"  {note}")
    resources = {"CPU": t.cpus_per_worker, **({"GPU": t.gpus_per_worker} if t.use_gpu else {})}
    trainer = TorchTrainer(
        worker_entry,
        train_loop_config={"cfg": cfg, "output": str(out), "steps_per_epoch": steps_per_epoch, "held_out": held_out},
        scaling_config=ray.train.ScalingConfig(
            num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name="train",
            storage_path=str(storage),
            failure_config=ray.train.FailureConfig(max_failures=t.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=t.keep_checkpoints),
        ),
        datasets={"train": dataset_of(items_table(train_rows))},
        dataset_config=ray.train.DataConfig(
            datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)
        ),  # every worker reads every row, in order, and takes its slice of each step (RaySession)
    )
    t0 = time.perf_counter()
    follow_progress(trainer.fit, out / "metrics.jsonl", total, initial, f"train ({cfg.recipe})")
    return finish(cfg, out, time.perf_counter() - t0)


def finish(cfg: TrainConfig, out: Path, seconds: float) -> dict[str, Any]:
    """summary.json and curves.png from metrics.jsonl."""
    rows = read_metrics(out / "metrics.jsonl")
    if not rows:
        raise FileNotFoundError(
            f"training ended but {out / 'metrics.jsonl'} is not visible here: the first worker wrote it on its node. "
            "With several nodes, `output` must be storage every node sees (NFS, a mounted bucket)."
        )
    summary = {
        "recipe": cfg.recipe,
        "model": cfg.model.name,
        "strategy": cfg.trainer.strategy,
        "finetune": cfg.trainer.finetune,
        "workers": cfg.trainer.num_workers,
        "wall_seconds": round(seconds, 1),
        **summarize_metrics(rows),
        "export": str(out / "final"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    panels = [
        ("reward", rows, ["reward_mean", "pref_reward_mean", "refl_reward_mean"]),
        ("valid format / accuracy", rows, ["valid_rate", "accuracy", "eval_accuracy", "eval_valid_rate"]),
        ("loss / KL", rows, ["loss", "kl"]),
        ("seconds per step", rows, ["gen_seconds", "update_seconds"]),
    ]
    plot_curves(panels, out / "curves.png", f"{cfg.recipe} on {cfg.model.name}: {summary['steps']} steps")
    return summary
