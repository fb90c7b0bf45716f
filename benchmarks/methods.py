"""The three method families side by side (issue 31 §5): ReflectRM, RM-R1 and Critic-RM trained on SmolLM2 at one
budget, from the same base and the same items, then judged on the same held-out pairs in both orders.

    .venv/bin/python -m benchmarks.methods                    # after benchmarks.learning; ~4 h on 2 cores; resumes
    .venv/bin/python -m benchmarks.methods --report           # the README's tables from the finished JSON

It reuses benchmarks.learning's workdir (--learning): its training pairs (160, surface-checkable), its held-out
pairs (no response shared with training) and its trained ReflectRM judge (the unified GRPO arm). The others:

1. rm_r1_warm  RM-R1's stage 1: the SFT warm start of learning's base run (same base, steps, lr and synthetic
               pairs), its targets in RM-R1's format (method=rm_r1)
2. rm_r1       RM-R1's stage 2: GRPO with its reward on the same training pairs in both orders, at the unified
               arm's budget (its steps where learning's go/no-go left it, prompts, rollouts, lr, LoRA:
               jobs/configs/grpo_small.yaml); --r1-tokens to write its rubric
3. critic_warm Critic-RM's warm start: recipe=critic_rm for the same steps on the same synthetic pairs, each
               response with its checkable critique and score (the format, as the others' warm starts teach theirs)
4. critiques   Critic-RM's generate-and-filter (jobs.build_critiques) with that warm start on the training pairs
5. critic      recipe=critic_rm on the kept items: the same steps, the same pairs a step, LoRA + the head
6. evaluate    --pairs held-out pairs (seeded, label-balanced), both orders, each method its own run (its own
               seconds): ReflectRM greedy / majority@n / reflect, RM-R1 greedy / majority@n, Critic-RM m=1 / m=4

The report: both-order accuracy, consistency, position preference and valid rate with 95% Wilson intervals,
generated tokens and seconds per judged item (the run's wall time over its items, engine start included), and each method paired against ReflectRM greedy (difference with a
paired 95% interval, McNemar on consistency). Written whatever it shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import parse, parser, write_report
from benchmarks.reproduce import check_settings, stage

# (label, family, model key, evaluation methods, n): each one evaluation run over the same held-out pairs
ARMS = (
    ("reflectrm greedy", "reflectrm", "reflectrm", "greedy", 1),
    ("reflectrm majority@n", "reflectrm", "reflectrm", "majority", None),
    ("reflectrm reflect", "reflectrm", "reflectrm", "reflect", None),
    ("rm_r1 greedy", "rm_r1", "rm_r1", "greedy", 1),
    ("rm_r1 majority@n", "rm_r1", "rm_r1", "majority", None),
    ("critic_rm m=1", "critic_rm", "critic_rm", "greedy", 1),
    ("critic_rm m=4", "critic_rm", "critic_rm", "majority", 4),
)
REFERENCE = "reflectrm greedy"


def learning_inputs(learning: Path) -> dict[str, str]:
    """The learning run's training and held-out files, its base and its ReflectRM judge, or exit 2 naming the fix."""
    files = {"data": learning / "data.done.json", "warm": learning / "warm.done.json"}
    arms = sorted(learning.glob("unified*_*.done.json"), key=lambda p: int(p.stem.split("_")[-1].split(".")[0]))
    missing = [str(p) for p in files.values() if not p.is_file()] + ([] if arms else ["unified_*.done.json"])
    if missing:
        print(
            f"methods: {learning} lacks {', '.join(missing)}: run `python -m benchmarks.learning --stop-after train` "
            "first (or point --learning at its workdir)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    data = json.loads(files["data"].read_text())["result"]
    return {
        "train": data["train"],
        "held": data["eval"]["held"],
        "warm": json.loads(files["warm"].read_text())["result"],
        "reflectrm": json.loads(arms[-1].read_text())["result"]["export"],
        "reflectrm_steps": int(arms[-1].name.split("_")[-1].split(".")[0]),  # where its go/no-go left it
    }


def main() -> None:
    ap = parser("methods", __doc__)
    ap.add_argument("--learning", default="runs/bench_learning", help="benchmarks.learning's --workdir")
    ap.add_argument("--base", default="smollm2-135m-instruct")
    ap.add_argument("--warm-steps", type=int, default=15)
    ap.add_argument("--steps", type=int, help="RM-R1's GRPO and Critic-RM's steps (default: the unified arm's)")
    ap.add_argument("--prompts", type=int, default=8, help="pairs a step (GRPO: in both orders)")
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4, help="learning's picked rate (its report's lr)")
    ap.add_argument("--k", type=int, default=4, help="Critic-RM: sampled critiques per response")
    ap.add_argument("--pairs", type=int, default=96, help="held-out pairs judged by every method, both orders")
    ap.add_argument("--n", type=int, default=8, help="samples of majority@n and reflect")
    ap.add_argument("--max-new-tokens", type=int, default=96, help="ReflectRM's judgments (learning's)")
    ap.add_argument("--r1-tokens", type=int, default=192, help="RM-R1's judgments (a rubric and an evaluation)")
    ap.add_argument("--critique-tokens", type=int, default=96)
    ap.add_argument("--workdir", default="runs/bench_methods")
    ap.add_argument("--fresh", action="store_true", help="drop what --workdir holds and start afresh")
    ap.add_argument("--report", action="store_true", help="print the tables of --output's finished JSON as markdown")
    args = parse(ap)
    if args.report:
        print(markdown(json.loads(Path(args.output).read_text())))
        return
    from jobs.common import load_config, run_folder
    from jobs.main_config import CONFIGS, eval_config, warm_start_config
    from jobs.ray_critiques import BuildCritiquesConfig, SamplingSection, build_critiques
    from jobs.ray_scoring import evaluate
    from jobs.ray_setup import RayConfig
    from jobs.ray_training import TrainConfig, train
    from reflectrm.comparison import compare_verdicts
    from reflectrm.config import JudgeConfig, ModelConfig
    from reflectrm.data.critiques import CriticFilter
    from reflectrm.data.sources import DataConfig

    work = Path(args.workdir).resolve()
    inputs = learning_inputs(Path(args.learning).resolve())
    args.steps = args.steps or inputs["reflectrm_steps"]  # the same budget as the ReflectRM judge it is set against
    check_settings(work, argparse_ns(args))
    cpus = os.cpu_count() or 1
    ray = RayConfig(num_cpus=cpus)
    seconds: dict[str, float] = {}
    report: dict[str, Any] = {"settings": vars(args) | {"cpus": cpus}, "inputs": inputs}

    def run(job: Any, cfg: Any) -> Any:
        return job(cfg, run_folder(cfg, cfg.output).resolve())

    small = load_config(TrainConfig, CONFIGS / "grpo_small.yaml")
    trainer = dataclasses.replace(small.trainer, cpus_per_worker=1, threads=cpus, prompts_per_worker=args.prompts)
    models = {"reflectrm": inputs["reflectrm"]}

    r1_warm = warm_start_config(args.base, args.warm_steps, 6e-5, method="rm_r1", ray=ray, output=str(work / "r1_warm"))
    r1_base = stage(work, "rm_r1_warm", seconds, lambda: run(train, r1_warm)["export"])
    r1 = dataclasses.replace(
        small, method="rm_r1", model=ModelConfig(name=r1_base), max_steps=args.steps, checkpoint_every=2, ray=ray,
        data=DataConfig(format="canonical", path=inputs["train"], held_out=0, orders="both"),
        trainer=dataclasses.replace(trainer, micro_batch=2 * args.rollouts),
        optim=dataclasses.replace(small.optim, lr=args.lr), eval_every=max(1, args.steps // 5),
        grpo=dataclasses.replace(small.grpo, n=args.rollouts, max_new_tokens=args.r1_tokens),
        eval_max_new_tokens=args.r1_tokens, output=str(work / "rm_r1"),
    )  # fmt: skip
    models["rm_r1"] = stage(work, f"rm_r1_{args.steps}", seconds, lambda: run(train, r1))["export"]

    warm_items = stage(work, "critic_warm_data", seconds, lambda: critic_warm_items(work, args.warm_steps))
    critic_yaml = load_config(TrainConfig, CONFIGS / "critic_rm.yaml")
    cw = dataclasses.replace(
        critic_yaml, model=ModelConfig(name=args.base), max_steps=args.warm_steps, ray=ray, checkpoint_every=0,
        data=DataConfig(format="mix", path=warm_items, held_out=0), optim=dataclasses.replace(critic_yaml.optim, lr=6e-5),
        trainer=dataclasses.replace(critic_yaml.trainer, cpus_per_worker=1, threads=cpus), output=str(work / "critic_warm"),
    )  # fmt: skip
    critic_base = stage(work, "critic_warm", seconds, lambda: run(train, cw)["export"])
    bc = BuildCritiquesConfig(
        model=ModelConfig(name=critic_base), data=DataConfig(format="canonical", path=inputs["train"], held_out=0),
        critic=CriticFilter(k=args.k), ray=ray, output=str(work / "critiques"),
        sampling=SamplingSection(temperature=1.0, max_new_tokens=args.critique_tokens, seed=0),
    )  # fmt: skip
    report["critiques"] = stage(work, "critiques", seconds, lambda: run(build_critiques, bc))
    critic = dataclasses.replace(
        critic_yaml, model=ModelConfig(name=critic_base), max_steps=args.steps, ray=ray, checkpoint_every=2,
        data=DataConfig(format="mix", path=str(work / "critiques" / "critic.parquet"), held_out=0),
        trainer=dataclasses.replace(trainer, finetune="lora", lora=small.trainer.lora, micro_batch=2 * args.prompts),
        optim=dataclasses.replace(critic_yaml.optim, lr=args.lr), output=str(work / "critic"),
    )  # fmt: skip
    if report["critiques"]["items"]:
        models["critic_rm"] = stage(work, f"critic_{args.steps}", seconds, lambda: run(train, critic))["export"]
    else:  # said in the report and the table: nothing to train on, so Critic-RM is judged at its warm start
        models["critic_rm"] = critic_base
        report["critic_note"] = "generate-and-filter kept no item: Critic-RM is evaluated at its warm start"
    report["trained"] = dict(models)

    held = (f"held=canonical:{inputs['held']}",)
    results: dict[str, dict[str, Any]] = {}
    for label, family, key, method, n in ARMS:
        tokens = {"reflectrm": args.max_new_tokens, "rm_r1": args.r1_tokens}.get(family, args.critique_tokens)
        judge = JudgeConfig(method=family, n=n or args.n, max_new_tokens=tokens, seed=1234, temperature=1.0)
        cfg = eval_config(
            ModelConfig(name=models[key]), judge, held, 16, methods=(method,), limit=args.pairs, ray=ray,
            output=str(work / ("eval_" + label.replace(" ", "_").replace("@", "_at_").replace("=", ""))),
        )  # fmt: skip
        summary = stage(work, f"eval {label}", seconds, lambda cfg=cfg: run(evaluate, cfg))
        (r,) = summary["results"]
        results[label] = {**r, "seconds_per_item": summary["seconds"] / max(1, summary["items"])}
    report["table"] = {k: {f: v for f, v in r.items() if f != "verdicts"} for k, r in results.items()}
    report["paired"] = {
        f"{k} vs {REFERENCE}": compare_verdicts(results[REFERENCE]["verdicts"], r["verdicts"])
        for k, r in results.items()
        if k != REFERENCE
    }
    report["seconds"] = seconds
    report["total_hours"] = round(sum(seconds.values()) / 3600, 2)
    write_report(report, args.output)
    print("\n" + markdown(report))


def critic_warm_items(work: Path, steps: int) -> str:
    """Critic-RM's warm start data: the warm start's synthetic pairs (seed 0, as ReflectRM's and RM-R1's), each
    response with its checkable critique and score (reflectrm.data.synthetic.target_critique)."""
    from reflectrm.data.items import Critique, TrainingItem, write_items
    from reflectrm.data.synthetic import synthetic_pairs, target_critique
    from reflectrm.training.warm_start import warm_start_pairs

    pairs = synthetic_pairs(warm_start_pairs(steps), seed=0)
    items = [TrainingItem.critic(p, Critique(*target_critique(p, 1)), Critique(*target_critique(p, 2))) for p in pairs]
    path = work / "critic_warm.parquet"
    write_items(items, path)
    return str(path)


def argparse_ns(args: Any) -> Any:
    import argparse

    return argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "report"})


def _f(v: Any, ci: Any = None) -> str:
    return "-" if v is None else f"{v:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{v:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """The comparison table (intervals and costs), and each method paired against ReflectRM greedy."""
    from reflectrm.report import table

    heads = ["method", "pairs", "both-order acc [95% Wilson]", "consistency [95% Wilson]", "says Response 1"]
    heads += ["valid", "generated tokens / item", "s / item"]
    rows = [
        [k, r["n_items"], _f(r["accuracy"], r["accuracy_ci"]), _f(r["consistency"], r["consistency_ci"])]
        + [_f(r["position_preference"]), _f(r["valid_judgment_rate"]), f"{r['tokens_per_item']:.0f}"]
        + [f"{r['seconds_per_item']:.2f}"]
        for k, r in report["table"].items()
    ]
    paired = [
        [
            name.split(" vs ")[0],
            c["pairs"],
            f"{c['difference']:+.3f} [{c['difference_ci'][0]:+.3f}, {c['difference_ci'][1]:+.3f}]",
        ]
        + [f"{c['consistent_only_b']}/{c['consistent_only_a']}", f"{c['mcnemar_p']:.3f}"]
        for name, c in report["paired"].items()
    ]
    return "\n".join(
        [
            table(heads, rows),
            "",
            f"Paired against {REFERENCE} (both-order accuracy difference, 95% bootstrap over pairs; consistency:",
            "exact McNemar, discordant pairs only this/reference):",
            "",
            table(
                ["method", "pairs", "accuracy difference [95%]", "consistent only this / only reference", "p"], paired
            ),
            "",
            report.get("critic_note", ""),
            f"Total: {report.get('total_hours')} h on {report['settings']['cpus']} CPUs.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
