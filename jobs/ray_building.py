"""The Ray Data adapter of jobs.build_data (method.md §2): an actor pool holding the engine samples
and grades N judgments per pair; the rows stream into a PartStore, then the library builds the sets.

    read pairs -> sample N judgments per pair -> grade against the gold label -> Parquet parts as they
    stream in (a re-run skips finished ids) -> drop easy items -> preference set + reflection set ->
    mix at the ratio -> pref/refl/mix.parquet + stats.json
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from jobs.ray_setup import PoolConfig, RayConfig, dataset_of, init_ray, rows_of, set_threads
from reflectrm.config import ConfigError, JudgeConfig, ModelConfig, PromptConfig, result_settings
from reflectrm.data.builder import ROWS_VERSION, build_sets, graded_schema, parse_ratio, sample_and_grade
from reflectrm.data.codec import pair_from_row, pair_to_row, pair_type
from reflectrm.data.items import write_items
from reflectrm.data.orders import orient_pairs
from reflectrm.data.sources import DataConfig, load_source
from reflectrm.data.store import PartStore
from reflectrm.engines import resolve_engine
from reflectrm.metrics import label_shares
from reflectrm.prompts import TEMPLATE_VERSION


@dataclasses.dataclass(frozen=True)
class MixConfig:
    ratio: str = "4:1"  # method.md §2: preference:reflection

    def __post_init__(self) -> None:
        parse_ratio(self.ratio)


# build_data's default data.orders: a seeded coin per pair balances the labels at no extra cost; training
# (data.orders=both by default) then adds each item's swapped twin. `both` here judges every pair twice.
BUILD_ORDERS = "random"


@dataclasses.dataclass(frozen=True)
class BuildDataConfig:
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    data: DataConfig = DataConfig()
    judge: JudgeConfig = JudgeConfig(mode="majority")  # n (judgments per pair), temperature, max_new_tokens, seed
    mix: MixConfig = MixConfig()
    ray: RayConfig = RayConfig()
    pool: PoolConfig = PoolConfig()
    output: str = "runs/build_data"
    fresh: bool = False  # true: drop judgments made with other settings (else a resume under them stops, exit 2)

    def __post_init__(self) -> None:
        if self.judge.method == "critic_rm":
            raise ConfigError(
                "judge.method=critic_rm: build_data builds ReflectRM's 4:1 mix; Critic-RM's data is its generate-and-"
                "filter (python -m jobs.build_critiques --config jobs/configs/build_critiques.yaml)"
            )
        if self.judge.method != "reflectrm":
            raise ConfigError(
                f"judge.method={self.judge.method}: build_data builds ReflectRM's 4:1 mix of its two tasks; train "
                f"{self.judge.method} on labelled pairs directly (python -m jobs.train method={self.judge.method} data.path=...)"
            )


class Sampler:
    """Ray Data actor: holds one engine; each call samples and grades a batch of pairs."""

    def __init__(self, model: ModelConfig, judge: JudgeConfig, prompt: PromptConfig, threads: int | None):
        from reflectrm.engines import load_engine

        set_threads(threads)
        self.engine = load_engine(model)
        self.judge, self.prompt = judge, prompt

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        pairs = [pair_from_row(r["pair"]) for r in rows_of(batch)]
        return pa.Table.from_pylist(
            sample_and_grade(self.engine, pairs, self.judge, self.prompt), schema=graded_schema()
        )


def build_data(cfg: BuildDataConfig, out: Path) -> dict[str, Any]:
    """Sample what is not yet sampled, then (re)build the sets from every graded row. Returns stats.json's content."""
    pairs, load_stats = load_source(cfg.data, cfg.judge.seed)
    orders = cfg.data.orders or BUILD_ORDERS
    pairs = orient_pairs(pairs, orders, cfg.judge.seed)
    settings = result_settings(
        dataclasses.replace(cfg.model, engine=resolve_engine(cfg.model.engine)),
        cfg.judge,
        cfg.prompt,
        template=TEMPLATE_VERSION,
        rows=ROWS_VERSION,
        data=cfg.data.format if cfg.data.format == "synthetic" else f"{cfg.data.format}:{cfg.data.path}",
        orders=orders,
    )  # synthetic: more pairs extend the same ones (their ids and contents do not depend on the count)
    store = PartStore(out / "judgments", settings, cfg.fresh)
    done = store.done_ids()
    todo = [p for p in pairs if p.id not in done]
    print(
        f"  {len(pairs)} pairs from {load_stats['source']}: {len(pairs) - len(todo)} already judged, {len(todo)} to go"
    )
    t0 = time.perf_counter()
    if todo:
        from tqdm import tqdm

        init_ray(cfg.ray, out)
        import pyarrow as pa

        pair_rows = [pair_to_row(p) for p in todo]
        ds = dataset_of(pa.table({"pair": pa.array(pair_rows, type=pair_type())}))
        ds = ds.map_batches(
            Sampler,
            fn_constructor_kwargs={
                "model": cfg.model,
                "judge": cfg.judge,
                "prompt": cfg.prompt,
                "threads": cfg.pool.threads,
            },
            **cfg.pool.map_batches_kwargs(),
        )
        with tqdm(total=len(todo), desc="judged", unit="pair") as bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                rows = batch.to_pylist()
                store.write(rows)  # persisted before the next batch: a crash loses at most this one
                bar.update(len(rows))
    sample_s = time.perf_counter() - t0

    wanted = {p.id for p in pairs}
    graded = [r for r in store.read_all() if r["id"] in wanted]
    pref, refl, mix, counts = build_sets(graded, cfg.mix.ratio, cfg.judge.seed)
    for name, items in (("pref", pref), ("refl", refl), ("mix", mix)):
        write_items(items, out / f"{name}.parquet")
    stats = {
        "items_read": load_stats["rows_read"],
        "bad_rows": load_stats["bad_rows"],
        "ties_dropped": load_stats["ties_dropped"],
        **dataclasses.asdict(counts),
        "ratio": cfg.mix.ratio,
        "model": cfg.model.name,
        "prompt_template": TEMPLATE_VERSION,
        "seed": cfg.judge.seed,
        "n": cfg.judge.n,
        "sampling_seconds": round(sample_s, 1),
        "completion_tokens": int(sum(r["completion_tokens"] for r in graded)),
        "source": load_stats["source"],
        "orders": orders,
        "label_shares": label_shares([p.label for p in pairs if p.label in (1, 2)]),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
