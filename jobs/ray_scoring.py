"""The Ray Data scoring pipeline: the one Ray adapter that jobs.score, jobs.evaluate and jobs.main use.

    items -> stage 1 (an actor pool holding the engine: N judgments per item)
          -> stage 2 (its own actor pool: the pure select step, the reflection calls, the vote)
          -> result rows, written to a PartStore as they stream in (a re-run skips finished keys)

One pool runs both stages on one node (`stages.separate`), one model copy; Critic-RM (judge.method=critic_rm)
runs in one pool of its own (critiques, then the reward head). The actors delegate to reflectrm.scoring."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Literal

from jobs.ray_setup import PoolConfig, RayConfig, dataset_of, init_ray, rows_of, set_threads
from reflectrm import evaluation, scoring
from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig, result_settings, to_dict
from reflectrm.critic_judge import CriticJudge, needs_head
from reflectrm.data.orders import check_given
from reflectrm.data.sources import DataConfig, load_source
from reflectrm.data.store import PartStore
from reflectrm.engines import resolve_engine
from reflectrm.inference import Steps
from reflectrm.methods import spec_for


@dataclasses.dataclass(frozen=True)
class StagesConfig:
    """The actor pools of the two stages (on 2 CPUs: fractions, so both fit)."""

    separate: bool | Literal["auto"] = "auto"  # auto: one pool on one node (stage 2 on stage 1's cache), two on several
    stage1: PoolConfig = PoolConfig(cpus=0.5)
    stage2: PoolConfig = PoolConfig(cpus=0.5)


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    judge: JudgeConfig = JudgeConfig()  # mode (reflect), n, temperature, max_new_tokens, seed
    data: DataConfig = DataConfig(format="synthetic", path="64")
    stages: StagesConfig = StagesConfig()
    ray: RayConfig = RayConfig()
    output: str = "runs/score"
    fresh: bool = False  # true: drop results made with other settings (else a resume under them stops, exit 2)
    output_format: Literal["parquet", "jsonl"] = "parquet"

    def __post_init__(self) -> None:
        check_given(self.data.orders)
        spec_for(self.judge.method).check_mode(self.judge.mode)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    judge: JudgeConfig = JudgeConfig()  # n, temperature, max_new_tokens, seed of majority/reflect
    datasets: tuple[str, ...] = ()  # [NAME=]FORMAT:PATH[+PATH...]
    methods: tuple[str, ...] = evaluation.METHODS
    limit: int | None = None  # at most this many pairs per dataset: a seeded, label-balanced sample
    swap: bool = True  # also judge every pair with the responses swapped (for positional consistency)
    sections: dict[str, dict[str, list[str]]] = dataclasses.field(default_factory=dict)  # dataset -> section -> subsets
    held_out: tuple[str, ...] = ("judgebench",)  # formats reported apart
    on_bad_row: Literal["error", "skip"] = "error"
    stages: StagesConfig = StagesConfig()
    ray: RayConfig = RayConfig()
    output: str = "runs/evaluate"
    fresh: bool = False  # true: drop results made with other settings (else a resume under them stops, exit 2)

    def __post_init__(self) -> None:
        evaluation.check_evaluation(self.methods, self.datasets, self.limit, self.judge.method)


# --------------------------------------------------------------------------- Ray Data actors (thin)


STAGES = {
    "stage1": scoring.run_stage1,
    "stage2": scoring.run_stage2,
    "both": scoring.run_both,
    "critic": scoring.run_critic,  # Critic-RM: critiques read by the reward head, one pool
}  # reflectrm.scoring's steps per pool


class StageActor:
    """One pool's actor: builds its engine (Critic-RM: the export and its head) once, then runs its step."""

    def __init__(self, stage: str, model: ModelConfig, judge: JudgeConfig, prompt: PromptConfig, threads: int | None):
        from reflectrm.engines import load_engine

        set_threads(threads)
        critic = stage == "critic"
        self.run, self.steps = STAGES[stage], judge if critic else Steps(judge, prompt)
        self.engine = CriticJudge.for_config(model, judge, prompt) if critic else load_engine(model)

    def __call__(self, batch: Any) -> Any:
        return scoring.rows_table(self.run(self.engine, self.steps, rows_of(batch)))


def run_pipeline(
    items: list[dict[str, str]], cfg: ScoreConfig | EvaluateConfig, out: Path, desc: str = "scored"
) -> tuple[int, PartStore]:
    """Judge the items not yet in OUT/parts with cfg's model, judge, prompt and stages, writing result rows
    there as they stream in. Returns (how many ran, the store). The folder records what makes a row
    (result_settings): a resume under other settings stops, unless cfg.fresh."""
    critic = needs_head(cfg.model.name, cfg.judge.method)  # critic_rm: its head reads hidden states (HF engine)
    model = dataclasses.replace(cfg.model, engine="hf" if critic else resolve_engine(cfg.model.engine))
    template = spec_for(cfg.judge.method).template_version
    settings = result_settings(model, cfg.judge, cfg.prompt, template=template, rows=scoring.ROWS_VERSION)
    store = PartStore(out / "parts", settings, cfg.fresh)
    done = store.done_ids()
    todo = [it for it in items if it["key"] not in done]
    if not todo:
        return 0, store
    init_ray(cfg.ray, out)
    import ray
    from tqdm import tqdm

    ctor, stages = {"model": cfg.model, "judge": cfg.judge, "prompt": cfg.prompt}, cfg.stages
    separate = stages.separate if stages.separate != "auto" else sum(bool(n.get("Alive")) for n in ray.nodes()) > 1
    ds = dataset_of(scoring.rows_table(todo))
    pools = [("stage1", stages.stage1), ("stage2", stages.stage2)] if separate else [("both", stages.stage1)]
    pools = [("critic", stages.stage1)] if critic else pools
    for stage, pool in pools:
        kwargs = {**ctor, "stage": stage, "threads": pool.threads}
        ds = ds.map_batches(StageActor, fn_constructor_kwargs=kwargs, **pool.map_batches_kwargs())
    with tqdm(total=len(todo), desc=desc, unit="item") as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            store.write(batch)  # persisted before the next batch: a crash loses at most the batches in flight
            bar.update(batch.num_rows)
    return len(todo), store


# --------------------------------------------------------------------------- the two jobs on it


def score(cfg: ScoreConfig, out: Path) -> dict[str, Any]:
    """Score every pair of `cfg.data`; writes OUT/scores.(parquet|jsonl) and returns the summary."""
    pairs, load_stats = load_source(cfg.data, cfg.judge.seed)
    evaluation.check_unique([p.id for p in pairs], load_stats["source"])
    items = [scoring.make_item(p.id, p, cfg.judge.mode) for p in pairs]
    t0 = time.perf_counter()
    ran, store = run_pipeline(items, cfg, out)
    seconds = time.perf_counter() - t0
    by_id = {r["id"]: r for r in store.read_all()}
    rows = [by_id[it["key"]] for it in items]  # input order, each id once
    path = out / f"scores.{cfg.output_format}"
    scoring.write_results(rows, path)
    summary = {
        **scoring.summarize_scores(rows),
        "source": load_stats["source"],
        "scored_this_run": ran,
        "resumed": len(items) - ran,
        **{"seconds": round(seconds, 1), "pairs_per_s": round(ran / seconds, 3) if ran and seconds else None},
        **{"model": cfg.model.name, "method": cfg.judge.method, "mode": cfg.judge.mode, "n": cfg.judge.n},
        "prompt_template": spec_for(cfg.judge.method).template_version,
        "output": str(path),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def evaluate(cfg: EvaluateConfig, out: Path) -> dict[str, Any]:
    """Every method on every dataset, both orders; writes OUT/results.json, results.md, results.png."""
    from reflectrm.report import plot_methods

    evaluation.check_budget(cfg.model.name, cfg.judge.max_new_tokens)
    load = evaluation.load_dataset
    datasets = [load(s, cfg.limit, cfg.on_bad_row, cfg.judge.seed, cfg.held_out) for s in cfg.datasets]
    evaluation.check_unique([d.name for d in datasets], "datasets=[...]")
    modes = evaluation.run_modes(cfg.methods)
    items = evaluation.evaluation_items(datasets, modes, ["given", "swapped"] if cfg.swap else ["given"])
    t0 = time.perf_counter()
    ran, store = run_pipeline(items, cfg, out, desc="judged")
    seconds = time.perf_counter() - t0
    results = evaluation.evaluate(
        datasets, items, {r["id"]: r for r in store.read_all()}, cfg.methods, cfg.swap, cfg.sections
    )
    summary = {
        **{"model": cfg.model.name, "judge_method": cfg.judge.method, "n": cfg.judge.n, "limit": cfg.limit},
        "prompt_template": spec_for(cfg.judge.method).template_version,
        "trained_for": evaluation.trained_method(cfg.model.name),  # another judge.method than this: prompting only
        "methods": list(cfg.methods),
        "datasets": {d.name: len(d.pairs) for d in datasets},
        "sampling": "all pairs" if cfg.limit is None else f"a seeded label-balanced sample of limit={cfg.limit}",
        "ci_method": evaluation.CI_METHOD,
        **{"items": len(items), "items_judged_this_run": ran, "seconds": round(seconds, 1)},
        "results": results,
        "config": to_dict(cfg),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    (out / "results.md").write_text(evaluation.markdown(summary))
    orders = "both orders" if cfg.swap else "the given order"
    plot_methods(
        results, out / "results.png", f"{cfg.model.name}: judging methods on labelled pairs, {orders} (n={cfg.judge.n})"
    )
    return summary
