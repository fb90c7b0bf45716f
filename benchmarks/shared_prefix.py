"""The shared-prefix GRPO update against the plain one (trainer.shared_prefix), on SmolLM2-135M.

    .venv/bin/python -m benchmarks.shared_prefix                 # ~10 min on 2 cores
    .venv/bin/python -m benchmarks.shared_prefix --reps 1 --groups 1   # a quick look

What one GRPO update costs (the loss's forward and backward over every micro-batch, as grpo_step runs
it), with 8 rollouts per prompt, for two kinds of prompt:
- llmbar:     judge prompts of LLMBar-natural pairs (the preference task);
- reflection: reflection prompts on the same pairs, each with two ~70-token analyses (the longer task).
The completions are random tokens of 50-90 (a judgment is about 70): the update's cost depends on the
token counts only. Per kind:
- equal:  the relative difference of the two updates' whole gradient vectors (and losses), in one process;
- timing: each variant in its own process (plain, shared, alternating `--reps` times after a warm-up),
          update seconds, and peak RSS over the process's RSS after loading the model: the update's memory.
JSON out: settings, token counts, and per kind the seconds, memory and the ratios plain / shared.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from benchmarks.common import SHARED, parse, parser, write_report

KINDS = ("llmbar", "reflection")


def rollouts(engine, kind: str, groups: int, n: int):
    import torch

    from reflectrm.data.formats import load_pairs
    from reflectrm.data.items import Critique, TrainingItem
    from reflectrm.training.policy import Rollouts

    pairs, _ = load_pairs("llmbar", SHARED / "llmbar" / "natural.json")
    g = torch.Generator().manual_seed(0)
    analysis = (
        "Response 1 follows the instruction: it answers the question directly and keeps the asked format. "
        "Response 2 drifts from the request, adds content nobody asked for and misses the required detail."
    )
    prompts, completions = [], []
    for p in pairs[:groups]:
        if kind == "llmbar":
            item = TrainingItem.preference(p)
        else:
            item = TrainingItem.reflection(p, Critique(analysis, 1), Critique(analysis, 2), 1)
        prompt = engine.encode(item.messages())
        for _ in range(n):
            m = int(torch.randint(50, 91, (1,), generator=g))
            prompts.append(prompt)
            completions.append(torch.randint(10, engine.model.config.vocab_size - 1, (m,), generator=g).tolist())
    k = len(prompts)
    rewards = torch.tensor([float((i * 7919) % 5 - 2) for i in range(k)])
    return Rollouts(prompts, completions, rewards, [True] * k, [True] * k, ["response"] * k)


def update(engine, ro, shared: bool, n: int) -> tuple[float, float]:
    """One update as grpo_step runs it: (seconds, loss)."""
    from reflectrm.training.config import GRPOConfig, LoopConfig, TrainerConfig
    from reflectrm.training.objectives import group_advantages
    from reflectrm.training.packing import flatten_packs
    from reflectrm.training.policy import grpo_loss_on
    from reflectrm.training.step import update_chunks

    cfg = LoopConfig(grpo=GRPOConfig(n=n), trainer=TrainerConfig(shared_prefix=shared))
    engine.model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    adv = group_advantages(ro.rewards, n)
    tokens = sum(len(c) for c in ro.completion_ids)
    total = 0.0
    for packs in update_chunks(ro, cfg):
        idx, local = flatten_packs(packs)
        loss, _ = grpo_loss_on(
            engine.model,
            ro.select(idx),
            cfg.grpo,
            engine.tokenizer.pad_token_id,
            advantages=adv[idx],
            normalizer=tokens,
            packs=local if shared else None,
        )
        loss.backward()
        total += float(loss.detach())
    return time.perf_counter() - t0, total


def child(mode: str, kind: str, groups: int, n: int, reps: int) -> dict:
    import torch

    from reflectrm.config import ModelConfig
    from reflectrm.engines.hf import HFEngine

    torch.manual_seed(0)
    engine = HFEngine.from_config(ModelConfig())
    engine.model.train()
    ro = rollouts(engine, kind, groups, n)
    if mode == "equal":
        out = {}
        for shared in (False, True):
            _, loss = update(engine, ro, shared, n)
            out[shared] = (loss, torch.cat([p.grad.flatten() for p in engine.model.parameters() if p.grad is not None]))
        (lp, gp), (ls, gs) = out[False], out[True]
        return {
            "grad_rel_diff": float((gs - gp).norm() / gp.norm()),
            "loss_plain": lp,
            "loss_shared": ls,
            "prompt_tokens": [len(p) for p in ro.prompt_ids[::n]],
            "completion_tokens": sum(len(c) for c in ro.completion_ids),
        }
    shared = mode == "shared"
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the model loaded, the rollouts built
    update(engine, ro, shared, n)  # warm-up
    seconds = [update(engine, ro, shared, n)[0] for _ in range(reps)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "rss_after_load_mib": base / 1024, "peak_rss_mib": peak / 1024}


def run_child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.shared_prefix", "--child", *args], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = parser("shared_prefix", __doc__)
    ap.add_argument("--groups", type=int, default=2, help="prompts per update (x --n rollouts)")
    ap.add_argument("--n", type=int, default=8, help="rollouts per prompt")
    ap.add_argument("--reps", type=int, default=3, help="timed updates per variant, after one warm-up")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "KIND"), help=argparse_hidden())
    args = parse(ap)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.groups, args.n, args.reps)))
        return
    report: dict = {"settings": vars(args) | {"cpus": os.cpu_count(), "model": "smollm2-135m-instruct"}, "kinds": {}}
    common = ["--groups", str(args.groups), "--n", str(args.n), "--reps", str(args.reps)]
    for kind in KINDS:
        print(f"=== {kind}", flush=True)
        equal = run_child("equal", kind, *common)
        timing = {v: run_child(v, kind, *common) for v in ("plain", "shared")}
        plain, shared = (statistics.median(timing[v]["seconds"]) for v in ("plain", "shared"))
        mem = {v: timing[v]["peak_rss_mib"] - timing[v]["rss_after_load_mib"] for v in ("plain", "shared")}
        report["kinds"][kind] = {
            **equal,
            "update_seconds": {"plain": plain, "shared": shared},
            "speedup": plain / shared,
            "update_memory_mib": mem,
            "memory_ratio_plain_over_shared": mem["plain"] / mem["shared"] if mem["shared"] > 0 else None,
            "runs": timing,
        }
        print(
            f"  prompt tokens {equal['prompt_tokens']}, {args.n} rollouts each: update {plain:.2f} s plain, "
            f"{shared:.2f} s shared ({plain / shared:.2f}x); memory {mem['plain']:.0f} vs {mem['shared']:.0f} MiB; "
            f"gradients differ by {equal['grad_rel_diff']:.1e} (relative)",
            flush=True,
        )
    write_report(report, args.output)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
