"""What stage 2 costs: majority@N vs reflect (full) vs reflect (lazy) vs lazy with verdict-only
reflection, side by side on one vLLM engine, the same pairs and seeds (issue 17).

    .venv/bin/python -m benchmarks.stage2_cost                        # ~45 min on 2 cores; resumable
    .venv/bin/python -m benchmarks.stage2_cost --pairs 32 --n 8 --max-new-tokens 128 --model PATH

The judge must write valid verdicts that disagree, or stage 2 never runs: by default a fresh SFT warm
start of SmolLM2-135M on the synthetic set's checkable target judgments (`--warmstart-steps`, no Ray,
cached in runs/bench_stage2_cost/warmstart). The unanimity skip stays on, as users run it; the
`forced` section repeats every arm with it off (stage 2 on every pair with >= 2 valid judgments).

Each arm runs its own stage 1 (majority's cost is exactly a stage 1). The prefix cache is reset
before each arm, so no arm inherits another's warm cache. Stage-2 prefix-cache hit rate: vLLM's
own counters (prompt tokens found / looked up) over the stage-2 calls only.

Resumable: each finished arm is saved in results/stage2_cost.partial.json under a fingerprint of the
settings; a re-run with the same settings skips it, one with other settings starts afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, SHARED, parse, parser, write_report

ARMS = {  # name -> (mode, judge settings)
    "majority": ("majority", {}),
    "reflect_full": ("reflect", {"stage2": "full"}),
    "reflect_lazy": ("reflect", {"stage2": "lazy"}),
    "reflect_lazy_verdict": ("reflect", {"stage2": "lazy", "stage2_output": "verdict"}),
}


class Metered:
    """The engine, with each call's seconds and (stage-2 calls) prefix-cache counters recorded."""

    def __init__(self, engine: Any):
        self.engine, self.name = engine, engine.name
        self.calls: list[dict[str, Any]] = []

    def count_tokens(self, messages: Any) -> int:
        return self.engine.count_tokens(messages)

    def generate(self, requests: Any) -> Any:
        stage2 = any("## Critiques for Judgment" in r.messages[-1].content for r in requests)
        q0, h0 = self.engine.prefix_cache_counters()
        t0 = time.perf_counter()
        out = self.engine.generate(requests)
        q1, h1 = self.engine.prefix_cache_counters()
        self.calls.append(
            {
                "stage": 2 if stage2 else 1,
                "seconds": time.perf_counter() - t0,
                "requests": len(requests),
                "cache_queried": q1 - q0,
                "cache_hit": h1 - h0,
            }
        )
        return out


def run_arm(engine: Any, pairs: list, mode: str, judge: Any, batch: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from reflectrm.inference import Judge

    metered = Metered(engine)
    if hasattr(engine.llm, "reset_prefix_cache"):
        engine.llm.reset_prefix_cache()
    t0 = time.perf_counter()
    results = []
    for start in range(0, len(pairs), batch):
        results += Judge(metered, judge).judge(pairs[start : start + batch], mode)
    seconds = time.perf_counter() - t0
    s2 = [c for c in metered.calls if c["stage"] == 2]
    queried = sum(c["cache_queried"] for c in s2)
    summary = {
        "seconds": round(seconds, 1),
        "generated_tokens": sum(r.usage.completion_tokens for r in results),
        "prompt_tokens": sum(r.usage.prompt_tokens for r in results),
        "stage2_seconds": round(sum(c["seconds"] for c in s2), 1),
        "stage2_engine_calls": len(s2),
        "stage2_calls_per_pair": sum(len(r.reflections) for r in results) / len(results),
        "stage2_not_asked_per_pair": sum(len(r.not_asked) for r in results) / len(results),
        "share_of_pairs_with_stage2": sum(bool(r.reflections) for r in results) / len(results),
        "stage2_prefix_cache_hit_rate": round(sum(c["cache_hit"] for c in s2) / queried, 3) if queried else None,
        "valid_judgment_rate": sum(r.valid_rate for r in results) / len(results),
    }
    return summary, [
        {
            "preferred": r.preferred,
            "score": r.score,
            "better": [x.better_than_anchor for x in r.reflections],
            "indices": [x.index for x in r.reflections],
        }
        for r in results
    ]


def compare(section: dict[str, Any], verdicts: dict[str, list[dict[str, Any]]]) -> None:
    maj, full, lazy, verdict = (section[a] for a in ARMS)
    section["lazy_over_majority_wall"] = round(lazy["seconds"] / maj["seconds"], 3)
    section["lazy_over_majority_tokens"] = round(lazy["generated_tokens"] / maj["generated_tokens"], 3)
    section["full_over_majority_wall"] = round(full["seconds"] / maj["seconds"], 3)
    section["lazy_verdict_over_majority_wall"] = round(verdict["seconds"] / maj["seconds"], 3)
    f, lz, vo = verdicts["reflect_full"], verdicts["reflect_lazy"], verdicts["reflect_lazy_verdict"]
    section["verdicts_identical_full_lazy"] = [a["preferred"] for a in f] == [b["preferred"] for b in lz]
    section["scores_identical_full_lazy"] = [a["score"] for a in f] == [b["score"] for b in lz]
    # each comparison lazy asked gives full's answer (in whichever round it ran)
    section["comparisons_identical_full_lazy"] = all(
        dict(zip(b["indices"], b["better"])).items() <= dict(zip(a["indices"], a["better"])).items()
        for a, b in zip(f, lz)
    )
    section["verdict_only_agreement_with_full"] = round(
        sum(a["preferred"] == b["preferred"] for a, b in zip(f, vo)) / len(f), 3
    )


def main() -> None:
    ap = parser("stage2_cost", __doc__)
    ap.add_argument(
        "--model", default=None, help="a judge whose verdicts disagree (default: a fresh SmolLM2 warm start)"
    )
    ap.add_argument("--base", default="smollm2-135m-instruct", help="what the default warm start trains")
    ap.add_argument("--warmstart-steps", type=int, default=15)  # grpo_learning's warm start (valid rate ~0.7)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16, help="pairs per engine call")
    ap.add_argument("--kv-cache-gib", type=int, default=4)
    args = parse(ap)
    from reflectrm.config import JudgeConfig, ModelConfig, VLLMConfig
    from reflectrm.data.formats import load_pairs
    from reflectrm.engines.vllm import VLLMEngine
    from reflectrm.training.warm_start import warm_start

    warm = Path("runs/bench_stage2_cost/warmstart")  # judge targets only, as the recorded run's warm start
    model = args.model or str(warm_start(args.base, args.warmstart_steps, warm, critique=False))
    pairs, _ = load_pairs("llmbar", SHARED / "llmbar" / "natural.json", limit=args.pairs)
    settings = {
        "model": model,
        "pairs": len(pairs),
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "batch": args.batch,
        "seed": 0,
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    partial_path = RESULTS / "stage2_cost.partial.json"
    partial = json.loads(partial_path.read_text()) if partial_path.is_file() else {}
    if partial.get("fingerprint") != key:
        partial = {"fingerprint": key, "settings": settings, "arms": {}}
    engine = VLLMEngine.from_config(
        ModelConfig(name=model, engine="vllm", vllm=VLLMConfig(kv_cache_gib=args.kv_cache_gib))
    )
    base = JudgeConfig(n=args.n, max_new_tokens=args.max_new_tokens, seed=0)
    report: dict[str, Any] = {"settings": settings, "engine": "vllm", "data": "LLMBar natural (first pairs)"}
    for section, skip in (("as_run", True), ("forced", False)):
        out, verdicts = {}, {}
        for arm, (mode, extra) in ARMS.items():
            name = f"{section}/{arm}"
            if arm == "majority" and section == "forced":  # the unanimity skip does not touch majority: the same run
                name = "as_run/majority"
            if name not in partial["arms"]:
                judge = dataclasses.replace(base, skip_unanimous=skip, **extra)
                print(f"{name} ...", flush=True)
                summary, v = run_arm(engine, pairs, mode, judge, args.batch)
                partial["arms"][name] = {"summary": summary, "verdicts": v}
                partial_path.write_text(json.dumps(partial, indent=1))  # a re-run resumes after this arm
            out[arm], verdicts[arm] = partial["arms"][name]["summary"], partial["arms"][name]["verdicts"]
            print(f"  {name}: {out[arm]['seconds']} s, {out[arm]['generated_tokens']} generated tokens", flush=True)
        compare(out, verdicts)
        report[section] = out
    engine.close()
    write_report(report, args.output)
    exact = ("verdicts_identical_full_lazy", "scores_identical_full_lazy", "comparisons_identical_full_lazy")
    broken = [
        f"{name}: {k}" for name, sec in report.items() if isinstance(sec, dict) for k in exact if sec.get(k) is False
    ]
    if broken:  # lazy stage 2 is exact by construction (reflectrm/inference.py): a difference is a bug
        raise SystemExit(f"stage2_cost: lazy stage 2 differs from full: {', '.join(broken)}")


if __name__ == "__main__":
    main()
