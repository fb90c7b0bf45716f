"""The main job: judge a few real-looking pairs with greedy, majority and reflect; print a table.

    python -m jobs.main --config jobs/configs/main.yaml            (what `make run` does)
    python -m jobs.main --config jobs/configs/main.yaml judge.n=4 model.name=tiny-random

Majority and reflect share the same stage-1 samples (majority is the plain vote of reflect's
stage 1), so the table compares the methods on identical judgments.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Sequence

from jobs.common import parse_job_config
from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig, to_dict
from reflectrm.data.examples import EXAMPLES
from reflectrm.engines import load_engine
from reflectrm.inference import Judge
from reflectrm.prompts import TEMPLATE_VERSION
from reflectrm.report import table


@dataclasses.dataclass(frozen=True)
class MainConfig:
    model: ModelConfig = ModelConfig()
    judge: JudgeConfig = JudgeConfig()
    prompt: PromptConfig = PromptConfig()
    output: str = "runs/main"  # results.json goes here


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_job_config(MainConfig, argv, __doc__)
    print(f"model={cfg.model.name} n={cfg.judge.n} max_new_tokens={cfg.judge.max_new_tokens} prompts={TEMPLATE_VERSION}")
    t0 = time.perf_counter()
    engine = load_engine(cfg.model)
    judge = Judge(engine, cfg.judge, cfg.prompt)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    greedy = judge.judge(EXAMPLES, "greedy")
    greedy_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reflect = judge.judge(EXAMPLES, "reflect")
    reflect_s = time.perf_counter() - t0

    rows = []
    for pair, g, r in zip(EXAMPLES, greedy, reflect):
        rows.append([pair.id, pair.label, g.preferred, r.majority, r.preferred, f"{r.valid_rate:.2f}", r.stage2_skipped, r.usage.completion_tokens])
    print()
    print(table(["pair", "gold", "greedy", "majority", "reflect", "valid", "stage2 skipped", "tokens (reflect)"], rows))
    correct = lambda results, key: sum(getattr(x, key) == p.label for x, p in zip(results, EXAMPLES))  # noqa: E731
    summary = {
        "model": cfg.model.name,
        "prompt_template": TEMPLATE_VERSION,
        "pairs": len(EXAMPLES),
        "correct": {"greedy": correct(greedy, "preferred"), "majority": correct(reflect, "majority"), "reflect": correct(reflect, "preferred")},
        "seconds": {"load": round(load_s, 1), "greedy": round(greedy_s, 1), "reflect": round(reflect_s, 1)},
        "config": to_dict(cfg),
        "results": {"greedy": [x.to_dict() for x in greedy], "reflect": [x.to_dict() for x in reflect]},
    }
    print("('-' = no valid verdict: the model's output did not follow the <Analysis>/<Result> format)")
    print(f"\ncorrect of {len(EXAMPLES)}: {summary['correct']}   seconds: {summary['seconds']}")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"full traces: {out / 'results.json'}")
    return summary


if __name__ == "__main__":
    main()
