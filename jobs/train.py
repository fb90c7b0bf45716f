"""Train a judge: ReflectRM's unified GRPO, the RFT baseline, or SFT, on Ray Train workers fed by Ray Data.

    python -m jobs.train --config jobs/configs/grpo.yaml data.path=runs/build_data/mix.parquet
    python -m jobs.train --config jobs/configs/grpo.yaml model=tiny-random data.path=MIX.parquet \\
        trainer.num_workers=2 trainer.strategy=deepspeed trainer.zero_stage=2 max_steps=2 output=DIR
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.train --config jobs/configs/grpo.yaml output=/shared/runs/grpo trainer.use_gpu=true ...

recipes (jobs/configs/{grpo,rft,sft}.yaml):
    grpo  the mixed data of jobs.build_data (preference + reflection items), method.md §3
    rft   the same on preference items only (the paper's baseline)
    sft   supervised on target judgments: the loss on the target tokens only

The driver reads the rows, keeps `data.held_out` preference rows apart for the greedy check, and
hands the rest to a `TorchTrainer` as a Ray Data dataset; each worker gets its shard
(`get_dataset_shard`) and runs reflectrm.training.trainer.train_worker. Outputs in `output`:
config.json, metrics.jsonl (one line per step), events.jsonl, curves.png, summary.json, final/
(the merged HF export, plus adapter/ for LoRA) and ray/ (Ray Train's checkpoints). Re-running the
same command resumes from the latest checkpoint; a crashed worker restarts the group from it
(`trainer.max_failures`). With several nodes, `output` must be storage every node sees.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Literal, Sequence

from jobs.common import parse_job_config, run_folder
from jobs.ray_setup import RayConfig, init_ray, rows_of
from reflectrm.config import ModelConfig, PromptConfig, to_dict
from reflectrm.inference import derive_seed
from reflectrm.report import table
from reflectrm.training.step import GRPOConfig
from reflectrm.training.strategies import OptimConfig
from reflectrm.training.trainer import LoopConfig, LoraConfig, Recipe, train_worker


@dataclasses.dataclass(frozen=True)
class TrainDataConfig:
    format: str = "mix"  # mix: jobs.build_data's parquet (mix/pref/refl); synthetic; or a loader format (preference items)
    path: str = "runs/build_data/mix.parquet"  # for synthetic: the number of pairs
    limit: int | None = None  # at most this many training rows
    held_out: int = 16  # preference rows kept apart for the greedy check (never trained on)


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Ray Train's shape and the per-worker training set-up."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0  # on 2 cores with 2 workers use 0.5 (environment.md)
    gpus_per_worker: float = 1.0  # when use_gpu
    threads: int | None = None  # torch CPU threads per worker (None: cores / workers)
    strategy: Literal["ddp", "fsdp2", "deepspeed"] = "ddp"
    zero_stage: int = 2  # deepspeed: 1, 2 or 3
    offload_optimizer: bool = False  # deepspeed: optimizer state in CPU memory
    finetune: Literal["full", "lora"] = "full"
    lora: LoraConfig = LoraConfig()
    gradient_checkpointing: bool = False
    prompts_per_worker: int = 4
    micro_batch: int = 8
    max_failures: int = 1  # worker-group restarts from the last checkpoint
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"trainer.num_workers must be >= 1, got {self.num_workers}")
        if self.zero_stage not in (1, 2, 3):
            raise ValueError(f"trainer.zero_stage must be 1, 2 or 3, got {self.zero_stage}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    recipe: Recipe = "grpo"
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    data: TrainDataConfig = TrainDataConfig()
    grpo: GRPOConfig = GRPOConfig()
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    epochs: int = 1
    max_steps: int | None = None
    checkpoint_every: int = 10
    eval_every: int = 10
    eval_max_new_tokens: int = 128
    seed: int = 0
    fail_at_step: int | None = None  # testing only: one worker raises once at this step
    ray: RayConfig = RayConfig()
    output: str = "runs/train"

    def __post_init__(self) -> None:
        self.loop()  # the worker's own checks (max_steps, epochs, sizes), at parse time

    def loop(self) -> LoopConfig:
        t = self.trainer
        return LoopConfig(
            recipe=self.recipe, model=self.model, prompt=self.prompt, grpo=self.grpo,
            optim=dataclasses.replace(self.optim, zero_stage=t.zero_stage, offload_optimizer=t.offload_optimizer),
            strategy=t.strategy, finetune=t.finetune, lora=t.lora, gradient_checkpointing=t.gradient_checkpointing,
            prompts_per_worker=t.prompts_per_worker, micro_batch=t.micro_batch, epochs=self.epochs, max_steps=self.max_steps,
            checkpoint_every=self.checkpoint_every, eval_every=self.eval_every, eval_max_new_tokens=self.eval_max_new_tokens,
            seed=self.seed, fail_at_step=self.fail_at_step,
        )


# ---------------------------------------------------------------------------------------- data


def load_rows(cfg: TrainConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training rows, held-out preference rows). Rows: id, task, label, pair (JSON), critique_1/2
    (JSON or None), and for sft the target judgment."""
    from reflectrm.data.loaders import pair_from_row, pair_to_row
    from reflectrm.data.reflection import load_source, preference_row
    from reflectrm.prompts import render_judgment

    d = cfg.data
    if d.format == "mix":
        path = Path(d.path)
        if not path.exists():
            raise SystemExit(f"data.path={d.path}: no such file (build one with `python -m jobs.build_data`, or set data.format=synthetic)")
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        missing = {"id", "task", "label", "pair"} - set(rows[0] if rows else {})
        if missing:
            raise SystemExit(f"{path}: not a training mix (missing columns {sorted(missing)}); jobs.build_data writes mix.parquet")
        if cfg.recipe == "sft":
            if "target" not in rows[0]:
                raise SystemExit(f"{path}: recipe=sft needs a `target` column (the judgment to learn)")
    elif cfg.recipe == "sft" and d.format != "synthetic":
        import pandas as pd

        path = Path(d.path)
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=path.suffix == ".jsonl")
        if "target" not in frame.columns:
            raise SystemExit(f"{path}: recipe=sft needs a `target` column (the judgment to learn) next to the pair's fields")
        rows = []
        for rec in frame.to_dict("records"):
            pair = pair_from_row(json.loads(rec["pair"]) if "pair" in rec else rec)
            rows.append({**preference_row(pair_to_row(pair)), "target": rec["target"]})
    else:
        pairs, _ = load_source(d.format, d.path, None, "error", cfg.seed)
        rows = [preference_row(pair_to_row(p)) for p in pairs]
        if cfg.recipe == "sft":  # synthetic: the set's own checkable target judgments
            from reflectrm.data.synthetic import target_analysis

            rows = [{**r, "target": render_judgment(target_analysis(p), p.label)} for r, p in zip(rows, pairs)]
    if cfg.recipe == "rft":
        rows = [r for r in rows if r["task"] == "response"]
    if cfg.recipe == "grpo" and not any(r["task"] == "critique" for r in rows):
        print("note: no reflection items in the data: this run is RFT (preference items only)")
    pref = sorted((r for r in rows if r["task"] == "response"), key=lambda r: derive_seed(cfg.seed, "held-out", r["id"]))
    held_ids = {r["id"] for r in pref[: d.held_out]}
    held = [r for r in pref if r["id"] in held_ids]
    train = [r for r in rows if r["id"] not in held_ids]
    random.Random(derive_seed(cfg.seed, "order")).shuffle(train)
    if d.limit is not None:
        train = train[: d.limit]
    keep = ("id", "task", "label", "pair", "critique_1", "critique_2", "target")
    clean = lambda r: {k: (int(r[k]) if k == "label" else r[k]) for k in keep if k in r}  # noqa: E731
    return [clean(r) for r in train], [clean(r) for r in held]


# ---------------------------------------------------------------------------------------- Ray Train


class RaySession:
    """The worker's side of Ray Train: its Ray Data shard, `ray.train.report`, checkpoints."""

    def __init__(self, output: Path, batch_size: int):
        import ray.train

        self.output, self.batch_size = output, batch_size
        self.shard = ray.train.get_dataset_shard("train")

    def batches(self, epoch: int):
        for batch in self.shard.iter_batches(batch_size=self.batch_size, drop_last=True, batch_format="numpy"):
            yield [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows_of(batch)]

    def checkpoint_dir(self) -> Path | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        return Path(ckpt.path) if ckpt is not None else None  # local storage: the folder itself

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        import ray.train

        if checkpoint is None:
            ray.train.report(metrics)
            return
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint)), checkpoint_dir_name=f"step_{metrics['step']:06d}")
        shutil.rmtree(checkpoint, ignore_errors=True)

    def progress(self, total: int, initial: int):
        from ray.experimental.tqdm_ray import tqdm

        bar = tqdm(total=total, desc="train")
        bar.update(initial)
        return bar


def worker_entry(args: dict[str, Any]) -> None:
    """What each Ray Train worker runs."""
    import torch
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = args["cfg"]
    ctx = ray.train.get_context()
    threads = cfg.trainer.threads or max(1, (os.cpu_count() or 1) // max(1, ctx.get_local_world_size()))
    torch.set_num_threads(threads)
    device = str(ray.train.torch.get_device()) if cfg.trainer.use_gpu else "cpu"
    session = RaySession(Path(args["output"]), cfg.trainer.prompts_per_worker)
    train_worker(cfg.loop(), session, args["steps_per_epoch"], args["held_out"], device)


def latest_checkpoint(storage: Path) -> Any:
    """The newest complete checkpoint under Ray Train's storage folder, to resume a re-run from."""
    import ray.train

    done = sorted(p for p in storage.glob("*/step_*") if (p / "state.json").exists())
    return ray.train.Checkpoint(str(done[-1])) if done else None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = parse_job_config(TrainConfig, argv, __doc__)
    out = run_folder(cfg, cfg.output).resolve()
    print("resolved config (saved in config.json):")
    print(json.dumps(to_dict(cfg), indent=1))
    from reflectrm.models import resolve_model

    print(f"model: {resolve_model(cfg.model.name)}")  # a bad name fails here, before Ray starts; aliases are built once
    train_rows, held_out = load_rows(cfg)
    t = cfg.trainer
    steps_per_epoch = len(train_rows) // (t.num_workers * t.prompts_per_worker)
    if steps_per_epoch < 1:
        raise SystemExit(f"{len(train_rows)} training rows: not one step of {t.num_workers} worker(s) x {t.prompts_per_worker} prompts "
                         "(more data, or smaller trainer.prompts_per_worker)")
    print(f"{len(train_rows)} training rows ({sum(r['task'] == 'critique' for r in train_rows)} reflection), "
          f"{len(held_out)} held out; {steps_per_epoch} steps per epoch")

    import ray
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train.torch import TorchTrainer

    init_ray(cfg.ray)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the training bar says where it is
    storage = out / "ray"
    resume = latest_checkpoint(storage)
    if resume is not None:
        print(f"resuming from {resume.path}")
    dataset = ray.data.from_items(train_rows)
    resources = {"CPU": t.cpus_per_worker, **({"GPU": t.gpus_per_worker} if t.use_gpu else {})}
    trainer = TorchTrainer(
        worker_entry,
        train_loop_config={"cfg": cfg, "output": str(out), "steps_per_epoch": steps_per_epoch, "held_out": held_out},
        scaling_config=ray.train.ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name="train", storage_path=str(storage),
            failure_config=ray.train.FailureConfig(max_failures=t.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=t.keep_checkpoints),
        ),
        datasets={"train": dataset},
        dataset_config=ray.train.DataConfig(execution_options=ExecutionOptions(preserve_order=True)),  # the same rows per worker every run
        resume_from_checkpoint=resume,
    )
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    return finish(cfg, out, seconds)


def finish(cfg: TrainConfig, out: Path, seconds: float) -> dict[str, Any]:
    """The summary table, summary.json and curves.png from metrics.jsonl."""
    if not (out / "metrics.jsonl").exists():
        raise SystemExit(f"training ended but {out / 'metrics.jsonl'} is not visible here: the first worker wrote it on its node. "
                         "With several nodes, `output` must be storage every node sees (NFS, a mounted bucket).")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    first, last = rows[0], rows[-1]
    keys = ["loss", "reward_mean", "valid_rate", "accuracy", "pref_accuracy", "refl_accuracy", "kl", "eval_accuracy", "eval_valid_rate",
            "gen_tokens_per_s", "update_tokens_per_s", "gen_seconds", "update_seconds"]
    evals = [r for r in rows if "eval_accuracy" in r]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    table_rows = []
    for k in keys:
        a, b = (evals[0], evals[-1]) if k.startswith("eval") and evals else (first, last)
        if k in b:
            table_rows.append([k, fmt(a.get(k)), fmt(b.get(k)), f"{a['step']} -> {b['step']}"])
    gen = sum(r.get("gen_seconds", 0) for r in rows)
    upd = sum(r.get("update_seconds", 0) for r in rows)
    summary = {
        "recipe": cfg.recipe, "model": cfg.model.name, "strategy": cfg.trainer.strategy, "finetune": cfg.trainer.finetune,
        "workers": cfg.trainer.num_workers, "steps": last["step"], "wall_seconds": round(seconds, 1),
        "generation_share": round(gen / max(gen + upd, 1e-9), 3), "first": first, "last": last, "export": str(out / "final"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_curves(rows, out / "curves.png")
    print()
    print(table(["metric", "first", "last", "steps"], table_rows))
    share = f"; generation {100 * summary['generation_share']:.0f}% of step time" if gen else ""
    print(f"{last['step']} steps in {seconds:.0f} s{share}")
    print(f"export: {out / 'final'}  (reflectrm judge --model {out / 'final'} ...)")
    print(f"metrics: {out / 'metrics.jsonl'}, curves: {out / 'curves.png'}")
    return summary


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("reward", ["reward_mean", "pref_reward_mean", "refl_reward_mean"]), ("valid format / accuracy", ["valid_rate", "accuracy", "eval_accuracy", "eval_valid_rate"]),
              ("loss / KL", ["loss", "kl"]), ("seconds per step", ["gen_seconds", "update_seconds"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (title, keys) in zip(axes, panels):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=k)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
