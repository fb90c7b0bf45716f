"""What does Ray Train cost? The same GRPO steps in one plain process vs `TorchTrainer` with 1 worker,
side by side in one run; and how a step splits between generation and the update. JSON out.

    .venv/bin/python -m benchmarks.train_overhead [--model smollm2-135m-instruct --steps 3]

Both sides run reflectrm.training.trainer.train_worker with the same config, data and seed: the
plain side through `LocalSession` (a list of rows, checkpoints on local disk), the Ray side through
jobs.train (Ray Data shard, ray.train.report, Ray Train checkpoints). Reported: wall time of the
whole run (start-up included) and the mean step time (steps 2.. only: step 1 warms up).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import parse, parser, write_report


def argv_for(model: str, steps: int, data: Path, out: Path) -> list[str]:
    return [
        "--config",
        "jobs/configs/grpo.yaml",
        f"model={model}",
        f"data.path={data}",
        f"max_steps={steps}",
        "grpo.n=4",
        "grpo.max_new_tokens=64",
        "trainer.prompts_per_worker=2",
        "trainer.micro_batch=4",
        "data.held_out=2",
        "eval_every=0",
        "checkpoint_every=0",
        "eval_max_new_tokens=32",
        "trainer.cpus_per_worker=1",
        f"trainer.threads={os.cpu_count()}",
        f"output={out}",
    ]


def step_stats(folder: Path) -> dict:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    later = rows[1:] or rows
    gen = sum(r["gen_seconds"] for r in rows)
    upd = sum(r["update_seconds"] for r in rows)
    return {
        "steps": len(rows),
        "mean_step_seconds": round(statistics.mean(r["step_seconds"] for r in later), 2),
        "generation_share": round(gen / (gen + upd), 3),
        "losses": [round(r["loss"], 6) for r in rows],
    }


def main() -> None:
    ap = parser("train_overhead", __doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=3)
    args = parse(ap)
    import torch

    from jobs.common import parse_job_config
    from jobs.ray_training import TrainConfig
    from jobs.train import main as train_main
    from reflectrm.training.data import load_items
    from reflectrm.training.session import LocalSession
    from reflectrm.training.trainer import train_worker
    from tests.helpers import write_toy_mix

    tmp = Path(tempfile.mkdtemp(prefix="train_overhead-"))
    data = write_toy_mix(tmp / "mix.parquet", 12)

    cfg = parse_job_config(TrainConfig, argv_for(args.model, args.steps, data, tmp / "plain"), "")
    rows, held, _ = load_items(cfg.recipe, cfg.data, cfg.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    train_worker(
        cfg,
        LocalSession(rows, cfg.trainer.prompts_per_worker, tmp / "plain"),
        len(rows) // cfg.trainer.prompts_per_worker,
        held,
    )
    plain_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    train_main(argv_for(args.model, args.steps, data, tmp / "ray") + [f"ray.num_cpus={os.cpu_count()}"])
    ray_s = time.perf_counter() - t0

    plain, ray = step_stats(tmp / "plain"), step_stats(tmp / "ray")
    report = {
        "model": args.model,
        "cpus": os.cpu_count(),
        "steps": args.steps,
        "config": "GRPO, 2 prompts x 4 rollouts x 64 new tokens per step, 1 worker, full fine-tuning, fp32",
        "plain_process": {"wall_seconds": round(plain_s, 1), **plain},
        "ray_train_1_worker": {"wall_seconds": round(ray_s, 1), **ray},
        "ratio_wall_ray_over_plain": round(ray_s / plain_s, 2),
        "ratio_step_ray_over_plain": round(ray["mean_step_seconds"] / plain["mean_step_seconds"], 2),
        "same_losses": plain["losses"] == ray["losses"],
    }
    print(json.dumps(report, indent=2))
    write_report(report, args.output)


if __name__ == "__main__":
    main()
