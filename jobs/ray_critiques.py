"""Critic-RM's generate-and-filter on Ray Data: the Ray adapter of jobs.build_critiques.

    pairs -> critic.k critiques of each response (an actor pool holding the engine) -> written as Parquet parts
          as they stream in (a re-run skips finished ids; one made under other sampling settings is refused)
          -> filter and select (reflectrm/data/critiques.py) -> critic.parquet + stats.json

The stored samples do not depend on the filter's settings (min_margin, select, keep), so a re-run with other
ones filters the same samples again without sampling.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from jobs.ray_setup import PoolConfig, RayConfig, dataset_of, init_ray, rows_of, set_threads
from reflectrm.config import ModelConfig, PromptConfig, result_settings
from reflectrm.data.codec import pair_from_row, pair_to_row, pair_type
from reflectrm.data.critiques import CriticFilter, Filtered, filter_pair, sample_texts, select_items
from reflectrm.data.items import write_items
from reflectrm.data.sources import DataConfig, load_source
from reflectrm.data.store import PartStore
from reflectrm.engines import resolve_engine
from reflectrm.methods.critic_rm import TEMPLATE_VERSION
from reflectrm.metrics import label_shares

ROWS_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SamplingSection:
    temperature: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class BuildCritiquesConfig:
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    data: DataConfig = DataConfig()  # labelled pairs (any loader format, or synthetic)
    critic: CriticFilter = CriticFilter()  # k critiques per response; the filter and the selection
    sampling: SamplingSection = SamplingSection()
    ray: RayConfig = RayConfig()
    pool: PoolConfig = PoolConfig()
    output: str = "runs/build_critiques"
    fresh: bool = False  # true: drop samples made with other settings (else a resume under them stops, exit 2)


class CritiqueSampler:
    """Ray Data actor: holds one engine; each call writes critic.k critiques of both responses of its pairs."""

    def __init__(self, model: ModelConfig, prompt: PromptConfig, k: int, sampling: SamplingSection, threads: Any):
        from reflectrm.engines import load_engine

        set_threads(threads)
        self.engine, self.prompt, self.k, self.sampling = load_engine(model), prompt, k, sampling

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        pairs = [pair_from_row(r["pair"]) for r in rows_of(batch)]
        texts = sample_texts(self.engine, pairs, self.k, prompt=self.prompt, **dataclasses.asdict(self.sampling))
        rows = [
            {"id": p.id, "pair": pair_to_row(p), "texts_1": t[0] if t else None, "texts_2": t[1] if t else None}
            for p, t in zip(pairs, texts)
        ]
        return pa.Table.from_pylist(rows, schema=sample_schema())


def sample_schema() -> Any:
    import pyarrow as pa

    texts = pa.list_(pa.string())
    return pa.schema([("id", pa.string()), ("pair", pair_type()), ("texts_1", texts), ("texts_2", texts)])


def build_critiques(cfg: BuildCritiquesConfig, out: Path) -> dict[str, Any]:
    """Sample what is not yet sampled, then filter and select from every stored sample. Returns stats.json."""
    pairs, load_stats = load_source(cfg.data, cfg.sampling.seed)
    unlabelled = sum(p.label not in (1, 2) for p in pairs)
    if unlabelled:
        raise ValueError(
            f"{load_stats['source']}: {unlabelled} pairs have no gold label; generate-and-filter needs one"
        )
    settings = result_settings(
        dataclasses.replace(cfg.model, engine=resolve_engine(cfg.model.engine)),
        cfg.sampling,
        cfg.prompt,
        template=TEMPLATE_VERSION,
        rows=ROWS_VERSION,
        k=cfg.critic.k,
        data=cfg.data.format if cfg.data.format == "synthetic" else f"{cfg.data.format}:{cfg.data.path}",
    )
    store = PartStore(out / "samples", settings, cfg.fresh)
    todo = [p for p in pairs if p.id not in store.done_ids()]
    print(
        f"  {len(pairs)} pairs from {load_stats['source']}: {len(pairs) - len(todo)} already sampled, {len(todo)} to go"
    )
    t0 = time.perf_counter()
    if todo:
        import pyarrow as pa
        from tqdm import tqdm

        init_ray(cfg.ray, out)
        ds = dataset_of(pa.table({"pair": pa.array([pair_to_row(p) for p in todo], type=pair_type())}))
        kwargs = {"model": cfg.model, "prompt": cfg.prompt, "k": cfg.critic.k, "sampling": cfg.sampling}
        ds = ds.map_batches(
            CritiqueSampler,
            fn_constructor_kwargs={**kwargs, "threads": cfg.pool.threads},
            **cfg.pool.map_batches_kwargs(),
        )
        with tqdm(total=len(todo), desc="critiqued", unit="pair") as bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                store.write(batch)  # persisted before the next batch: a crash loses at most the batches in flight
                bar.update(batch.num_rows)
    wanted = {p.id: p for p in pairs}
    samples = [r for r in store.read_all() if r["id"] in wanted]
    filtered = [
        Filtered(None, "prompt too long")
        if r["texts_1"] is None
        else filter_pair(wanted[r["id"]], r["texts_1"], r["texts_2"], cfg.critic)
        for r in samples
    ]
    items, counts = select_items(filtered, cfg.critic)
    write_items(items, out / "critic.parquet")
    stats = {
        "pairs": len(pairs),
        "sampled": len(samples),
        "prompts_too_long": sum(r["texts_1"] is None for r in samples),
        "outcomes": counts,
        "items": len(items),
        "critic": dataclasses.asdict(cfg.critic),
        "model": cfg.model.name,
        "prompt_template": TEMPLATE_VERSION,
        "sampling_seconds": round(time.perf_counter() - t0, 1),
        "label_shares": label_shares([p.label for p in pairs]),
        "output": str(out / "critic.parquet"),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
