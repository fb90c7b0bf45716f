"""Build ReflectRM's training data with Ray Data (method.md §2).

    python -m jobs.build_data --config jobs/configs/build_data.yaml [data.format=llmbar data.path=FILE ...]
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.build_data --config jobs/configs/build_data.yaml output=/shared/storage/build

read pairs -> sample judge.n judgments per pair (an actor pool holding the engine) -> grade against
the gold label -> written as Parquet parts as they stream in (a re-run skips finished ids) -> drop
easy items -> preference set + reflection set -> mix at the ratio -> pref/refl/mix.parquet + stats.json.
The pipeline: jobs/ray_building.py; the sets: reflectrm/data/builder.py.
"""

from __future__ import annotations

from typing import Sequence

from jobs.common import describe, parse_job_config, run_folder, user_errors
from jobs.ray_building import BuildDataConfig, build_data
from reflectrm.data.builder import parse_ratio
from reflectrm.report import table


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_job_config(BuildDataConfig, argv, __doc__)
    out = run_folder(cfg, cfg.output)
    j = cfg.judge
    print(
        describe(
            "build_data",
            out,
            model=cfg.model.name,
            engine=cfg.model.engine,
            data=f"{cfg.data.format}:{cfg.data.path}",
            n=j.n,
            temperature=j.temperature,
            max_new_tokens=j.max_new_tokens,
            ratio=cfg.mix.ratio,
        )
    )
    with user_errors("build_data"):
        s = build_data(cfg, out)
    print(
        table(
            ["", "count"],
            [
                ["pairs read", s["items"]],
                ["too long, skipped", s["too_long"]],
                ["judgments", s["judgments"]],
                ["invalid judgments", s["invalid_judgments"]],
                ["easy (all correct), dropped", s["easy_dropped"]],
                ["mixed (right and wrong)", s["mixed"]],
                ["all wrong", s["all_wrong"]],
                ["preference set", s["preference_available"]],
                ["reflection set", s["reflection_available"]],
                [f"mix ({cfg.mix.ratio})", f"{s['preference']} + {s['reflection']} = {s['mix']}"],
            ],
        )
    )
    if s["note"]:
        print(f"note: {s['note']}")
    if s["reflection"] == 0 and parse_ratio(cfg.mix.ratio)[1] > 0:
        print(
            "note: no pair got both a right and a wrong valid judgment "
            "(an untrained model that never follows the format gives none; warm-start it with SFT, or sample more)"
        )
    if s["too_long"]:
        print(f"note: {s['too_long']} pairs skipped: their prompt is over model.max_prompt_tokens (raise it?)")
    print(f"wrote {out}/pref.parquet, refl.parquet, mix.parquet, stats.json")
    return s


if __name__ == "__main__":
    main()
