"""The main job, end to end on local Ray: does ReflectRM training make this judge better?

    python -m jobs.main --config jobs/configs/main.yaml                    (what `make run` does)
    python -m jobs.main --config jobs/configs/main.yaml grpo.steps=20 eval.pairs=64     (larger)
    ray job submit --runtime-env cluster/runtime_env.yaml -- python -m jobs.main --config jobs/configs/main.yaml output=/mnt/shared/main

    1. evaluate    the untrained model: greedy / majority / reflect on held-out synthetic pairs, both orders
    2. warm start  jobs.train recipe=sft on the synthetic set's checkable target judgments (the untrained
                   135M model writes 0 valid judgments: without this, GRPO has no reward signal and
                   build_data no right/wrong analyses to pair); warmstart.steps=0 skips it
    3. build_data  8 judgments per pair with the warm model -> preference + reflection items, 4:1
    4. grpo        jobs.train recipe=grpo (ReflectRM's unified training) on that mix
    5. evaluate    the trained model, the same pairs and seeds
    Then one table (before vs after, per method) and PNGs: training_curves.png, before_after.png.

Each stage is the job of the same name, called in this process on one shared Ray; each stage's
folder under `output` has its own config, outputs and resume state. The held-out pairs come from
another seed than the training pairs, and any pair that also appears in training is dropped.
If ../shared/data/llmbar is present, LLMBar-natural is evaluated too (never needed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from jobs.common import parse_job_config, run_folder
from jobs.ray_setup import RayConfig, init_ray
from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig
from reflectrm.data.loaders import pair_to_row
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.report import table

LLMBAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llmbar" / "natural.json"
TRAIN_SEED, BUILD_SEED, EVAL_SEED = 0, 1, 1234  # three disjoint draws of the synthetic set


@dataclasses.dataclass(frozen=True)
class EvalSection:
    pairs: int = 6  # held-out synthetic pairs, each judged in both orders
    llmbar: int = 2  # LLMBar-natural pairs too when ../shared/data is present (0: never)
    batch_size: int = 16  # items per engine call (vLLM batches them: 16 took 0.77x the time of 4)


@dataclasses.dataclass(frozen=True)
class WarmStartSection:
    steps: int = 8  # SFT steps (4 pairs each); 0 skips the warm start
    lr: float = 2.0e-5


@dataclasses.dataclass(frozen=True)
class BuildSection:
    pairs: int = 6  # pairs sampled N times for the reflection data (method.md §2)
    n: int = 8


@dataclasses.dataclass(frozen=True)
class GrpoSection:
    steps: int = 2
    prompts: int = 1  # prompts per step
    group_size: int = 4  # rollouts per prompt (method.md §3 uses 8)
    lr: float = 5.0e-6
    max_new_tokens: int = 96


@dataclasses.dataclass(frozen=True)
class MainConfig:
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    judge: JudgeConfig = JudgeConfig(n=4, max_new_tokens=96, seed=0)  # the evaluations' settings
    eval: EvalSection = EvalSection()
    warmstart: WarmStartSection = WarmStartSection()
    build: BuildSection = BuildSection()
    grpo: GrpoSection = GrpoSection()
    ray: RayConfig = RayConfig()
    checkpoint_every: int = 4  # training steps between checkpoints (each writes the model and optimizer state)
    output: str = "runs/main"


def heldout_pairs(cfg: MainConfig) -> tuple[list, int]:
    """Synthetic pairs from their own seed, minus any that the warm start or build_data also draw."""
    key = lambda p: (p.context[-1].content, p.response_1, p.response_2)  # noqa: E731
    seen = {key(p) for p in synthetic_pairs(cfg.warmstart.steps * 4 + 4, seed=TRAIN_SEED)} | {key(p) for p in synthetic_pairs(cfg.build.pairs, seed=BUILD_SEED)}
    drawn = synthetic_pairs(cfg.eval.pairs, seed=EVAL_SEED)
    kept = [p for p in drawn if key(p) not in seen]
    return kept, len(drawn) - len(kept)


def evaluate(cfg: MainConfig, model: str, datasets: list[str], out: Path) -> dict:
    from jobs import evaluate as job

    j = cfg.judge
    return job.main(["--config", "jobs/configs/evaluate.yaml", f"model.name={model}", f"model.engine={cfg.model.engine}",
                     f"datasets=[{','.join(datasets)}]", f"judge.n={j.n}", f"judge.max_new_tokens={j.max_new_tokens}", f"judge.seed={j.seed}",
                     f"prompt.suffix={cfg.prompt.suffix}", "stages.separate=false", "stages.stage1.cpus=1",
                     f"stages.stage1.batch_size={cfg.eval.batch_size}", f"output={out}"])


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_job_config(MainConfig, argv, __doc__)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the embedded local Ray is single-user
    from jobs import build_data, train

    out = run_folder(cfg, cfg.output).resolve()
    cpus = os.cpu_count() or 1
    seconds: dict[str, float] = {}
    pairs, dropped = heldout_pairs(cfg)
    heldout = out / "data" / "heldout.jsonl"
    heldout.parent.mkdir(exist_ok=True)
    heldout.write_text("".join(json.dumps(pair_to_row(p)) + "\n" for p in pairs))
    datasets = [f"synthetic=canonical:{heldout}"]
    if cfg.eval.llmbar and LLMBAR.is_file():  # real pairs too, when the shared data is there
        from reflectrm.data.loaders import load_pairs

        llmbar = out / "data" / "llmbar_natural.jsonl"
        llmbar.write_text("".join(json.dumps(pair_to_row(p)) + "\n" for p in load_pairs("llmbar", LLMBAR)[0][: cfg.eval.llmbar]))
        datasets.append(f"llmbar-natural=canonical:{llmbar}")
    print(f"main job: model={cfg.model.name}, {len(pairs)} held-out pairs ({dropped} dropped: also in training), output {out}")
    init_ray(cfg.ray)
    train_common = ["trainer.cpus_per_worker=1", f"trainer.threads={cpus}", f"seed={TRAIN_SEED}", f"checkpoint_every={cfg.checkpoint_every}", "eval_every=0",
                    f"prompt.suffix={cfg.prompt.suffix}"]

    def stage(name: str, fn, *args) -> Any:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        result = fn(*args)
        seconds[name] = round(time.perf_counter() - t0, 1)
        return result

    before = stage("evaluate before", evaluate, cfg, cfg.model.name, datasets, out / "eval_before")
    model = cfg.model.name
    if cfg.warmstart.steps:
        stage("warm start (sft)", train.main, ["--config", "jobs/configs/sft.yaml", f"model={model}", f"data.path={cfg.warmstart.steps * 4 + 4}",
                                               "data.held_out=0", f"max_steps={cfg.warmstart.steps}", f"optim.lr={cfg.warmstart.lr}",
                                               "trainer.prompts_per_worker=4", "trainer.micro_batch=4", f"output={out / 'warmstart'}", *train_common])
        model = str(out / "warmstart" / "final")
    stats = stage("build_data", build_data.main, ["--config", "jobs/configs/build_data.yaml", f"model.name={model}", f"model.engine={cfg.model.engine}",
                                                  f"data.path={cfg.build.pairs}", f"sampling.n={cfg.build.n}", f"sampling.seed={BUILD_SEED}",
                                                  f"sampling.max_new_tokens={cfg.grpo.max_new_tokens}", f"prompt.suffix={cfg.prompt.suffix}",
                                                  f"pool.threads={cpus}", f"output={out / 'build_data'}"])
    g = cfg.grpo
    mix = out / "build_data" / "mix.parquet"
    if not stats["mix"]:  # no item was both right and wrong: no reflection pairs, so the 4:1 mix is empty
        if not stats["preference_available"]:
            raise SystemExit(f"build_data kept no items (all {stats['items']} were easy: every judgment right); raise build.pairs")
        mix = out / "build_data" / "pref.parquet"
        print(f"note: no reflection items (the model never got one pair both right and wrong); GRPO runs on the {stats['preference_available']} preference items")
    grpo = stage("grpo", train.main, ["--config", "jobs/configs/grpo.yaml", f"model={model}", f"data.path={mix}",
                                      "data.held_out=0", f"max_steps={g.steps}", f"optim.lr={g.lr}", f"trainer.prompts_per_worker={g.prompts}",
                                      f"trainer.micro_batch={g.group_size * g.prompts}", f"grpo.group_size={g.group_size}",
                                      f"grpo.max_new_tokens={g.max_new_tokens}", f"output={out / 'grpo'}", *train_common])
    after = stage("evaluate after", evaluate, cfg, str(out / "grpo" / "final"), datasets, out / "eval_after")
    return report(cfg, out, before, after, stats, grpo, seconds, len(pairs))


def report(cfg: MainConfig, out: Path, before: dict, after: dict, stats: dict, grpo: dict, seconds: dict, pairs: int) -> dict:
    keys = [("accuracy", "accuracy"), ("consistency", "consistency"), ("valid_judgment_rate", "valid format"), ("tokens_per_item", "tokens/item")]
    rows, compare = [], []
    for b, a in zip(before["results"], after["results"]):
        cells = {k: (b.get(k), a.get(k)) for k, _ in keys}
        compare.append({"dataset": b["dataset"], "method": b["method"], **{k: {"before": v[0], "after": v[1]} for k, v in cells.items()}})
        rows.append([b["dataset"], b["method"], *(f"{_f(v[0])} -> {_f(v[1])}" for v in cells.values())])
    print("\n" + table(["dataset", "method", *(label for _, label in keys)], rows))
    total = round(sum(seconds.values()), 1)
    print(f"\nstages (s): {seconds}  total {total} s   reflection data: {stats.get('preference')} preference + {stats.get('reflection')} reflection items")
    summary = {"model": cfg.model.name, "heldout_pairs": pairs, "seconds": seconds, "total_seconds": total, "results": compare,
               "build_data": {k: stats.get(k) for k in ("items", "judgments", "invalid_judgments", "preference", "reflection", "mixed")},
               "grpo": {"steps": grpo["steps"], "first": grpo["first"], "last": grpo["last"]}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(out, compare)
    print(f"wrote {out}/summary.json, before_after.png, training_curves.png")
    return summary


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)


def plot(out: Path, compare: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["accuracy", "consistency", "valid_judgment_rate"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4))
    labels = [f"{c['dataset']}\n{c['method']}" for c in compare]
    for ax, m in zip(axes, metrics):
        xs = range(len(compare))
        ax.bar([x - 0.2 for x in xs], [c[m]["before"] or 0 for c in compare], 0.4, label="before")
        ax.bar([x + 0.2 for x in xs], [c[m]["after"] or 0 for c in compare], 0.4, label="after")
        ax.set_xticks(list(xs), labels, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(m)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "before_after.png", dpi=90)
    plt.close(fig)

    curves = []
    for stage, keys in (("warmstart", ["loss"]), ("grpo", ["reward_mean", "valid_rate", "accuracy", "loss"])):
        path = out / stage / "metrics.jsonl"
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            curves.append((stage, keys, rows))
    fig, axes = plt.subplots(1, max(len(curves), 1), figsize=(5 * max(len(curves), 1), 3.4), squeeze=False)
    for ax, (stage, keys, rows) in zip(axes[0], curves):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=k)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
