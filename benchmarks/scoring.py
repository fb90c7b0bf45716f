"""Batch scoring through the Ray Data pipeline vs the library in a plain loop, and two pools vs one (JSON out).

    .venv/bin/python -m benchmarks.scoring [--model smollm2-135m-instruct --pairs 16 --n 8 --max-new-tokens 64]

All three sides judge the same synthetic pairs (mode reflect) with the same settings and seeds in
one run, and each includes loading the model (the Ray sides: starting their actors). Ray itself is
started before the clock (on a cluster it is already up). Ratios: Ray Data seconds / plain seconds
(the pipeline's overhead; aim <= 1.15), and separate pools / one pool.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time

from benchmarks.common import parse, parser, write_report
from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.engines import load_engine
from reflectrm.inference import Judge


def main() -> None:
    ap = parser("scoring", __doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    args = parse(ap)
    cfg = JudgeConfig(mode="reflect", n=args.n, max_new_tokens=args.max_new_tokens)
    pairs = synthetic_pairs(args.pairs)

    t0 = time.perf_counter()
    judge = Judge(load_engine(ModelConfig(name=args.model)), cfg)
    results = []
    for i in range(0, len(pairs), args.batch_size):
        results += judge.judge(pairs[i : i + args.batch_size], "reflect")
    plain_s = time.perf_counter() - t0
    plain_tokens = sum(r.usage.completion_tokens for r in results)
    del judge
    print(f"plain loop: {plain_s:.1f} s, {plain_tokens} tokens", flush=True)

    import ray

    from jobs.score import main as score

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    sides = {}
    for name, stages in (
        ("ray_separate_pools", ["stages.separate=true"]),
        ("ray_one_pool", ["stages.separate=false", "stages.stage1.cpus=1"]),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            s = score(
                [
                    "--config",
                    "jobs/configs/score.yaml",
                    f"model={args.model}",
                    f"data.path={args.pairs}",
                    f"judge.n={args.n}",
                    f"judge.max_new_tokens={args.max_new_tokens}",
                    f"stages.stage1.batch_size={args.batch_size}",
                    f"stages.stage2.batch_size={args.batch_size}",
                    *stages,
                    f"output={tmp}",
                ]
            )
        sides[name] = {
            "seconds": s["seconds"],
            "completion_tokens": s["completion_tokens"],
            "stage2_calls": s["stage2_calls"],
            "pairs_per_s": round(args.pairs / s["seconds"], 3),
            "tokens_per_s": round(s["completion_tokens"] / s["seconds"], 1),
        }
    ray.shutdown()
    report = {
        "model": args.model,
        "pairs": args.pairs,
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "plain": {
            "seconds": round(plain_s, 1),
            "completion_tokens": plain_tokens,
            "stage2_calls": sum(len(r.reflections) for r in results),
            "pairs_per_s": round(args.pairs / plain_s, 3),
            "tokens_per_s": round(plain_tokens / plain_s, 1),
        },
        **sides,
        "overhead_ratio_separate": round(sides["ray_separate_pools"]["seconds"] / plain_s, 3),
        "overhead_ratio_one_pool": round(sides["ray_one_pool"]["seconds"] / plain_s, 3),
        "separate_vs_one_pool": round(sides["ray_separate_pools"]["seconds"] / sides["ray_one_pool"]["seconds"], 3),
        "same_tokens": plain_tokens
        == sides["ray_separate_pools"]["completion_tokens"]
        == sides["ray_one_pool"]["completion_tokens"],
    }
    print(json.dumps(report, indent=2))
    write_report(report, args.output)


if __name__ == "__main__":
    main()
