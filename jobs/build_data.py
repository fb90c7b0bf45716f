"""Build ReflectRM's training data with Ray Data (method.md §2).

    python -m jobs.build_data --config jobs/configs/build_data.yaml [data.format=llmbar data.path=FILE ...]
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.build_data --config jobs/configs/build_data.yaml output=/shared/storage/build

read pairs -> sample N judgments per pair (an actor pool holding the engine) -> grade against the
gold label -> written as Parquet parts as they stream in (a re-run skips finished ids) -> drop easy
items -> preference set + reflection set -> mix at the ratio -> pref/refl/mix.parquet + stats.json.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Sequence

from jobs.common import DataConfig, parse_job_config, run_folder
from jobs.ray_setup import PoolConfig, RayConfig, batch_of, init_ray, set_threads
from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig
from reflectrm.data.loaders import pair_from_row, pair_to_row, write_rows
from reflectrm.data.reflection import PartStore, build_sets, load_source, parse_ratio, sample_and_grade
from reflectrm.prompts import TEMPLATE_VERSION
from reflectrm.report import table


@dataclasses.dataclass(frozen=True)
class MixConfig:
    ratio: str = "4:1"  # method.md §2: preference:reflection

    def __post_init__(self) -> None:
        parse_ratio(self.ratio)


@dataclasses.dataclass(frozen=True)
class BuildDataConfig:
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    data: DataConfig = DataConfig()
    sampling: JudgeConfig = JudgeConfig(mode="majority")  # n, temperature, max_new_tokens, seed
    mix: MixConfig = MixConfig()
    ray: RayConfig = RayConfig()
    pool: PoolConfig = PoolConfig()
    output: str = "runs/build_data"


class Sampler:
    """Ray Data actor: holds one engine; each call samples and grades a batch of pairs."""

    def __init__(self, model: ModelConfig, sampling: JudgeConfig, prompt: PromptConfig, threads: int | None):
        from reflectrm.engines import load_engine

        set_threads(threads)
        self.engine = load_engine(model)
        self.sampling, self.prompt = sampling, prompt

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        pairs = [pair_from_row(json.loads(s)) for s in batch["pair"]]
        return batch_of(sample_and_grade(self.engine, pairs, self.sampling, self.prompt))


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_job_config(BuildDataConfig, argv, __doc__)
    out = run_folder(cfg, cfg.output)
    pairs, load_stats = load_source(cfg.data.format, cfg.data.path, cfg.data.limit, cfg.data.on_bad_row, cfg.sampling.seed)
    store = PartStore(out / "judgments")
    done = store.done_ids()
    todo = [p for p in pairs if p.id not in done]
    print(f"{len(pairs)} pairs from {load_stats['source']}: {len(pairs) - len(todo)} already judged, {len(todo)} to go")

    t0 = time.perf_counter()
    if todo:
        import ray
        from tqdm import tqdm

        init_ray(cfg.ray)
        ds = ray.data.from_items([{"pair": json.dumps(pair_to_row(p))} for p in todo])
        ds = ds.map_batches(
            Sampler,
            fn_constructor_kwargs={"model": cfg.model, "sampling": cfg.sampling, "prompt": cfg.prompt, "threads": cfg.pool.threads},
            **cfg.pool.map_batches_kwargs(),
        )
        with tqdm(total=len(todo), desc="judged", unit="pair") as bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
                rows = batch.to_dict("records")
                store.write(rows)  # persisted before the next batch: a crash loses at most this one
                bar.update(len(rows))
    sample_s = time.perf_counter() - t0

    wanted = {p.id for p in pairs}
    graded = [r for r in store.read_all() if r["id"] in wanted]
    pref, refl, mix, counts = build_sets(graded, cfg.mix.ratio, cfg.sampling.seed)
    for name, rows in (("pref", pref), ("refl", refl), ("mix", mix)):
        write_rows(rows, out / f"{name}.parquet")
    stats = {
        "items_read": load_stats["rows_read"],
        "bad_rows": load_stats["bad_rows"],
        "ties_dropped": load_stats["ties_dropped"],
        **dataclasses.asdict(counts),
        "ratio": cfg.mix.ratio,
        "model": cfg.model.name,
        "prompt_template": TEMPLATE_VERSION,
        "seed": cfg.sampling.seed,
        "n": cfg.sampling.n,
        "sampling_seconds": round(sample_s, 1),
        "completion_tokens": int(sum(r["completion_tokens"] for r in graded)),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    print(table(["", "count"], [
        ["pairs judged", counts.items], ["judgments", counts.judgments], ["invalid judgments", counts.invalid_judgments],
        ["easy (all correct), dropped", counts.easy_dropped], ["mixed (right and wrong)", counts.mixed], ["all wrong", counts.all_wrong],
        ["preference set", len(pref)], ["reflection set", len(refl)], [f"mix ({cfg.mix.ratio})", f"{counts.preference} + {counts.reflection} = {counts.mix}"],
    ]))
    if counts.reflection == 0 and parse_ratio(cfg.mix.ratio)[1] > 0:
        print("note: no reflection items: no pair got both a right and a wrong valid judgment "
              "(an untrained model that never follows the format gives none; warm-start it with SFT, or sample more)")
    print(f"wrote {out}/pref.parquet, refl.parquet, mix.parquet, stats.json")
    return stats


if __name__ == "__main__":
    main()
