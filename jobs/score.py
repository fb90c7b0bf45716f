"""Score a whole dataset with a judge, as a Ray Data pipeline (method.md §4).

    python -m jobs.score --config jobs/configs/score.yaml data.format=llmbar data.path=FILE output=runs/score
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.score --config jobs/configs/score.yaml data.format=pandalm data.path=FILE output=/mnt/shared/score

read pairs -> stage 1 (an actor pool holding the engine: N judgments per pair) -> select (a pure
step: parse, anchor, plan) -> stage 2 (its own actor pool: the reflection calls, the vote) ->
Parquet parts written as they stream in -> OUTPUT/scores.parquet (or .jsonl): one row per pair with
id, preferred, score, usage and the whole trace. The two pools run at the same time and can sit on
different GPUs (`stage1.gpus`, `stage2.gpus`); `separate_stages=false` runs both stages in one pool.
A re-run skips ids already written; every id appears exactly once in the output.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Literal, Sequence

from jobs.common import DataConfig, parse_job_config, run_folder
from jobs.ray_setup import PoolConfig, RayConfig, batch_of, init_ray, rows_of, set_threads
from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig
from reflectrm.data.loaders import write_rows
from reflectrm.data.reflection import PartStore, load_source
from reflectrm.inference import Steps
from reflectrm.prompts import TEMPLATE_VERSION
from reflectrm.report import table
from reflectrm.scoring import make_item, run_both, run_select, run_stage1, run_stage2


@dataclasses.dataclass(frozen=True)
class StagesConfig:
    """The actor pools of the two stages (on 2 CPUs: fractions, so both fit with room for the select step)."""

    separate: bool = True  # False: one pool runs both stages (fewer model copies, no overlap)
    stage1: PoolConfig = PoolConfig(cpus=0.5)
    stage2: PoolConfig = PoolConfig(cpus=0.5)
    select_cpus: float = 0.1  # the pure select step runs as Ray tasks


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    judge: JudgeConfig = JudgeConfig()  # mode (reflect), n, temperature, max_new_tokens, seed
    data: DataConfig = DataConfig(format="synthetic", path="64")
    stages: StagesConfig = StagesConfig()
    ray: RayConfig = RayConfig()
    output: str = "runs/score"
    output_format: Literal["parquet", "jsonl"] = "parquet"


# --------------------------------------------------------------------------- Ray Data actors (thin)


class _EngineActor:
    def __init__(self, model: ModelConfig, judge: JudgeConfig, prompt: PromptConfig, threads: int | None):
        from reflectrm.engines import load_engine

        set_threads(threads)
        self.engine = load_engine(model)
        self.steps = Steps(judge, prompt)


class Stage1(_EngineActor):
    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return batch_of(run_stage1(self.engine, self.steps, rows_of(batch)))


class Stage2(_EngineActor):
    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return batch_of(run_stage2(self.engine, self.steps, rows_of(batch)))


class BothStages(_EngineActor):
    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return batch_of(run_both(self.engine, self.steps, rows_of(batch)))


def select(batch: dict[str, Any], judge: JudgeConfig, prompt: PromptConfig) -> dict[str, list]:
    return batch_of(run_select(Steps(judge, prompt), rows_of(batch)))


# --------------------------------------------------------------------------- the pipeline


def run_pipeline(
    items: list[dict[str, str]], model: ModelConfig, judge: JudgeConfig, prompt: PromptConfig,
    stages: StagesConfig, store: PartStore, desc: str = "scored",
) -> int:
    """Judge the items not yet in `store`, writing result rows to it as they stream in. Returns how many ran."""
    done = store.done_ids()
    todo = [it for it in items if it["key"] not in done]
    if not todo:
        return 0
    import ray
    from tqdm import tqdm

    ctor = {"model": model, "judge": judge, "prompt": prompt}
    ds = ray.data.from_items(todo)
    if stages.separate:
        ds = ds.map_batches(Stage1, fn_constructor_kwargs={**ctor, "threads": stages.stage1.threads}, **stages.stage1.map_batches_kwargs())
        ds = ds.map_batches(select, fn_kwargs={"judge": judge, "prompt": prompt}, num_cpus=stages.select_cpus)
        ds = ds.map_batches(Stage2, fn_constructor_kwargs={**ctor, "threads": stages.stage2.threads}, **stages.stage2.map_batches_kwargs())
    else:
        ds = ds.map_batches(BothStages, fn_constructor_kwargs={**ctor, "threads": stages.stage1.threads}, **stages.stage1.map_batches_kwargs())
    with tqdm(total=len(todo), desc=desc, unit="item") as bar:
        for batch in ds.iter_batches(batch_size=None):
            rows = [json.loads(r) for r in batch["row"]]
            store.write(rows)  # persisted before the next batch: a crash loses at most the batches in flight
            bar.update(len(rows))
    return len(todo)


def check_unique(keys: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for k in keys:
        if k in seen:
            raise SystemExit(f"error: {what} has two items with id {k!r}: ids must be unique (scores are keyed and resumed by id)")
        seen.add(k)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    labelled = [r for r in rows if r["label"] in (1, 2)]
    return {
        "pairs": n,
        "preferred_1": sum(r["preferred"] == 1 for r in rows),
        "preferred_2": sum(r["preferred"] == 2 for r in rows),
        "no_verdict": sum(r["preferred"] is None for r in rows),
        "errors": sum(bool(r["error"]) for r in rows),
        "valid_judgment_rate": sum(r["valid_rate"] for r in rows) / n if n else 0.0,
        "stage2_skip_rate": sum(bool(r["stage2_skipped"]) for r in rows) / n if n else 0.0,
        "stage2_calls": sum(r["stage2_calls"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "labelled": len(labelled),
        "accuracy": sum(r["preferred"] == r["label"] for r in labelled) / len(labelled) if labelled else None,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_job_config(ScoreConfig, argv, __doc__)
    out = run_folder(cfg, cfg.output)
    pairs, load_stats = load_source(cfg.data.format, cfg.data.path, cfg.data.limit, cfg.data.on_bad_row, cfg.judge.seed)
    check_unique([p.id for p in pairs], load_stats["source"])
    items = [make_item(p.id, p, cfg.judge.mode) for p in pairs]
    store = PartStore(out / "parts")
    print(f"{len(pairs)} pairs from {load_stats['source']}; mode={cfg.judge.mode} n={cfg.judge.n} model={cfg.model.name}")

    t0 = time.perf_counter()
    init_ray(cfg.ray)
    ran = run_pipeline(items, cfg.model, cfg.judge, cfg.prompt, cfg.stages, store)
    seconds = time.perf_counter() - t0

    by_id = {r["id"]: r for r in store.read_all()}
    rows = [by_id[it["key"]] for it in items]  # input order, each id once
    path = out / f"scores.{cfg.output_format}"
    if cfg.output_format == "jsonl":
        rows_out = [{**r, "trace": json.loads(r["trace"])} for r in rows]
        write_rows(rows_out, path)
    else:
        write_rows(rows, path)
    summary = {**summarize(rows), "scored_this_run": ran, "resumed": len(items) - ran, "seconds": round(seconds, 1),
               "pairs_per_s": round(ran / seconds, 3) if ran and seconds else None,
               "model": cfg.model.name, "mode": cfg.judge.mode, "n": cfg.judge.n, "prompt_template": TEMPLATE_VERSION}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(table(["", "value"], [
        ["pairs", summary["pairs"]], ["scored this run / resumed", f"{ran} / {len(items) - ran}"],
        ["preferred 1 / 2 / no verdict", f"{summary['preferred_1']} / {summary['preferred_2']} / {summary['no_verdict']}"],
        ["valid judgments", summary["valid_judgment_rate"]], ["stage 2 skipped", summary["stage2_skip_rate"]],
        ["accuracy (labelled pairs)", summary["accuracy"]], ["errors (e.g. prompt too long)", summary["errors"]],
        ["generated tokens", summary["completion_tokens"]], ["seconds", summary["seconds"]],
    ]))
    print(f"wrote {path} ({len(rows)} rows) and {out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()
