"""Engine and method cost on the default model, side by side in one run (JSON out, never asserted).

    .venv/bin/python -m benchmarks.engine_and_method [--pairs 16 --n 8 --max-new-tokens 128]

On LLMBar-natural pairs from ../shared/data:
1. prefill-once vs naive: the same majority@N stage 1 with the prompt prefilled once and its KV
   cache copied N times, vs the prompt repeated N times (what `num_return_sequences` does).
   Same seeds, so the same tokens come out: the tokens/s ratio is the engine's gain.
2. reflect vs majority, end to end through the same code (stage 2 runs only for pairs with
   valid, split stage-1 verdicts; the untrained model rarely gives any).
3. stage 2 at its worst: 7 reflection calls per pair, built from the model's own stage-1 texts
   with verdicts forced to split (labelled as forced), so stage 2's cost is measured even when the
   untrained model gives no valid verdict: (stage 1 + stage 2) / stage 1.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from benchmarks.common import SHARED, parse, parser, write_report
from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.formats import load_pairs
from reflectrm.engines.base import GenerationRequest, SamplingParams
from reflectrm.engines.hf import HFEngine
from reflectrm.inference import Judge, Steps
from reflectrm.prompts import reflection_prompt


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def main() -> None:
    ap = parser("engine_and_method", __doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument(
        "--sections", default="prefill,reflect,stage2", help="which sections to run (others keep their last JSON)"
    )
    ap.add_argument(
        "--side-by-side-pairs",
        type=int,
        default=2,
        help="stage 2 with and without shared-prefix prefill on this many pairs",
    )
    args = parse(ap)
    sections = set(args.sections.split(","))

    pairs, _ = load_pairs("llmbar", SHARED / "llmbar" / "natural.json", limit=args.pairs)
    engine = HFEngine.from_config(ModelConfig(name=args.model))
    cfg = JudgeConfig(n=args.n, max_new_tokens=args.max_new_tokens, seed=0)
    judge = Judge(engine, cfg)
    out = Path(args.output)
    report: dict = json.loads(out.read_text()) if out.is_file() else {}
    report.update(
        {
            "model": args.model,
            "pairs": len(pairs),
            "n": args.n,
            "max_new_tokens": args.max_new_tokens,
            "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
        }
    )

    def tokens(results):
        return sum(r.usage.completion_tokens for r in results)

    # 1. prefill-once vs naive, the same stage-1 work
    if "prefill" in sections:
        runs = {}
        for name, flag in (("prefill_once", True), ("naive", False)):
            engine.prefill_once = flag
            results, secs = timed(lambda: judge.judge(pairs, "majority"))
            runs[name] = {
                "seconds": round(secs, 2),
                "completion_tokens": tokens(results),
                "tokens_per_s": round(tokens(results) / secs, 2),
            }
            print(name, runs[name], flush=True)
        engine.prefill_once = True
        runs["speedup_prefill_once_over_naive"] = round(
            runs["prefill_once"]["tokens_per_s"] / runs["naive"]["tokens_per_s"], 3
        )
        report["prefill"] = runs

    # 2. reflect vs majority end to end (stage 1 identical by construction: same seeds)
    (maj, maj_s) = timed(lambda: judge.judge(pairs, "majority"))
    if "reflect" in sections:
        (ref, ref_s) = timed(lambda: judge.judge(pairs, "reflect"))
        report["reflect_vs_majority"] = {
            "majority_seconds": round(maj_s, 2),
            "reflect_seconds": round(ref_s, 2),
            "majority_tokens": tokens(maj),
            "reflect_tokens": tokens(ref),
            "wall_ratio": round(ref_s / maj_s, 3),
            "token_ratio": round(tokens(ref) / max(1, tokens(maj)), 3),
            "stage1_valid_rate": round(sum(r.valid_rate for r in ref) / len(ref), 3),
            "stage2_skipped_rate": round(sum(r.stage2_skipped for r in ref) / len(ref), 3),
            "stage2_calls": sum(len(r.reflections) for r in ref),
        }
        print("reflect_vs_majority", report["reflect_vs_majority"], flush=True)
    if "stage2" not in sections:
        write_report(report, out)
        return

    # 3. stage 2 at its worst: every pair gets N-1 reflection calls (verdicts forced to split)
    steps = Steps(cfg)
    requests = []
    for pair, r in zip(pairs, maj):
        texts = [j.text.strip() or "(empty)" for j in r.judgments]
        anchor = (texts[0], 1)
        for i in range(1, len(texts)):
            requests.append(
                GenerationRequest(
                    reflection_prompt(pair, (texts[i], 2), anchor, steps.prompt_cfg),
                    SamplingParams(n=1, temperature=cfg.stage2_temperature, max_new_tokens=cfg.stage2_tokens, seed=i),
                )
            )
    # side by side, same run: shared-prefix prefill on vs off for the first pairs' reflection calls
    few = requests[: args.side_by_side_pairs * (args.n - 1)]
    side = {}
    for name, flag in (("shared_prefix", True), ("separate_prefill", False)):
        engine.share_prefix = flag
        g, secs = timed(lambda: engine.generate(few))
        side[name] = {
            "seconds": round(secs, 2),
            "completion_tokens": sum(len(c.token_ids) for x in g for c in x.completions),
        }
    engine.share_prefix = True
    side["speedup"] = round(side["separate_prefill"]["seconds"] / side["shared_prefix"]["seconds"], 3)
    side["calls"] = len(few)
    report["stage2_shared_prefix_side_by_side"] = side
    print("stage2_shared_prefix_side_by_side", side, flush=True)

    gens, s2_s = timed(lambda: engine.generate(requests))
    s2_tokens = sum(len(c.token_ids) for g in gens for c in g.completions)
    report["stage2_worst_case"] = {
        "shared_prefix": engine.share_prefix,
        "calls": len(requests),
        "seconds": round(s2_s, 2),
        "completion_tokens": s2_tokens,
        "prompt_tokens_mean": round(sum(g.prompt_tokens for g in gens) / len(gens), 1),
        "wall_ratio_reflect_over_majority": round((maj_s + s2_s) / maj_s, 3),
        "token_ratio_reflect_over_majority": round((tokens(maj) + s2_tokens) / max(1, tokens(maj)), 3),
        "note": "verdicts forced to split so that every pair runs all N-1 stage-2 calls",
    }
    print("stage2_worst_case", report["stage2_worst_case"], flush=True)

    write_report(report, out)


if __name__ == "__main__":
    main()
