"""Critic-RM's training data with Ray Data: generate and filter (method.md §6).

    python -m jobs.build_critiques --config jobs/configs/build_critiques.yaml [data.format=llmbar data.path=FILE ...]

read labelled pairs -> critic.k critiques of each response (an actor pool holding the engine) -> written as
Parquet parts as they stream in (a re-run skips finished ids) -> keep the pairs whose critique scores agree with
the label -> select the critiques to train on -> critic.parquet + stats.json, which recipe=critic_rm trains on.
The pipeline: jobs/ray_critiques.py; the filter: reflectrm/data/critiques.py.
"""

from __future__ import annotations

from typing import Sequence

from jobs.common import describe, parse_job_config, run_folder, user_errors
from jobs.ray_critiques import BuildCritiquesConfig, build_critiques
from reflectrm.report import table


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_job_config(BuildCritiquesConfig, argv, __doc__)
    out = run_folder(cfg, cfg.output)
    c, s = cfg.critic, cfg.sampling
    print(
        describe(
            "build_critiques",
            out,
            model=cfg.model.name,
            data=f"{cfg.data.format}:{cfg.data.path}",
            k=c.k,
            temperature=s.temperature,
            max_new_tokens=s.max_new_tokens,
            select=c.select,
            keep=c.keep,
        )
    )
    with user_errors("build_critiques"):
        stats = build_critiques(cfg, out)
    rows = [["pairs", stats["pairs"]], *([k, v] for k, v in stats["outcomes"].items()), ["items", stats["items"]]]
    print(table(["", "count"], rows))
    print(f"critic items: {stats['output']}  (train: python -m jobs.train --config jobs/configs/critic_rm.yaml)")
    return stats


if __name__ == "__main__":
    main()
