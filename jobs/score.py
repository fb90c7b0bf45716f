"""Score a whole dataset with a judge, as a Ray Data pipeline (method.md §4).

    python -m jobs.score --config jobs/configs/score.yaml data.format=llmbar data.path=FILE output=runs/score
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.score --config jobs/configs/score.yaml data.format=pandalm data.path=FILE output=/mnt/shared/score

read pairs -> stage 1 (an actor pool holding the engine: N judgments per pair) -> stage 2 (its own
actor pool: select, the reflection calls, the vote) -> Parquet parts written as they stream in ->
OUTPUT/scores.parquet (or .jsonl): one row per pair with id, preferred, score, usage and the whole
trace. The two pools run at the same time and can sit on different GPUs (`stages.stage1.gpus`,
`stages.stage2.gpus`); `stages.separate=false` runs both stages in one pool. A re-run skips ids
already written; every id appears exactly once in the output. The pipeline: jobs/ray_scoring.py.
"""

from __future__ import annotations

from typing import Sequence

from jobs.common import describe, parse_job_config, run_folder, user_errors
from jobs.ray_scoring import ScoreConfig, score
from reflectrm.report import table


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_job_config(ScoreConfig, argv, __doc__)
    out = run_folder(cfg, cfg.output)
    j = cfg.judge
    print(
        describe(
            "score",
            out,
            model=cfg.model.name,
            engine=cfg.model.engine,
            data=f"{cfg.data.format}:{cfg.data.path}",
            mode=j.mode,
            n=j.n,
            max_new_tokens=j.max_new_tokens,
            separate_pools=cfg.stages.separate,
            stage2=j.stage2,
        )
    )
    with user_errors("score"):
        s = score(cfg, out)
    print(
        table(
            ["", "value"],
            [
                ["pairs", s["pairs"]],
                ["scored this run / resumed", f"{s['scored_this_run']} / {s['resumed']}"],
                ["preferred 1 / 2 / no verdict", f"{s['preferred_1']} / {s['preferred_2']} / {s['no_verdict']}"],
                ["valid judgments", s["valid_judgment_rate"]],
                ["stage 2 ran / unanimous / no valid judgment", _rates(s)],
                ["accuracy (labelled pairs)", s["accuracy"]],
                ["errors (e.g. prompt too long)", s["errors"]],
                ["generated tokens", s["completion_tokens"]],
                ["seconds", s["seconds"]],
            ],
        )
    )
    print(f"wrote {s['output']} ({s['pairs']} rows) and {out / 'summary.json'}")
    return s


def _rates(s: dict) -> str:
    rates = [s[f"stage2_{o}_rate"] for o in ("ran", "unanimous", "no_valid")]
    return " / ".join("-" if r is None else f"{r:.2f}" for r in rates)


if __name__ == "__main__":
    main()
