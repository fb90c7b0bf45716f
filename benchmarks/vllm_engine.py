"""The vLLM engine vs the HF engine on judge workloads, side by side in one run (JSON out).

    .venv/bin/python -m benchmarks.vllm_engine [--model smollm2-135m-instruct --pairs 16 --n 8 --max-new-tokens 128]

For each engine (hf; vllm with prefix caching; vllm without): load it, then judge the same LLMBar
pairs (../shared/data/llmbar/natural.json, the first `--pairs`; synthetic pairs when the file is
absent) with `majority` and then `reflect`, same seeds. vLLM's prefix cache is emptied before each
method, so reflect does not reuse majority's work. Reports per engine and method: seconds, generated
tokens, generated tokens/s, prompt tokens, stage-2 calls; the ratios vLLM/HF (tokens/s, aim >= 4x on
CPU) and reflect/majority seconds on each engine (reflect's cost; aim <= 1.25x with prefix caching).
Stage 2 runs for every pair with 2+ valid judgments (`skip_unanimous` off): reflect's worst case.
Use a model that writes valid judgments (a trained one), or stage 2 never runs and reflect = majority.
"""

from __future__ import annotations

import gc
import json
import os
import time

from benchmarks.common import SHARED, parse, parser, write_report
from reflectrm.config import JudgeConfig, ModelConfig, VLLMConfig
from reflectrm.engines import load_engine
from reflectrm.inference import Judge


def load_pairs(n: int):
    path = SHARED / "llmbar" / "natural.json"
    if path.is_file():
        from reflectrm.data.formats import load_pairs as load

        pairs, _ = load("llmbar", path)
        return pairs[:n], f"llmbar natural, first {n}"
    from reflectrm.data.synthetic import synthetic_pairs

    return synthetic_pairs(n), f"synthetic, {n}"


def run_methods(engine, pairs, cfg: JudgeConfig, batch: int) -> dict:
    out = {}
    for mode in ("majority", "reflect"):
        if hasattr(engine, "llm"):
            engine.llm.reset_prefix_cache()
        t0 = time.perf_counter()
        results = []
        for i in range(0, len(pairs), batch):
            results += Judge(engine, cfg).judge(pairs[i : i + batch], mode)
        s = time.perf_counter() - t0
        gen = sum(r.usage.completion_tokens for r in results)
        out[mode] = {
            "seconds": round(s, 1),
            "completion_tokens": gen,
            "prompt_tokens": sum(r.usage.prompt_tokens for r in results),
            "tokens_per_s": round(gen / s, 1),
            "stage2_calls": sum(len(r.reflections) for r in results),
            "valid_rate": round(sum(r.valid_rate for r in results) / len(results), 3),
            "preferred": [r.preferred for r in results],
        }
        print(
            f"  {mode}: {s:.1f} s, {gen} tokens, {gen / s:.1f} tokens/s, stage-2 calls {out[mode]['stage2_calls']}",
            flush=True,
        )
    out["reflect_over_majority_seconds"] = round(out["reflect"]["seconds"] / out["majority"]["seconds"], 3)
    return out


def main() -> None:
    ap = parser("vllm_engine", __doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16, help="pairs per Judge call (one engine call per stage)")
    ap.add_argument("--engines", default="hf,vllm", help="of hf, vllm, vllm_no_prefix_cache")
    args = parse(ap)
    pairs, source = load_pairs(args.pairs)
    # skip_unanimous off: stage 2 runs for every pair with 2+ valid judgments (a trained small model is
    # often unanimous, and stage 2 would then be skipped, measuring nothing); this is reflect's worst case.
    cfg = JudgeConfig(n=args.n, max_new_tokens=args.max_new_tokens, seed=0, skip_unanimous=False)
    report: dict = {
        "model": args.model,
        "pairs": source,
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "cpus": os.cpu_count(),
        "engines": {},
    }
    for name in args.engines.split(","):
        model = ModelConfig(
            name=args.model,
            engine="hf" if name == "hf" else "vllm",
            vllm=VLLMConfig(prefix_caching=name != "vllm_no_prefix_cache"),
        )
        print(f"{name}: loading", flush=True)
        t0 = time.perf_counter()
        engine = load_engine(model)
        load_s = time.perf_counter() - t0
        report["engines"][name] = {"load_seconds": round(load_s, 1), **run_methods(engine, pairs, cfg, args.batch)}
        if hasattr(engine, "close"):
            engine.close()
        del engine
        gc.collect()
    e = report["engines"]
    if "hf" in e:
        for name in e:
            if name != "hf":
                for mode in ("majority", "reflect"):
                    report[f"{name}_over_hf_tokens_per_s_{mode}"] = round(
                        e[name][mode]["tokens_per_s"] / e["hf"][mode]["tokens_per_s"], 2
                    )
                    report[f"hf_over_{name}_seconds_{mode}"] = round(
                        e["hf"][mode]["seconds"] / e[name][mode]["seconds"], 2
                    )
        report["same_verdicts_as_hf"] = {
            n: {m: e[n][m]["preferred"] == e["hf"][m]["preferred"] for m in ("majority", "reflect")}
            for n in e
            if n != "hf"
        }
    print(json.dumps({k: v for k, v in report.items() if k != "engines"}, indent=2))
    write_report(report, args.output)


if __name__ == "__main__":
    main()
