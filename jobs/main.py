"""The main job, end to end on local Ray: does ReflectRM training make this judge better?

    python -m jobs.main --config jobs/configs/main.yaml                    (what `make run` does)
    python -m jobs.main --config jobs/configs/main.yaml grpo.steps=20 eval.pairs=64     (larger)
    ray job submit --runtime-env cluster/runtime_env.yaml -- python -m jobs.main --config jobs/configs/main.yaml output=/mnt/shared/main

    1. evaluate    the untrained model: greedy / majority / reflect on held-out synthetic pairs, both orders
    2. warm start  recipe=sft on the synthetic set's checkable target judgments (the untrained 135M model
                   writes 0 valid judgments: without this, GRPO has no reward signal and build_data no
                   right/wrong analyses to pair); warmstart.steps=0 skips it
    3. build_data  build.n judgments per pair with the warm model -> preference + reflection items, 4:1
    4. grpo        recipe=grpo (ReflectRM's unified training) on that mix
    5. evaluate    the trained model, the same pairs and seeds
    Then one table (before vs after, per method) and PNGs: training_curves.png, before_after.png.

Each stage runs the same code as the job of its name (jobs/ray_*.py), on one shared Ray, with its
own folder under `output` (config, outputs, resume state). Each sub-job's config is its job's YAML
with this job's settings put in (dataclasses.replace). The held-out pairs come from another seed
than the training pairs, and any pair that also appears in training is dropped. If
../shared/data/llmbar is present, LLMBar-natural is evaluated too (never needed).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Sequence

from jobs.common import describe, parse_job_config, run_folder, user_errors
from jobs.main_config import BUILD_SEED, EVAL_SEED, TRAIN_SEED, MainConfig, sub_configs
from jobs.ray_building import build_data
from jobs.ray_scoring import evaluate
from jobs.ray_setup import init_ray
from jobs.ray_training import train
from reflectrm.experiment import before_after, heldout_files, write_report
from reflectrm.training.warm_start import warm_start_pairs


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_job_config(MainConfig, argv, __doc__).budgets()  # the one judge budget, in every stage
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the embedded local Ray is single-user
    out = run_folder(cfg, cfg.output).resolve()
    draws = {TRAIN_SEED: warm_start_pairs(cfg.warmstart.steps), BUILD_SEED: cfg.build.pairs}  # what training draws
    files, dropped = heldout_files(out / "data", cfg.eval.pairs, cfg.eval.llmbar, EVAL_SEED, draws)
    ev, sft, bd, grpo = sub_configs(cfg, out, tuple(f"{name}=canonical:{path}" for name, (path, _) in files.items()))
    print(
        describe(
            "main",
            out,
            model=cfg.model.name,
            engine=cfg.model.engine,
            judge_n=cfg.judge.n,
            warmstart_steps=cfg.warmstart.steps,
            build_pairs=cfg.build.pairs,
            grpo_steps=cfg.grpo.steps,
            grpo_n=cfg.grpo.n,
        )
    )
    print(
        "  held out: "
        + ", ".join(f"{name} {n} pairs" for name, (_, n) in files.items())
        + f" ({dropped} dropped: also in training)"
    )
    init_ray(cfg.ray, out)
    seconds: dict[str, float] = {}

    def stage(name: str, fn: Any, sub: Any, line: Any) -> Any:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        with user_errors(f"main ({name})"):
            result = fn(sub, Path(sub.output))
        seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"  {line(result)}  ({seconds[name]:.0f} s)", flush=True)
        return result

    before = stage("evaluate before", evaluate, dataclasses.replace(ev, output=str(out / "eval_before")), _eval_line)
    model = cfg.model.name
    if cfg.warmstart.steps:
        stage("warm start (sft)", train, sft, _train_line)
        model = str(out / "warmstart" / "final")
    stats = stage(
        "build_data",
        build_data,
        dataclasses.replace(bd, model=dataclasses.replace(bd.model, name=model)),
        lambda s: (
            f"{s['preference']} preference + {s['reflection']} reflection items from {s['items']} pairs ({s['invalid_judgments']} of {s['judgments']} judgments invalid)"
        ),
    )
    if not stats["mix"]:
        raise SystemExit(
            f"build_data kept no items (of {stats['items']} pairs, {stats['easy_dropped']} were easy: every judgment "
            f"right; {stats['too_long']} too long): raise build.pairs"
        )
    if stats["note"]:
        print(f"  note: {stats['note']}")
    trained = stage(
        "grpo", train, dataclasses.replace(grpo, model=dataclasses.replace(grpo.model, name=model)), _train_line
    )
    after = stage(
        "evaluate after",
        evaluate,
        dataclasses.replace(
            ev, model=dataclasses.replace(ev.model, name=str(out / "grpo" / "final")), output=str(out / "eval_after")
        ),
        _eval_line,
    )
    compare = before_after(before, after)
    summary = write_report(out, cfg.model.name, compare, stats, trained, seconds)
    print("\n" + summary["table"])
    print(f"\nstages (s): {seconds}  total {summary['total_seconds']} s")
    print(f"wrote {out}/summary.json, before_after.png, training_curves.png; Ray's and vLLM's logs: {out}/logs/")
    return summary


def _eval_line(s: dict) -> str:
    return "; ".join(
        f"{r['dataset']} {r['method']} both-order acc {r['accuracy']:.2f} (says Response 1 {r['position_preference'] or 0:.2f})"
        for r in s["results"]
    )


def _train_line(s: dict) -> str:
    last = s["last"]
    return f"{s['steps']} steps; last step: " + " ".join(
        f"{k} {last[k]:.3f}" for k in ("loss", "reward_mean", "valid_rate", "signal_group_rate") if k in last
    )


if __name__ == "__main__":
    main()
