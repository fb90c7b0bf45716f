"""Compare judging methods on labelled data (method.md §5), on the Ray Data scoring pipeline.

    python -m jobs.evaluate --config jobs/configs/evaluate.yaml model=MODEL \\
        datasets=[llmbar:PATH] methods=[greedy,majority,reflect] n=8 limit=20 output=DIR
    python -m jobs.evaluate --config jobs/configs/evaluate_real.yaml      # everything in ../shared/data

Every pair is judged by each method in the given order AND with the responses swapped. Per dataset
(and per subset): accuracy, accuracy swapped, positional consistency (right in both orders),
flip rate, invalid-output rate, generated tokens per item, stage-2 skip rate and reflect's cost
relative to majority; a RewardBench-v1-style weighted score over subsets. Majority and reflect
share the same stage-1 samples (majority is the plain vote of reflect's stage 1), so the two are
compared on identical judgments and majority's cost is exactly reflect's stage 1.

A dataset is `[NAME=]FORMAT:PATH[+PATH...]`; several files make one dataset whose subsets are the
files. Formats in `held_out` (JudgeBench) are reported separately: never tune against them.
Writes DIR/results.json, DIR/results.md, DIR/results.png; a re-run resumes (DIR/parts).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Literal, Sequence

from jobs.common import parse_job_config, run_folder
from jobs.ray_setup import RayConfig, init_ray
from jobs.score import StagesConfig, check_unique, run_pipeline
from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig, to_dict
from reflectrm.data.loaders import load_pairs, parse_dataset_spec
from reflectrm.data.reflection import PartStore
from reflectrm.metrics import accuracy, consistency, flip_rate, invalid_rate, section_weighted
from reflectrm.prompts import TEMPLATE_VERSION
from reflectrm.records import PreferencePair
from reflectrm.report import table
from reflectrm.scoring import make_item

METHODS = ("greedy", "majority", "reflect")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    judge: JudgeConfig = JudgeConfig()  # n, temperature, max_new_tokens, seed of majority/reflect
    datasets: tuple[str, ...] = ()  # [NAME=]FORMAT:PATH[+PATH...]
    methods: tuple[str, ...] = METHODS
    n: int | None = None  # shorthand for judge.n
    limit: int | None = None  # at most this many pairs per dataset (taken round-robin over its files)
    swap: bool = True  # also judge every pair with the responses swapped (for positional consistency)
    sections: dict[str, dict[str, list[str]]] = dataclasses.field(default_factory=dict)  # dataset -> section -> subsets
    held_out: tuple[str, ...] = ("judgebench",)  # formats reported apart
    on_bad_row: Literal["error", "skip"] = "error"
    stages: StagesConfig = StagesConfig()
    ray: RayConfig = RayConfig()
    output: str = "runs/evaluate"

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods={list(self.methods)}: choose from {list(METHODS)}")
        if not self.datasets:
            raise ValueError("datasets is empty: give e.g. datasets=[llmbar:../shared/data/llmbar/natural.json]")
        if self.n is not None and self.n < 1 or self.limit is not None and self.limit < 1:
            raise ValueError(f"n and limit must be >= 1, got n={self.n} limit={self.limit}")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    format: str
    pairs: list[PreferencePair]
    held_out: bool


def load_dataset(spec: str, limit: int | None, on_bad_row: str, seed: int, held_out: Sequence[str]) -> Dataset:
    name, eq, rest = spec.partition("=")
    if not eq:
        name, rest = "", spec
    fmt, paths = parse_dataset_spec(rest)
    files = [p for p in paths.split("+") if p]
    per_file = [load_pairs(fmt, f, on_bad_row=on_bad_row, seed=seed)[0] for f in files]  # type: ignore[arg-type]
    pairs = [p for group in _round_robin(per_file) for p in group][: limit or None]
    if any(p.label not in (1, 2) for p in pairs):
        raise SystemExit(f"error: dataset {spec!r} has pairs without a gold label: evaluate needs labelled data (use jobs.score)")
    name = name or (fmt if len(files) > 1 else f"{fmt}/{Path(files[0]).stem}")
    return Dataset(name, fmt, pairs, fmt in held_out)


def _round_robin(groups: list[list[PreferencePair]]) -> list[list[PreferencePair]]:
    """[[a1,a2],[b1]] -> [[a1,b1],[a2]]: a limit then takes from every file."""
    width = max(len(g) for g in groups)
    return [[g[i] for g in groups if i < len(g)] for i in range(width)]


def run_modes(methods: Sequence[str]) -> list[str]:
    """The engine runs: greedy; reflect (majority comes free from its stage 1); majority alone only without reflect."""
    modes = [m for m in ("greedy", "reflect") if m in methods]
    return modes + (["majority"] if "majority" in methods and "reflect" not in methods else [])


def source_of(method: str, modes: Sequence[str]) -> tuple[str, str]:
    """(the mode whose rows hold this method's answers, the column of its verdict)."""
    if method == "majority" and "reflect" in modes:
        return "reflect", "majority"
    return method, "preferred"


def metrics_for(rows: list[dict[str, Any]], method: str, column: str, swap: bool) -> dict[str, Any]:
    """Metrics of one method over one dataset's rows (both orders); its verdicts are in `column`."""
    given = {r["pair_id"]: r for r in rows if r["order"] == "given"}
    swapped = {r["pair_id"]: r for r in rows if r["order"] == "swapped"}
    ids = sorted(given)
    labels = [given[i]["label"] for i in ids]
    preds = [given[i][column] for i in ids]
    preds_sw = [swapped[i][column] for i in ids] if swap else []
    stage1_only = method != "reflect"
    tokens = [r["stage1_completion_tokens"] if stage1_only else r["completion_tokens"] for r in rows]
    prompt_tokens = [r["stage1_prompt_tokens"] if stage1_only else r["prompt_tokens"] for r in rows]
    out: dict[str, Any] = {
        "n_items": len(ids),
        "accuracy": accuracy(preds, labels),
        "accuracy_swapped": accuracy(preds_sw, [3 - y for y in labels]) if swap else None,
        "consistency": consistency(preds, preds_sw, labels) if swap else None,
        "flip_rate": flip_rate(preds, preds_sw) if swap else None,
        "invalid_rate": invalid_rate(preds, preds_sw),
        "valid_judgment_rate": sum(r["valid_rate"] for r in rows) / len(rows),
        "tokens_per_item": sum(tokens) / len(rows),
        "prompt_tokens_per_item": sum(prompt_tokens) / len(rows),
        "stage2_skip_rate": sum(bool(r["stage2_skipped"]) for r in rows) / len(rows) if method == "reflect" else None,
        "errors": sum(bool(r["error"]) for r in rows),
    }
    if method == "reflect":
        s1 = sum(r["stage1_completion_tokens"] for r in rows)
        s1p = sum(r["stage1_prompt_tokens"] for r in rows)
        out["cost_vs_majority"] = {"generated_tokens": sum(tokens) / s1 if s1 else None, "prompt_tokens": sum(prompt_tokens) / s1p if s1p else None}
    return out


def evaluate_rows(ds: Dataset, rows: list[dict[str, Any]], methods: Sequence[str], modes: Sequence[str], swap: bool,
                  sections: dict[str, list[str]] | None) -> list[dict[str, Any]]:
    results = []
    for method in methods:
        mode, column = source_of(method, modes)
        mine = [r for r in rows if r["mode"] == mode]
        entry = {"dataset": ds.name, "method": method, "held_out": ds.held_out, **metrics_for(mine, method, column, swap)}
        subsets = sorted({r["subset"] for r in mine})
        per_subset = []
        for s in subsets:
            m = metrics_for([r for r in mine if r["subset"] == s], method, column, swap)
            per_subset.append({"subset": s, "n_items": m["n_items"], "accuracy": m["accuracy"], "accuracy_swapped": m["accuracy_swapped"], "consistency": m["consistency"]})
        entry["subsets"] = per_subset
        if len(subsets) > 1:
            entry["weighted_accuracy"] = section_weighted({s["subset"]: (s["accuracy"], s["n_items"]) for s in per_subset}, sections)
            entry["weighted_consistency"] = (
                section_weighted({s["subset"]: (s["consistency"], s["n_items"]) for s in per_subset}, sections) if swap else None
            )
        results.append(entry)
    return results


HEADERS = ["dataset", "method", "items", "acc", "acc swapped", "consistency", "flip", "invalid", "valid judgments", "tokens/item", "stage2 skip", "cost vs majority"]


def table_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r["dataset"], r["method"], r["n_items"], r["accuracy"], r["accuracy_swapped"], r["consistency"], r["flip_rate"], r["invalid_rate"],
             r["valid_judgment_rate"], f"{r['tokens_per_item']:.1f}", r["stage2_skip_rate"],
             (f"{r['cost_vs_majority']['generated_tokens']:.2f}x" if r.get("cost_vs_majority", {}).get("generated_tokens") else None)]
            for r in results]


def markdown(summary: dict[str, Any]) -> str:
    results = summary["results"]
    parts = [f"# Evaluation: {summary['model']}", "",
             f"n={summary['n']}, limit={summary['limit']}, prompts {summary['prompt_template']}. "
             "acc = accuracy in the given order; consistency = right in both orders (method.md §5); "
             "'-' = not measured. Majority is the vote of reflect's own stage-1 samples.", ""]
    for title, held in (("Benchmarks", False), ("Held out (JudgeBench: report only, never tune on it)", True)):
        rows = [r for r in results if r["held_out"] == held]
        if rows:
            parts += [f"## {title}", "", table(HEADERS, table_rows(rows)), ""]
    sub = [[r["dataset"], s["subset"], r["method"], s["n_items"], s["accuracy"], s["consistency"]] for r in results if len(r["subsets"]) > 1 for s in r["subsets"]]
    if sub:
        parts += ["## Subsets", "", table(["dataset", "subset", "method", "items", "acc", "consistency"], sub), ""]
        weighted = [[r["dataset"], r["method"], r.get("weighted_accuracy"), r.get("weighted_consistency")] for r in results if "weighted_accuracy" in r]
        parts += ["Weighted over subsets (RewardBench v1: count-weighted within a section, mean over sections):", "",
                  table(["dataset", "method", "weighted acc", "weighted consistency"], weighted), ""]
    return "\n".join(parts)


def chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    methods = list(dict.fromkeys(r["method"] for r in results))
    panels = (("accuracy", "accuracy (given order)"), ("consistency", "positional consistency"), ("valid_judgment_rate", "valid-format judgments"))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(12, 3 * len(datasets) + 5), 4.5), sharey=True)
    width = 0.8 / len(methods)
    for ax, (key, title) in zip(axes, panels):
        for k, method in enumerate(methods):
            values = [next((r[key] or 0.0 for r in results if r["dataset"] == d and r["method"] == method), 0.0) for d in datasets]
            bars = ax.bar([i + k * width for i in range(len(datasets))], values, width, label=method)
            ax.bar_label(bars, fmt="%.2f", fontsize=6)
        ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(datasets))], datasets, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_ylim(0, 1)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_job_config(EvaluateConfig, argv, __doc__)
    judge = dataclasses.replace(cfg.judge, n=cfg.n) if cfg.n else cfg.judge
    out = run_folder(cfg, cfg.output)
    datasets = [load_dataset(s, cfg.limit, cfg.on_bad_row, judge.seed, cfg.held_out) for s in cfg.datasets]
    check_unique([d.name for d in datasets], "datasets=[...]")
    modes = run_modes(cfg.methods)
    orders = ["given", "swapped"] if cfg.swap else ["given"]
    items = [
        make_item(f"{d.name}|{mode}|{order}|{p.id}", p if order == "given" else p.swapped(), mode, dataset=d.name, subset=p.subset, order=order)  # type: ignore[arg-type]
        for d in datasets for p in d.pairs for mode in modes for order in orders
    ]
    check_unique([it["key"] for it in items], "the evaluation")
    print(f"model={cfg.model.name} n={judge.n} methods={cfg.methods} (engine runs: {modes}) orders={orders}")
    for d in datasets:
        print(f"  {d.name}: {len(d.pairs)} pairs{' (held out)' if d.held_out else ''}")

    t0 = time.perf_counter()
    init_ray(cfg.ray)
    store = PartStore(out / "parts")
    ran = run_pipeline(items, cfg.model, judge, cfg.prompt, cfg.stages, store, desc="judged")
    seconds = time.perf_counter() - t0

    by_key = {r["id"]: r for r in store.read_all()}
    results = []
    for d in datasets:
        rows = [by_key[it["key"]] for it in items if json.loads(it["meta"])["dataset"] == d.name]
        results += evaluate_rows(d, rows, cfg.methods, modes, cfg.swap, cfg.sections.get(d.name))
    summary = {
        "model": cfg.model.name,
        "n": judge.n,
        "limit": cfg.limit,
        "prompt_template": TEMPLATE_VERSION,
        "methods": list(cfg.methods),
        "items_judged_this_run": ran,
        "seconds": round(seconds, 1),
        "results": results,
        "config": to_dict(cfg),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    (out / "results.md").write_text(markdown(summary))
    chart(results, out / "results.png")
    print()
    print(markdown(summary))
    print(f"wrote {out}/results.json, results.md, results.png ({ran} items judged this run, {len(items) - ran} resumed; {seconds:.0f} s)")
    return summary


if __name__ == "__main__":
    main()
