"""The HF engine's growing preallocated KV cache vs transformers' DynamicCache (JSON out).

    .venv/bin/python -m benchmarks.kv_cache [--pairs 8 --n 8 --max-new-tokens 64]

DynamicCache concatenates every layer's whole KV cache at each decoded token; ours writes only the
new token into buffers that double when full. Same pairs, seeds and engine: the outputs must be
identical (checked), so the time ratio is the cache's gain. Runs growing, dynamic, growing again
(the mean of the two growing runs is compared, to damp drift).
"""

from __future__ import annotations

import json
import time

from transformers import DynamicCache

import reflectrm.engines.hf as hf
import reflectrm.engines.hf_cache as hf_cache
from benchmarks.common import SHARED, parse, parser, write_report
from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.formats import load_pairs
from reflectrm.inference import Judge


def main() -> None:
    ap = parser("kv_cache", __doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = parse(ap)
    pairs, _ = load_pairs("llmbar", SHARED / "llmbar" / "natural.json", limit=args.pairs)
    engine = hf.HFEngine.from_config(ModelConfig(name=args.model))
    judge = Judge(engine, JudgeConfig(n=args.n, max_new_tokens=args.max_new_tokens))
    growing = hf_cache.growing_cache
    runs, texts = {}, {}
    for name, make in (
        ("growing", growing),
        ("dynamic", lambda cfg: DynamicCache(config=cfg)),
        ("growing_again", growing),
    ):
        hf_cache.growing_cache = make
        t0 = time.perf_counter()
        results = judge.judge(pairs, "majority")
        secs = time.perf_counter() - t0
        tokens = sum(r.usage.completion_tokens for r in results)
        runs[name] = {"seconds": round(secs, 2), "completion_tokens": tokens, "tokens_per_s": round(tokens / secs, 2)}
        texts[name] = [j.text for r in results for j in r.judgments]
        print(name, runs[name], flush=True)
    hf_cache.growing_cache = growing
    mean_growing = (runs["growing"]["seconds"] + runs["growing_again"]["seconds"]) / 2
    report = {
        "model": args.model,
        "pairs": len(pairs),
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "runs": runs,
        "speedup_growing_over_dynamic": round(runs["dynamic"]["seconds"] / mean_growing, 3),
        "identical_outputs": texts["growing"] == texts["dynamic"] == texts["growing_again"],
    }
    print(json.dumps(report, indent=2))
    write_report(report, args.output)


if __name__ == "__main__":
    main()
