"""Does unified GRPO learn? SmolLM2-135M on the synthetic verifiable set, end to end through the jobs:

    1. sft         jobs.train recipe=sft: a short warm start on the set's checkable target judgments
                   (the untrained model writes 0% valid judgments: GRPO alone would have no signal)
    2. build_data  jobs.build_data with the warm model: 8 judgments per pair -> preference +
                   reflection items mixed 4:1 (other pairs than step 1's: another seed)
    3. grpo        jobs.train recipe=grpo on that mix: the reward, valid-format rate and held-out
                   greedy accuracy per step (metrics.jsonl, curves.png)

    .venv/bin/python -m benchmarks.grpo_learning [--sft-steps 15 --pairs 12 --grpo-steps 8 --group-size 4]

JSON out: each stage's settings, seconds and curves. Sizes are small: on 2 CPU cores one GRPO step
of 2 prompts x 4 rollouts (~700-token prompts) takes ~100 s, most of it the update. Every size is a flag.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks.common import parse, parser, write_report


def curve(folder: Path, keys: tuple[str, ...]) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: (round(r[k], 4) if isinstance(r.get(k), float) else r.get(k)) for k in ("step", *keys) if k in r}
        for r in rows
    ]


def main() -> None:
    ap = parser("grpo_learning", __doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--sft-steps", type=int, default=15)
    ap.add_argument("--sft-lr", type=float, default=2e-5)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--grpo-steps", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--grpo-lr", type=float, default=5e-6)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--workdir", default="runs/bench_grpo_learning")
    args = parse(ap)
    from jobs import build_data, train

    work = Path(args.workdir).resolve()
    cpus = os.cpu_count() or 1
    common = ["trainer.cpus_per_worker=1", f"trainer.threads={cpus}", f"ray.num_cpus={cpus}"]
    seconds = {}

    t0 = time.perf_counter()
    sft = train.main(
        [
            "--config",
            "jobs/configs/sft.yaml",
            f"model={args.model}",
            f"data.path={args.sft_steps * 4 + 8}",
            "data.held_out=8",
            f"max_steps={args.sft_steps}",
            f"optim.lr={args.sft_lr}",
            "eval_every=0",
            "checkpoint_every=0",
            f"eval_max_new_tokens={args.max_new_tokens}",
            f"output={work / 'sft'}",
            *common,
        ]
    )
    seconds["sft"] = round(time.perf_counter() - t0, 1)
    warm = work / "sft" / "final"

    t0 = time.perf_counter()
    stats = build_data.main(
        [
            "--config",
            "jobs/configs/build_data.yaml",
            f"model={warm}",
            f"data.path={args.pairs}",
            "judge.seed=1",
            f"judge.max_new_tokens={args.max_new_tokens}",
            f"pool.threads={cpus}",
            f"ray.num_cpus={cpus}",
            f"output={work / 'build'}",
        ]
    )
    seconds["build_data"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    grpo = train.main(
        [
            "--config",
            "jobs/configs/grpo.yaml",
            f"model={warm}",
            f"data.path={work / 'build' / 'mix.parquet'}",
            "data.held_out=6",
            f"max_steps={args.grpo_steps}",
            f"optim.lr={args.grpo_lr}",
            "trainer.prompts_per_worker=2",
            f"trainer.micro_batch={args.group_size * 2}",
            f"grpo.n={args.group_size}",
            f"grpo.max_new_tokens={args.max_new_tokens}",
            "eval_every=4",
            f"eval_max_new_tokens={args.max_new_tokens}",
            "checkpoint_every=0",
            f"output={work / 'grpo'}",
            *common,
        ]
    )
    seconds["grpo"] = round(time.perf_counter() - t0, 1)

    keys = (
        "loss",
        "reward_mean",
        "valid_rate",
        "accuracy",
        "pref_reward_mean",
        "refl_reward_mean",
        "pref_valid_rate",
        "refl_valid_rate",
        "kl",
        "eval_accuracy",
        "eval_valid_rate",
        "gen_seconds",
        "update_seconds",
    )
    report = {
        "model": args.model,
        "cpus": cpus,
        "seconds": seconds,
        "sft": {
            "steps": args.sft_steps,
            "lr": args.sft_lr,
            "held_out_greedy_after": {k: sft["last"].get(k) for k in ("eval_accuracy", "eval_valid_rate")},
            "losses": [r["loss"] for r in curve(work / "sft", ("loss",))],
        },
        "build_data": {
            k: stats[k] for k in ("items", "judgments", "invalid_judgments", "mixed", "preference", "reflection", "mix")
        },
        "grpo": {
            "steps": args.grpo_steps,
            "lr": args.grpo_lr,
            "group_size": args.group_size,
            "prompts_per_step": 2,
            "max_new_tokens": args.max_new_tokens,
            "generation_share": grpo["generation_share"],
            "curve": curve(work / "grpo", keys),
        },
        "curves_png": str(work / "grpo" / "curves.png"),
    }
    write_report(report, args.output)


if __name__ == "__main__":
    main()
