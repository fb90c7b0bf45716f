"""The reflection-data builder through Ray Data vs the same library calls in a plain loop (JSON out).

    .venv/bin/python -m benchmarks.build_data_overhead [--pairs 16 --n 8 --max-new-tokens 64]

Both sides judge the same synthetic pairs with the same engine settings and seeds, and both
include loading the model; the Ray side also includes `ray.init` and starting its actor. The
ratio (Ray Data seconds / plain seconds) is the pipeline's overhead; the aim is <= 1.15.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from benchmarks.common import parse, parser, write_report
from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.builder import sample_and_grade
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.engines import load_engine


def main() -> None:
    ap = parser("build_data_overhead", __doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    args = parse(ap)
    cfg = JudgeConfig(mode="majority", n=args.n, max_new_tokens=args.max_new_tokens)
    pairs = synthetic_pairs(args.pairs)

    t0 = time.perf_counter()
    engine = load_engine(ModelConfig(name=args.model))
    rows = []
    for i in range(0, len(pairs), args.batch_size):
        rows += sample_and_grade(engine, pairs[i : i + args.batch_size], cfg)
    plain_s = time.perf_counter() - t0
    plain_tokens = sum(r["completion_tokens"] for r in rows)
    del engine
    print(f"plain loop: {plain_s:.1f} s, {plain_tokens} tokens", flush=True)

    from jobs.build_data import main as build

    with tempfile.TemporaryDirectory() as tmp:
        stats = build(
            [
                "--config",
                "jobs/configs/build_data.yaml",
                f"model.name={args.model}",
                f"data.path={args.pairs}",
                f"judge.n={args.n}",
                f"judge.max_new_tokens={args.max_new_tokens}",
                f"pool.batch_size={args.batch_size}",
                "ray.num_cpus=2",
                f"output={tmp}",
            ]
        )
    ray_s = stats["sampling_seconds"]
    report = {
        "model": args.model,
        "pairs": args.pairs,
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "cpus": os.cpu_count(),
        "plain": {
            "seconds": round(plain_s, 1),
            "completion_tokens": plain_tokens,
            "pairs_per_s": round(args.pairs / plain_s, 3),
            "tokens_per_s": round(plain_tokens / plain_s, 1),
        },
        "ray_data": {
            "seconds": ray_s,
            "completion_tokens": stats["completion_tokens"],
            "pairs_per_s": round(args.pairs / ray_s, 3),
            "tokens_per_s": round(stats["completion_tokens"] / ray_s, 1),
        },
        "overhead_ratio": round(ray_s / plain_s, 3),
        "same_tokens": plain_tokens == stats["completion_tokens"],
    }
    print(json.dumps(report, indent=2))
    write_report(report, args.output)


if __name__ == "__main__":
    main()
