"""The learning result: does GRPO make a judge better, measured so that an effect can be seen?

    .venv/bin/python -m benchmarks.learning                          # ~3 h on 2 cores; re-run to resume
    .venv/bin/python -m benchmarks.learning --stop-after pilot       # the ~10-minute pilot only
    .venv/bin/python -m benchmarks.learning --steps 4 --eval-pairs 16 --reflect-pairs 8 --llmbar 8 --judgebench 8 --workdir runs/learning_small

SmolLM2-135M-Instruct, 2 CPU cores, LoRA. Pre-registered (issue 30, §4), before any number was seen:

1. data      surface-checkable synthetic pairs (uppercase, lowercase, bullets, include/avoid a word):
             --train-pairs for build_data, --eval-pairs held out, --curve-pairs for the curves; the held-out
             pairs share no response with any training pair (checked and counted); label shares recorded.
2. base      the SFT warm start of both tasks (the main job's, jobs/main_config.warm_start_config).
3. pilot     reward "Response 2 always" (every label set to 2, data.orders=given) for --pilot-steps at each
             --pilot-lrs: the loop can move a verdict, and the learning rate is picked (the highest whose
             valid rate holds and whose share of "Response 2" rises most).
4. build     jobs.build_data with base on the training pairs: 8 judgments each -> the 4:1 mix.
5. rft       jobs.train recipe=rft, and unified recipe=grpo, on that mix: the same items, seeds and steps,
   unified   jobs/configs/grpo_small.yaml (LoRA r16/a32, warm-up, KL off), data.orders=both, the shared-
             prefix update, --prompts prompts x --rollouts rollouts a step, at the pilot's rate.
             Go/no-go at the mid-point: the training accuracy of the steps before it must be >= 0.55; a
             valid rate under half its start is a collapse: the arm restarts at lr/3 (not a resume).
6. evaluate  base, rft and unified, greedy, both orders: the held-out pairs (primary), all LLMBar-natural
             pairs, a seeded label-balanced JudgeBench sample (held out; never trained or tuned on);
             majority@8 and reflect on --reflect-pairs held-out pairs (exploratory).
7. compare   each trained arm against base and unified against RFT, paired: the both-order accuracy
             difference with a paired 95% interval, consistency with an exact McNemar test.

The goal: trained beats base with the paired interval excluding zero, consistency goes up, unified >= RFT.
The result is written whatever its sign. JSON out: settings, power, data check, pilot, curves, table, pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import SHARED, parse, parser, write_report
from benchmarks.reproduce import check_settings, stage, write_pairs

SURFACE = ("uppercase", "lowercase", "bullets", "include_word", "avoid_word")
MODELS = ("base", "rft", "unified")
CURVE_KEYS = ("reward_mean", "pref_accuracy", "pref_valid_rate", "refl_valid_rate", "signal_group_rate", "loss")
STAGES = ("data", "warm", "pilot", "build", "train", "evaluate")


def power(n: int, sd: float = 0.5, z: float = 1.96 + 0.84) -> dict[str, Any]:
    """The smallest both-order accuracy difference a paired comparison of n pairs detects with 80% power at
    alpha 0.05 (normal approximation): z * sd / sqrt(n), for an assumed sd of the per-pair difference; and
    the unpaired one of two independent accuracies near 0.5 (sd of each pair's score <= 0.5)."""
    return {
        "pairs": n,
        "assumed_sd_of_pair_difference": sd,
        "paired_mde": round(z * sd / n**0.5, 3),
        "unpaired_mde": round(z * (2 * 0.25 / n) ** 0.5, 3),
    }


def make_data(work: Path, args: Any) -> dict[str, Any]:
    from reflectrm.data.formats import load_pairs
    from reflectrm.data.synthetic import synthetic_pairs
    from reflectrm.evaluation import balanced_sample
    from reflectrm.metrics import label_shares
    from reflectrm.training.warm_start import warm_start_pairs

    train = synthetic_pairs(args.train_pairs, seed=301, categories=SURFACE)
    curve = synthetic_pairs(args.curve_pairs, seed=302, categories=SURFACE)
    warm = synthetic_pairs(warm_start_pairs(args.warm_steps), seed=0)
    pilot = synthetic_pairs(args.pilot_steps * args.pilot_prompts, seed=304, categories=SURFACE)
    seen = {r for ps in (train, curve, warm, pilot) for p in ps for r in (p.response_1, p.response_2)}
    drawn = synthetic_pairs(args.eval_pairs * 3, seed=303, categories=SURFACE)
    kept = [p for p in drawn if p.response_1 not in seen and p.response_2 not in seen]
    held = balanced_sample([kept], args.eval_pairs, seed=5)
    prompts = {p.context[-1].content for ps in (train, curve, warm) for p in ps}
    llmbar, _ = load_pairs("llmbar", SHARED / "llmbar" / "natural.json")
    judgebench, _ = load_pairs("judgebench", SHARED / "judgebench" / "judgebench_gpt-4o-2024-05-13.jsonl")
    judgebench = balanced_sample([judgebench], args.judgebench, seed=11)
    always_2 = [dataclasses.replace(p, label=2) for p in pilot]  # the pilot's reward: "Response 2" is right
    llmbar = balanced_sample([llmbar], args.llmbar, seed=7) if args.llmbar < len(llmbar) else llmbar
    sets = {"held": held, "llmbar": llmbar, "judgebench": judgebench}
    return {
        "train": write_pairs(work / "data" / "train.jsonl", train),
        "curve": write_pairs(work / "data" / "curve.jsonl", curve),
        "pilot": write_pairs(work / "data" / "pilot.jsonl", always_2),
        "eval": {k: write_pairs(work / "data" / f"{k}.jsonl", v) for k, v in sets.items()},
        "check": {
            "training_pairs": len(train),
            "curve_pairs": len(curve),
            "held_out_pairs": len(held),
            "held_out_dropped_sharing_a_response_with_training": len(drawn) - len(kept),
            "held_out_sharing_a_response_with_training": sum(
                p.response_1 in seen or p.response_2 in seen for p in held
            ),
            "held_out_with_a_training_instruction": sum(p.context[-1].content in prompts for p in held),
            "label_shares": {
                "train": label_shares([p.label for p in train]),
                "held": label_shares([p.label for p in held]),
                "llmbar": label_shares([p.label for p in sets["llmbar"]]),
                "judgebench": label_shares([p.label for p in judgebench]),
            },
        },
    }


def read_curve(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return [{"step": r["step"], **{k: round(r[k], 4) for k in CURVE_KEYS if isinstance(r.get(k), float)}} for r in rows]


def mean_of(curve: list[dict[str, Any]], key: str, steps: range) -> float | None:
    vals = [r[key] for r in curve if r["step"] in steps and key in r]
    return statistics.mean(vals) if vals else None


def main() -> None:  # noqa: PLR0915 (one pre-registered protocol, stage by stage)
    ap = parser("learning", __doc__)
    ap.add_argument("--base", default="smollm2-135m-instruct")
    ap.add_argument("--warm-steps", type=int, default=15)
    ap.add_argument("--train-pairs", type=int, default=160)
    ap.add_argument("--eval-pairs", type=int, default=200)
    ap.add_argument("--curve-pairs", type=int, default=24)
    ap.add_argument("--reflect-pairs", type=int, default=96, help="held-out pairs for majority@n and reflect")
    ap.add_argument("--llmbar", type=int, default=100, help="LLMBar-natural pairs (all 100)")
    ap.add_argument("--judgebench", type=int, default=64, help="a seeded label-balanced JudgeBench sample")
    ap.add_argument("--n", type=int, default=8, help="judgments per pair in build_data, majority and reflect")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--pilot-lrs", type=float, nargs="+", default=[1e-4, 3e-4])
    ap.add_argument("--pilot-steps", type=int, default=4)
    ap.add_argument("--pilot-prompts", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40, help="GRPO steps per arm")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step (pairs in both orders)")
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--go-accuracy", type=float, default=0.55, help="the mid-point's pre-registered bar")
    ap.add_argument("--stop-after", choices=STAGES, help="stop after this stage (re-run to go on)")
    ap.add_argument("--workdir", default="runs/bench_learning")
    ap.add_argument("--fresh", action="store_true", help="drop what --workdir holds and start afresh")
    ap.add_argument("--report", action="store_true", help="print the tables of --output's finished JSON as markdown")
    args = parse(ap)
    if args.report:
        print(markdown(json.loads(Path(args.output).read_text())))
        return
    from jobs.common import load_config, run_folder
    from jobs.main_config import CONFIGS, build_config, eval_config, warm_start_config
    from jobs.ray_building import build_data
    from jobs.ray_scoring import evaluate
    from jobs.ray_setup import RayConfig
    from jobs.ray_training import TrainConfig, train
    from reflectrm import comparison
    from reflectrm.config import JudgeConfig, ModelConfig
    from reflectrm.data.sources import DataConfig

    work = Path(args.workdir).resolve()
    check_settings(
        work, argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in ("stop_after", "report")})
    )
    cpus = os.cpu_count() or 1
    ray = RayConfig(num_cpus=cpus)
    seconds: dict[str, float] = {}
    report: dict[str, Any] = {"settings": vars(args) | {"cpus": cpus}, "power": power(args.eval_pairs)}

    def run(job: Any, cfg: Any) -> Any:
        return job(cfg, run_folder(cfg, cfg.output).resolve())

    def done(name: str) -> None:
        if args.stop_after == name:
            write_report(report | {"seconds": seconds, "stopped_after": name}, args.output)
            raise SystemExit(0)

    def grpo(name: str, recipe: str, model: str, data: DataConfig, lr: float, steps: int, **trainer: Any) -> Any:
        small = load_config(TrainConfig, CONFIGS / "grpo_small.yaml")
        t = dataclasses.replace(small.trainer, cpus_per_worker=1, threads=cpus, **trainer)
        cfg = dataclasses.replace(
            small,
            recipe=recipe,
            model=ModelConfig(name=model),
            data=data,
            trainer=t,
            optim=dataclasses.replace(small.optim, lr=lr),
            grpo=dataclasses.replace(small.grpo, n=args.rollouts, max_new_tokens=args.max_new_tokens),
            max_steps=steps,
            eval_every=max(1, args.steps // 5),
            eval_max_new_tokens=args.max_new_tokens,
            checkpoint_every=2,
            ray=ray,
            output=str(work / name),
        )
        return stage(work, f"{name}_{steps}", seconds, lambda: run(train, cfg))

    data = stage(work, "data", seconds, lambda: make_data(work, args))
    report["data"] = data["check"]
    done("data")
    warm = warm_start_config(args.base, args.warm_steps, 6e-5, ray=ray, seed=0, output=str(work / "warm"))
    base = stage(work, "warm", seconds, lambda: run(train, warm)["export"])
    done("warm")

    pilot = {}
    for lr in args.pilot_lrs:
        pdata = DataConfig(format="canonical", path=data["pilot"], held_out=0, orders="given")
        grpo(f"pilot_lr{lr:g}", "rft", base, pdata, lr, args.pilot_steps, prompts_per_worker=args.pilot_prompts)
        c = read_curve(work / f"pilot_lr{lr:g}")
        pilot[f"{lr:g}"] = {
            "says_response_2": [r.get("pref_accuracy") for r in c],
            "valid": [r.get("pref_valid_rate") for r in c],
        }
    report["pilot"] = pilot

    def rise(p: dict[str, Any]) -> float:
        s, v = p["says_response_2"], p["valid"]
        holds = v and v[0] is not None and v[-1] is not None and v[-1] >= 0.5 * v[0]
        return (s[-1] - s[0]) if holds and s[0] is not None and s[-1] is not None else float("-inf")

    lr = float(max(pilot, key=lambda k: (rise(pilot[k]), -float(k))))
    report["lr"] = lr
    done("pilot")

    judge = JudgeConfig(mode="majority", n=args.n, seed=1, max_new_tokens=args.max_new_tokens)
    bd = build_config(
        ModelConfig(name=base),
        DataConfig(format="canonical", path=data["train"]),
        judge,
        ray=ray,
        output=str(work / "build"),
    )
    build = stage(work, "build", seconds, lambda: run(build_data, bd))
    report["build_data"] = {
        k: build.get(k)
        for k in ("items", "easy_dropped", "too_long", "preference", "reflection", "mix", "label_shares")
    }
    done("build")

    mix = DataConfig(format="mix", path=str(work / "build" / "mix.parquet"), held_out=0, orders="both")
    mid = max(1, args.steps // 2)
    trained, gate = {"base": base}, {}
    for name, recipe in (("unified", "grpo"), ("rft", "rft")):
        arm_lr, arm = lr, name
        grpo(arm, recipe, base, mix, arm_lr, mid, prompts_per_worker=args.prompts, micro_batch=2 * args.rollouts)
        c = read_curve(work / arm)
        valid0, valid_mid = (
            mean_of(c, "pref_valid_rate", range(1, 4)),
            mean_of(c, "pref_valid_rate", range(mid - 2, mid + 1)),
        )
        if valid0 and valid_mid is not None and valid_mid < 0.5 * valid0:  # a collapse: restart at lr/3
            arm_lr, arm = lr / 3, f"{name}_lr3"
            grpo(arm, recipe, base, mix, arm_lr, mid, prompts_per_worker=args.prompts, micro_batch=2 * args.rollouts)
            c = read_curve(work / arm)
        acc = mean_of(c, "pref_accuracy", range(max(1, mid - 4), mid + 1))
        go = acc is not None and acc >= args.go_accuracy
        gate[name] = {"lr": arm_lr, "folder": arm, "mid_step": mid, "training_accuracy": acc, "go": go}
        result = grpo(
            arm,
            recipe,
            base,
            mix,
            arm_lr,
            args.steps if go else mid,
            prompts_per_worker=args.prompts,
            micro_batch=2 * args.rollouts,
        )
        trained[name] = result["export"]
    report["go_no_go"] = gate
    report["curves"] = {n: read_curve(work / g["folder"]) for n, g in gate.items()}
    done("train")

    greedy_sets = tuple(f"{k}=canonical:{v}" for k, v in data["eval"].items())
    results, exploratory = {}, {}
    ej = JudgeConfig(n=args.n, max_new_tokens=args.max_new_tokens, seed=1234)
    for name in MODELS:
        g = eval_config(
            ModelConfig(name=trained[name]),
            ej,
            greedy_sets,
            16,
            methods=("greedy",),
            ray=ray,
            output=str(work / f"eval_{name}"),
        )
        results[name] = stage(work, f"eval_{name}", seconds, lambda g=g: run(evaluate, g)["results"])
        r = eval_config(
            ModelConfig(name=trained[name]), ej, (f"held=canonical:{data['eval']['held']}",), 16,
            methods=("majority", "reflect"), limit=args.reflect_pairs, ray=ray, output=str(work / f"reflect_{name}"),
        )  # fmt: skip
        exploratory[name] = stage(work, f"reflect_{name}", seconds, lambda r=r: run(evaluate, r)["results"])
    report["table"] = {n: strip(results[n]) for n in MODELS}
    report["exploratory"] = {n: strip(exploratory[n]) for n in MODELS}
    report["paired"] = {
        f"{b} vs {a}": comparison.compare(results[a], results[b])
        for a, b in (("base", "unified"), ("base", "rft"), ("rft", "unified"))
    }
    report["paired_exploratory"] = {
        f"{b} vs {a}": comparison.compare(exploratory[a], exploratory[b])
        for a, b in (("base", "unified"), ("rft", "unified"))
    }
    report["seconds"] = seconds
    report["total_hours"] = round(sum(seconds.values()) / 3600, 2)
    write_report(report, args.output)
    print_summary(report)
    for name, compared in {**report["paired"], **report["paired_exploratory"]}.items():
        b, a = name.split(" vs ")
        print("\n" + comparison.markdown(compared, a, b))


def _f(v: Any, ci: Any = None) -> str:
    return "-" if v is None else f"{v:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{v:.2f}"


def result_table(report: dict[str, Any]) -> str:
    """Every evaluation of the report (primary and exploratory), one row per model, dataset and method."""
    from reflectrm.report import table

    heads = ["model", "dataset", "method", "pairs", "both-order acc [95% Wilson]", "consistency [95% Wilson]"]
    rows = [
        [name, r["dataset"], r["method"], r["n_items"], _f(r["accuracy"], r["accuracy_ci"])]
        + [_f(r["consistency"], r["consistency_ci"]), _f(r["position_preference"]), _f(r["valid_judgment_rate"])]
        for part in ("table", "exploratory")
        for name, results in report[part].items()
        for r in results
    ]
    return table([*heads, "says Response 1", "valid"], rows)


def print_summary(report: dict[str, Any]) -> None:
    print(f"\npilot (share saying Response 2, per step): {report['pilot']}; picked lr {report['lr']:g}")
    print(f"go/no-go at the mid-point: {report['go_no_go']}")
    print("\n" + result_table(report))


def markdown(report: dict[str, Any]) -> str:
    """The README's tables from a finished report: the pilot, the go/no-go, the primary table, the paired
    comparisons (primary and exploratory) and the time."""
    from reflectrm import comparison
    from reflectrm.report import table

    pilot = [
        [lr, " ".join(_f(v) for v in p["says_response_2"]), " ".join(_f(v) for v in p["valid"])]
        for lr, p in report["pilot"].items()
    ]
    gate = [
        [n, f"{g['lr']:g}", g["mid_step"], _f(g["training_accuracy"]), g["go"]] for n, g in report["go_no_go"].items()
    ]
    out = [
        "Pilot (reward: 'Response 2' always; share of rollouts saying Response 2, and valid, per step):",
        "",
        table(["lr", "says Response 2", "valid"], pilot),
        "",
        f"Picked lr {report['lr']:g}. Go/no-go at the mid-point (training accuracy >= 0.55):",
        "",
        table(["arm", "lr", "mid step", "training accuracy", "go"], gate),
        "",
        result_table(report),
    ]
    for part in ("paired", "paired_exploratory"):
        for name, compared in report[part].items():
            b, a = name.split(" vs ")
            out += ["", comparison.markdown(compared, a, b)]
    out += [
        "",
        f"Power: {report['power']}",
        f"Total: {report.get('total_hours')} h on {report['settings']['cpus']} CPUs.",
    ]
    return "\n".join(out)


def strip(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A result row without its per-pair verdicts (they stay in each evaluation's results.json)."""
    return [{k: v for k, v in r.items() if k != "verdicts"} for r in results]


if __name__ == "__main__":
    sys.exit(main())
