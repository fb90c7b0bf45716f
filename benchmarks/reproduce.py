"""The learning result: base vs RFT vs unified GRPO on SmolLM2-135M, on held-out pairs (method.md §2-5).

    .venv/bin/python -m benchmarks.reproduce                       # ~1.7 h on 2 cores; re-run to resume
    .venv/bin/python -m benchmarks.reproduce --grpo-steps 4 --eval-pairs 8   # a quick look at the shape

1. data      training pairs: the synthetic verifiable set (its own seed) + the LLMBar-natural train
             split; held out BY CONSTRUCTION: synthetic pairs of another seed, the LLMBar-natural
             held-out split (a seeded hash of the id), JudgeBench (reported apart, never trained or
             tuned on). Every overlap between evaluation and training pairs is counted (must be 0).
2. warm      SFT on checkable targets of BOTH tasks (judge and critique, 4:1), so both tasks' rollouts
             can be valid. This is `base`: the common start of both trained arms.
3. build     jobs.build_data with base on the training pairs: N judgments each -> the 4:1 mix.
4. rft       jobs.train recipe=rft on that mix (its preference items only: method.md §2.6, ratio 1:0)
   unified   jobs.train recipe=grpo on the same mix, the same steps, seeds and learning rate.
5. evaluate  jobs.evaluate for base, rft and unified: greedy, majority@N and reflect, both orders;
             both-order accuracy, positional consistency (95% Wilson) and position preference;
             each trained arm against base, and unified against RFT, paired (reflectrm.comparison).

Every stage is a job with its own output folder under --workdir, and a finished stage is not run
again: a re-run resumes where the last one stopped (each job resumes inside itself too).
JSON out: the settings, the held-out check, each stage's seconds, the learning curves and the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import SHARED, parse, parser, write_report

MODELS = ("base", "rft", "unified")
EVAL_ORDER = ("base", "unified", "rft")  # the paper's comparison first, where a sitting ends between evaluations
# 2: the synthetic held-out set is topped up to --eval-pairs after dropping pairs seen in training
# (rules 1 left 30 of 32). 3: the warm start is the main job's (one source: warm_start_pairs(steps) pairs
# on Ray Train). A workdir made under other rules is refused like other settings.
# 4: evaluation results carry per-pair verdicts (paired comparisons), both-order accuracy is the headline,
# a limit samples by label, and training data is in both orders (`orders`).
DATA_RULES = 4
# Settings that change how a run executes, not its results: a resume may change them.
EXECUTION_ONLY = ("output", "workdir", "fresh", "micro_batch", "gradient_checkpointing", "eval_batch")


def write_pairs(path: Path, pairs: list) -> str:
    from reflectrm.data.codec import pair_to_row

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(pair_to_row(p)) + "\n" for p in pairs))
    return str(path)


def make_data(work: Path, args: Any) -> dict[str, Any]:
    """The training and evaluation files, and the held-out check."""
    from reflectrm.data.formats import load_pairs
    from reflectrm.data.synthetic import synthetic_pairs
    from reflectrm.evaluation import balanced_sample
    from reflectrm.experiment import heldout_pairs, overlap, split_held_out
    from reflectrm.training.warm_start import warm_start_pairs

    warm_draw = {0: warm_start_pairs(args.warm_steps)}  # what the warm start draws (reflectrm.training.warm_start)
    synth_train = synthetic_pairs(args.synthetic_train, seed=201)
    synth_held, dropped = heldout_pairs(args.eval_pairs, 202, {**warm_draw, 201: args.synthetic_train}, top_up=True)
    llmbar, _ = load_pairs("llmbar", SHARED / "llmbar" / "natural.json")
    llmbar_train, llmbar_held = split_held_out(llmbar, args.eval_pairs, seed=7)
    llmbar_train = llmbar_train[: args.llmbar_train]
    judgebench, _ = load_pairs("judgebench", SHARED / "judgebench" / "judgebench_gpt-4o-2024-05-13.jsonl")
    judgebench = balanced_sample([judgebench], args.judgebench, seed=11)  # never the first rows
    warm = synthetic_pairs(warm_draw[0], seed=0)
    training = [synth_train, llmbar_train, warm]
    return {
        "train": write_pairs(work / "data" / "train.jsonl", synth_train + llmbar_train),
        "eval": {
            "synthetic": write_pairs(work / "data" / "synthetic_held.jsonl", synth_held),
            "llmbar-natural": write_pairs(work / "data" / "llmbar_held.jsonl", llmbar_held),
            "judgebench": write_pairs(work / "data" / "judgebench.jsonl", judgebench),
        },
        "check": {
            "training_pairs": {
                "synthetic": len(synth_train),
                "llmbar-natural": len(llmbar_train),
                "warm start": len(warm),
            },
            "evaluation_pairs": {
                "synthetic": len(synth_held),
                "llmbar-natural": len(llmbar_held),
                "judgebench": len(judgebench),
            },
            "synthetic_dropped_as_seen_in_training": dropped,
            "overlap_with_training": {
                "synthetic": overlap(synth_held, *training),
                "llmbar-natural": overlap(llmbar_held, *training),
                "judgebench": overlap(judgebench, *training),
            },
        },
    }


def stage(work: Path, name: str, seconds: dict[str, float], run: Any) -> Any:
    """Run a stage once: its result is saved in WORK/NAME.done.json, and a re-run reads it back."""
    done = work / f"{name}.done.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        seconds[name] = saved["seconds"]
        return saved["result"]
    print(f"\n=== {name}")
    t0 = time.perf_counter()
    result = run()
    seconds[name] = round(time.perf_counter() - t0, 1)
    done.write_text(json.dumps({"seconds": seconds[name], "result": result}, default=str))
    return result


def check_settings(work: Path, args: Any) -> None:
    """A workdir holds one run's stages: a re-run with other settings would mix them, so it stops with
    exit 2 and names what differs (--fresh empties the workdir first)."""
    settings = {k: v for k, v in vars(args).items() if k not in EXECUTION_ONLY} | {"data_rules": DATA_RULES}
    record = work / "settings.json"
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if record.is_file():
        old = json.loads(record.read_text())
        differ = [f"--{k.replace('_', '-')}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v]
        if differ:
            print(
                f"reproduce: {work} holds a run made with other settings ({'; '.join(differ)}); resuming would mix "
                "them: add --fresh to start afresh, or choose another --workdir",
                file=sys.stderr,
            )
            raise SystemExit(2)
    record.write_text(json.dumps(settings, indent=2))


def curves(folder: Path) -> list[dict[str, Any]]:
    keys = ("reward_mean", "pref_valid_rate", "refl_valid_rate", "signal_group_rate", "eval_accuracy", "loss")
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{"step": r["step"], **{k: round(r[k], 4) for k in keys if isinstance(r.get(k), float)}} for r in rows]


def main() -> None:
    ap = parser("reproduce", __doc__)
    ap.add_argument("--base", default="smollm2-135m-instruct")
    ap.add_argument("--warm-steps", type=int, default=15)
    ap.add_argument("--synthetic-train", type=int, default=32, help="synthetic training pairs for build_data")
    ap.add_argument("--llmbar-train", type=int, default=16, help="LLMBar-natural training pairs for build_data")
    ap.add_argument("--eval-pairs", type=int, default=32, help="held-out pairs per dataset (synthetic, LLMBar)")
    ap.add_argument(
        "--judgebench", type=int, default=64, help="JudgeBench pairs: a seeded label-balanced sample (held out, apart)"
    )
    ap.add_argument("--n", type=int, default=8, help="judgments per pair (build_data, majority, reflect)")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="the one judge budget of every stage")
    ap.add_argument("--rollouts", type=int, default=4, help="GRPO rollouts per prompt (§3: 8; 4 fits 2 cores)")
    ap.add_argument("--grpo-steps", type=int, default=10)
    ap.add_argument("--grpo-prompts", type=int, default=2, help="prompts per GRPO step")
    ap.add_argument("--grpo-lr", type=float, default=5e-6)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--curve-pairs", type=int, default=8, help="mix preference rows kept apart for the curves")
    micro = "sequences per forward/backward in training (the rest is accumulated: the same gradients); 8 reflection "
    ap.add_argument(
        "--micro-batch", type=int, default=2, help=micro + "rollouts of an LLMBar pair took a 16.5 GB worker"
    )
    ap.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--eval-batch", type=int, default=16, help="pairs per engine call in evaluation (speed only)")
    ap.add_argument("--workdir", default="runs/bench_reproduce")
    ap.add_argument("--fresh", action="store_true", help="drop what --workdir holds and start afresh")
    args = parse(ap)
    from jobs.common import run_folder
    from jobs.main_config import build_config, eval_config, grpo_config, warm_start_config
    from jobs.ray_building import build_data
    from jobs.ray_scoring import evaluate
    from jobs.ray_setup import RayConfig
    from jobs.ray_training import train
    from reflectrm.config import JudgeConfig, ModelConfig
    from reflectrm.data.sources import DataConfig

    work = Path(args.workdir).resolve()
    check_settings(work, args)
    cpus = os.cpu_count() or 1
    ray = RayConfig(num_cpus=cpus)
    budget = args.max_new_tokens  # the one judge budget of every stage
    seconds: dict[str, float] = {}

    def run(job: Any, cfg: Any) -> Any:
        """One stage through its job's adapter, as jobs/main.py runs it (config.json in its folder)."""
        return job(cfg, run_folder(cfg, cfg.output).resolve())

    data = stage(work, "data", seconds, lambda: make_data(work, args))
    warm = warm_start_config(args.base, args.warm_steps, 2e-5, ray=ray, seed=0, output=str(work / "warm"))
    base = stage(work, "warm", seconds, lambda: run(train, warm)["export"])
    build_cfg = build_config(
        ModelConfig(name=base),
        DataConfig(format="canonical", path=data["train"]),
        JudgeConfig(mode="majority", n=args.n, seed=1, max_new_tokens=budget),
        ray=ray,
        output=str(work / "build"),
    )
    build = stage(work, "build", seconds, lambda: run(build_data, build_cfg))
    trained = {"base": base}
    arms = {}
    for name, recipe in (("rft", "rft"), ("unified", "grpo")):
        cfg = grpo_config(recipe, base, work / "build" / "mix.parquet", args.grpo_steps, args.grpo_lr, ray=ray, seed=0)
        trainer = dataclasses.replace(
            cfg.trainer,
            prompts_per_worker=args.grpo_prompts,
            micro_batch=min(args.micro_batch, args.rollouts * args.grpo_prompts),
            gradient_checkpointing=args.gradient_checkpointing,
        )
        cfg = dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, held_out=args.curve_pairs),
            trainer=trainer,
            grpo=dataclasses.replace(cfg.grpo, n=args.rollouts, max_new_tokens=budget),
            eval_every=args.eval_every,
            eval_max_new_tokens=budget,
            checkpoint_every=2,
            output=str(work / name),
        )
        arms[name] = stage(work, name, seconds, lambda cfg=cfg: run(train, cfg))
        trained[name] = arms[name]["export"]
    datasets = tuple(f"{k}=canonical:{v}" for k, v in data["eval"].items())  # `judgebench` by name: reported apart
    judge = JudgeConfig(n=args.n, max_new_tokens=budget, seed=1234)
    results = {}
    for name in EVAL_ORDER:
        cfg = eval_config(
            ModelConfig(name=trained[name]),
            judge,
            datasets,
            args.eval_batch,
            methods=("greedy", "majority", "reflect"),
            ray=ray,
            output=str(work / f"eval_{name}"),
        )
        results[name] = stage(work, f"eval_{name}", seconds, lambda cfg=cfg: run(evaluate, cfg)["results"])
    table = [
        {
            "model": name,
            "dataset": r["dataset"],
            "held_out_set": r["held_out"],
            "method": r["method"],
            "pairs": r["n_items"],
            "label_shares": r["label_shares"],
            "accuracy": r["accuracy"],  # both orders
            "accuracy_ci95": r["accuracy_ci"],
            "accuracy_given": r["accuracy_given"],
            "consistency": r["consistency"],
            "consistency_ci95": r["consistency_ci"],
            "position_preference": r["position_preference"],
            "valid_judgment_rate": r["valid_judgment_rate"],
        }
        for name in MODELS
        for r in results[name]
    ]
    from reflectrm import comparison
    from reflectrm.evaluation import CI_METHOD

    paired = {
        f"{b} vs {a}": comparison.compare(results[a], results[b])
        for a, b in (("base", "unified"), ("base", "rft"), ("rft", "unified"))
    }
    report = {
        "settings": vars(args) | {"cpus": cpus},
        "held_out_check": data["check"],
        "seconds": seconds,
        "total_hours": round(sum(seconds.values()) / 3600, 2),
        "build_data": {
            k: build[k] for k in ("items", "too_long", "easy_dropped", "mixed", "preference", "reflection", "mix")
        },
        "curves": {name: curves(work / name) for name in arms},
        "table": table,
        "ci_method": CI_METHOD,
        "paired": paired,
        "paired_method": comparison.METHOD,
    }
    write_report(report, args.output)
    from reflectrm.report import table as text_table

    def fmt(v: Any, ci: Any) -> str:
        return "-" if v is None else f"{v:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{v:.2f}"

    head = ["model", "dataset", "method", "pairs (label-1)", "both-order acc [95% Wilson]", "acc given"]
    head += ["consistency [95% Wilson]", "says Response 1", "valid"]
    rows = [
        [t["model"], t["dataset"], t["method"], f"{t['pairs']} ({t['label_shares']['1']:.2f})"]
        + [fmt(t["accuracy"], t["accuracy_ci95"]), fmt(t["accuracy_given"], None)]
        + [fmt(t["consistency"], t["consistency_ci95"]), fmt(t["position_preference"], None)]
        + [f"{t['valid_judgment_rate']:.2f}"]
        for t in table
    ]
    print(text_table(head, rows))
    for name, compared in paired.items():
        b, a = name.split(" vs ")
        print("\n" + comparison.markdown(compared, a, b))


if __name__ == "__main__":
    main()
