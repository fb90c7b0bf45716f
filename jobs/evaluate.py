"""Compare judging methods on labelled data (method.md §5), on the Ray Data scoring pipeline.

    python -m jobs.evaluate --config jobs/configs/evaluate.yaml model=MODEL \\
        datasets=[llmbar:PATH] methods=[greedy,majority,reflect] judge.n=8 limit=20 output=DIR
    python -m jobs.evaluate --config jobs/configs/evaluate_real.yaml      # everything in ../shared/data

Every pair is judged by each method in the given order AND with the responses swapped. Per dataset
(and per subset): accuracy, accuracy swapped, positional consistency (right in both orders),
flip rate, invalid-output rate, generated tokens per item, stage-2 skip rate and reflect's cost
relative to majority; a RewardBench-v1-style weighted score over subsets. Majority and reflect
share the same stage-1 samples, so the two are compared on identical judgments.

A dataset is `[NAME=]FORMAT:PATH[+PATH...]`; several files make one dataset whose subsets are the
files. Formats in `held_out` (JudgeBench) are reported separately: never tune against them.
Writes DIR/results.json, DIR/results.md, DIR/results.png; a re-run resumes (DIR/parts).
The metrics: reflectrm/evaluation.py; the pipeline: jobs/ray_scoring.py.
"""

from __future__ import annotations

from typing import Sequence

from jobs.common import describe, parse_job_config, run_folder, user_errors
from jobs.ray_scoring import EvaluateConfig, evaluate
from reflectrm.evaluation import markdown


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_job_config(EvaluateConfig, argv, __doc__)
    out = run_folder(cfg, cfg.output)
    j = cfg.judge
    print(
        describe(
            "evaluate",
            out,
            model=cfg.model.name,
            engine=cfg.model.engine,
            methods=",".join(cfg.methods),
            n=j.n,
            max_new_tokens=j.max_new_tokens,
            orders="given+swapped" if cfg.swap else "given",
            limit=cfg.limit,
        )
    )
    with user_errors("evaluate"):
        summary = evaluate(cfg, out)
    print("  " + ", ".join(f"{name}: {n} pairs" for name, n in summary["datasets"].items()))
    print()
    print(markdown(summary))
    ran = summary["items_judged_this_run"]
    print(
        f"wrote {out}/results.json, results.md, results.png ({ran} items judged this run, {summary['items'] - ran} resumed; "
        f"{summary['seconds']:.0f} s)"
    )
    return summary


if __name__ == "__main__":
    main()
