"""Comparing judging methods on labelled data (method.md §5): datasets, the items to judge, the
metrics per method and the summary. No Ray and no engine in here: a job runs the items through the
scoring pipeline (jobs/ray_scoring.py) and hands the result rows back.

    datasets = [load_dataset(spec, ...) for spec in specs]
    items = evaluation_items(datasets, modes, orders)        # one per dataset x pair x engine mode x order
    rows = <the pipeline: one result row per item key>
    results = evaluate(datasets, items, rows, methods, swap, sections)
    markdown(summary)                                        # the report (results.md, and what the job prints)

Majority and reflect share the same stage-1 samples (majority is the plain vote of reflect's stage
1), so the two are compared on identical judgments and majority's cost is exactly reflect's stage 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from reflectrm.data.formats import load_pairs, parse_dataset_spec
from reflectrm.inference import ABLATIONS
from reflectrm.methods import spec_for
from reflectrm.metrics import (
    accuracy,
    consistency,
    flip_rate,
    invalid_rate,
    label_shares,
    pair_scores,
    position_preference,
    section_weighted,
    wilson,
)
from reflectrm.records import PreferencePair
from reflectrm.report import table
from reflectrm.scoring import make_item, stage2_rates

METHODS = ("greedy", "majority", "reflect")  # what an evaluation runs by default
# ...and the paper's ablations of reflect (method.md §5), on request: methods=[...,random_anchor,random_winners]
ABLATION_METHODS = tuple(ABLATIONS)
ALL_METHODS = METHODS + ABLATION_METHODS
CI_METHOD = (
    "95% Wilson intervals over pairs. Both-order accuracy: Wilson at n = pairs with the pair's mean score "
    "(its two judgments are correlated: counting the pair once is conservative whatever the correlation)"
)


SUBSET_KEYS = ("n_items", "accuracy", "accuracy_given", "accuracy_swapped", "consistency", "position_preference")
CRITIC_NOTE = (
    " Critic-RM (pointwise): greedy = one greedy critique per response read by the reward head (m=1); majority "
    "= the mean head reward of n sampled critiques per response (m=n, the paper's inference-time scaling, not a "
    "vote); a pair's verdict is the higher reward, valid = the critique's score parsed."
)


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
    pairs = [p for group in _round_robin(per_file) for p in group]
    if any(p.label not in (1, 2) for p in pairs):
        raise ValueError(
            f"dataset {spec!r} has pairs without a gold label: evaluation needs labelled data (use jobs.score)"
        )
    if limit and limit < len(pairs):
        pairs = balanced_sample(per_file, limit, seed)
    name = name or (fmt if len(files) > 1 else f"{fmt}/{Path(files[0]).stem}")
    return Dataset(name, fmt, pairs, fmt in held_out or name in held_out)  # a held-out format, or a dataset named so


def balanced_sample(per_file: list[list[PreferencePair]], limit: int, seed: int) -> list[PreferencePair]:
    """`limit` pairs, never the first rows: each file's pairs in a seeded hash order, taken round-robin
    over the files while each label's half (limit/2) has room; a label with too few pairs leaves its
    room to the other (the label shares are reported with the results)."""

    def rank(p: PreferencePair) -> str:
        return hashlib.sha256(f"{seed}:{p.id}".encode()).hexdigest()

    order = [p for group in _round_robin([sorted(ps, key=rank) for ps in per_file]) for p in group]
    room = {1: (limit + 1) // 2, 2: limit // 2}
    have = {y: sum(p.label == y for p in order) for y in (1, 2)}
    for y, other in ((1, 2), (2, 1)):  # a short label gives its room away
        spare = room[y] - min(room[y], have[y])
        room[y] -= spare
        room[other] += spare
    taken = []
    for p in order:
        if room.get(p.label, 0) > 0:
            room[p.label] -= 1
            taken.append(p)
    return taken[:limit]


def _round_robin(groups: list[list[PreferencePair]]) -> list[list[PreferencePair]]:
    """[[a1,a2],[b1]] -> [[a1,b1],[a2]]: a limit then takes from every file."""
    width = max(len(g) for g in groups)
    return [[g[i] for g in groups if i < len(g)] for i in range(width)]


def run_modes(methods: Sequence[str]) -> list[str]:
    """The engine runs: greedy; reflect (majority comes free from its stage 1); majority alone only without reflect."""
    modes = [m for m in ("greedy", "reflect", *ABLATION_METHODS) if m in methods]
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
    two_stage = method in ("reflect", *ABLATION_METHODS)
    tokens = [r["completion_tokens"] if two_stage else r["stage1_completion_tokens"] for r in rows]
    prompt_tokens = [r["prompt_tokens"] if two_stage else r["stage1_prompt_tokens"] for r in rows]
    scores = pair_scores(preds, preds_sw, labels) if swap else [float(p == y) for p, y in zip(preds, labels)]
    consistent = sum(p == y and q == 3 - y for p, q, y in zip(preds, preds_sw, labels))
    out: dict[str, Any] = {
        "n_items": len(ids),
        "label_shares": label_shares(labels),
        # the headline: each pair judged in both orders, both count (given order only without swap)
        "accuracy": sum(scores) / len(ids) if ids else 0.0,
        "accuracy_ci": wilson(sum(scores), len(ids)),  # see CI_METHOD
        "accuracy_given": accuracy(preds, labels),
        "accuracy_swapped": accuracy(preds_sw, [3 - y for y in labels]) if swap else None,
        "consistency": consistency(preds, preds_sw, labels) if swap else None,
        "consistency_ci": wilson(consistent, len(ids)) if swap else None,
        "position_preference": position_preference(preds, preds_sw),
        "flip_rate": flip_rate(preds, preds_sw) if swap else None,
        "invalid_rate": invalid_rate(preds, preds_sw),
        "valid_judgment_rate": sum(r["valid_rate"] for r in rows) / len(rows),
        "tokens_per_item": sum(tokens) / len(rows),
        "prompt_tokens_per_item": sum(prompt_tokens) / len(rows),
        **(stage2_rates(rows) if two_stage else dict.fromkeys(stage2_rates([]))),
        "stage2_calls_per_item": sum(r.get("stage2_calls", 0) for r in rows) / len(rows) if two_stage else None,
        "stage2_not_asked_per_item": sum(r.get("stage2_not_asked", 0) for r in rows) / len(rows) if two_stage else None,
        "errors": sum(bool(r["error"]) for r in rows),
        # each pair's verdicts [given, swapped] and gold, for paired comparisons (reflectrm.comparison)
        "verdicts": {i: [p, q, y] for i, p, q, y in zip(ids, preds, preds_sw or [None] * len(ids), labels)},
    }
    if two_stage:
        s1 = sum(r["stage1_completion_tokens"] for r in rows)
        s1p = sum(r["stage1_prompt_tokens"] for r in rows)
        out["cost_vs_majority"] = {
            "generated_tokens": sum(tokens) / s1 if s1 else None,
            "prompt_tokens": sum(prompt_tokens) / s1p if s1p else None,
        }
    return out


def evaluate_rows(
    ds: Dataset,
    rows: list[dict[str, Any]],
    methods: Sequence[str],
    modes: Sequence[str],
    swap: bool,
    sections: dict[str, list[str]] | None,
) -> list[dict[str, Any]]:
    results = []
    for method in methods:
        mode, column = source_of(method, modes)
        mine = [r for r in rows if r["mode"] == mode]
        entry = {
            "dataset": ds.name,
            "method": method,
            "held_out": ds.held_out,
            **metrics_for(mine, method, column, swap),
        }
        subsets = sorted({r["subset"] for r in mine})
        per_subset = []
        for s in subsets:
            m = metrics_for([r for r in mine if r["subset"] == s], method, column, swap)
            per_subset.append({"subset": s, **{k: m[k] for k in SUBSET_KEYS}})
        entry["subsets"] = per_subset
        if len(subsets) > 1:
            entry["weighted_accuracy"] = section_weighted(
                {s["subset"]: (s["accuracy"], s["n_items"]) for s in per_subset}, sections
            )
            entry["weighted_consistency"] = (
                section_weighted({s["subset"]: (s["consistency"], s["n_items"]) for s in per_subset}, sections)
                if swap
                else None
            )
        results.append(entry)
    return results


HEADERS = [
    "dataset",
    "method",
    "pairs (label-1 share)",
    "both-order acc [95% CI]",
    "acc given",
    "acc swapped",
    "consistency [95% CI]",
    "says Response 1",
    "flip",
    "invalid",
    "valid judgments",
    "tokens/item",
    "unanimous",
    "cost vs majority",
]


def with_ci(value: float | None, ci: Sequence[float] | None) -> str | None:
    if value is None:
        return None
    return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.2f}"


def table_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["dataset"],
            r["method"],
            f"{r['n_items']} ({r['label_shares']['1']:.2f})",
            with_ci(r["accuracy"], r.get("accuracy_ci")),
            r["accuracy_given"],
            r["accuracy_swapped"],
            with_ci(r["consistency"], r.get("consistency_ci")),
            r["position_preference"],
            r["flip_rate"],
            r["invalid_rate"],
            r["valid_judgment_rate"],
            f"{r['tokens_per_item']:.1f}",
            r["stage2_unanimous_rate"],
            (
                f"{r['cost_vs_majority']['generated_tokens']:.2f}x"
                if r.get("cost_vs_majority", {}).get("generated_tokens")
                else None
            ),
        ]
        for r in results
    ]


def prompting_only(summary: dict[str, Any]) -> bool:
    """A trained export judged with another method than the one it learnt."""
    trained, used = summary.get("trained_for"), summary.get("prompt_template", "")
    return trained is not None and not used.startswith(trained.replace("_", "-"))


def markdown(summary: dict[str, Any]) -> str:
    results = summary["results"]
    parts = [
        f"# Evaluation: {summary['model']}",
        "",
        f"n={summary['n']}, limit={summary['limit']}, prompts {summary['prompt_template']}. "
        "both-order acc = each pair judged as given and swapped, both count (the headline; a judge that "
        "always names one position scores 0.50); consistency = right in both orders (method.md §5); "
        "says Response 1 = share of valid verdicts naming position 1 (0.50 = no position preference). "
        f"{CI_METHOD}. '-' = not measured."
        + (" Majority is the vote of reflect's own stage-1 samples." if "reflect" in summary["methods"] else "")
        + (CRITIC_NOTE if summary.get("judge_method") == "critic_rm" else "")
        + (f" The model was trained for {summary['trained_for']}: prompting only." if prompting_only(summary) else ""),
        "",
    ]
    for title, held in (("Benchmarks", False), ("Held out (JudgeBench: report only, never tune on it)", True)):
        rows = [r for r in results if r["held_out"] == held]
        if rows:
            parts += [f"## {title}", "", table(HEADERS, table_rows(rows)), ""]
    sub = [
        [
            r["dataset"],
            s["subset"],
            r["method"],
            s["n_items"],
            s["accuracy"],
            s["consistency"],
            s["position_preference"],
        ]
        for r in results
        if len(r["subsets"]) > 1
        for s in r["subsets"]
    ]
    if sub:
        heads = ["dataset", "subset", "method", "pairs", "both-order acc", "consistency", "says Response 1"]
        parts += ["## Subsets", "", table(heads, sub), ""]
        weighted = [
            [r["dataset"], r["method"], r.get("weighted_accuracy"), r.get("weighted_consistency")]
            for r in results
            if "weighted_accuracy" in r
        ]
        parts += [
            "Weighted over subsets (RewardBench v1: count-weighted within a section, mean over sections):",
            "",
            table(["dataset", "method", "weighted acc", "weighted consistency"], weighted),
            "",
        ]
    return "\n".join(parts)


def evaluation_items(datasets: Sequence[Dataset], modes: Sequence[str], orders: Sequence[str]) -> list[dict[str, Any]]:
    """Every (dataset, pair, engine mode, order) as a scoring item with a unique key."""
    items = [
        make_item(
            f"{d.name}|{mode}|{order}|{p.id}",
            p if order == "given" else p.swapped(),
            mode,
            dataset=d.name,
            subset=p.subset,
            order=order,
        )  # type: ignore[arg-type]
        for d in datasets
        for p in d.pairs
        for mode in modes
        for order in orders
    ]
    check_unique([it["key"] for it in items], "the evaluation")
    return items


def evaluate(
    datasets: Sequence[Dataset],
    items: Sequence[dict[str, Any]],
    rows_by_key: dict[str, dict[str, Any]],
    methods: Sequence[str],
    swap: bool,
    sections: dict[str, dict[str, list[str]]],
) -> list[dict[str, Any]]:
    """The metrics of every method on every dataset, from the pipeline's result rows."""
    modes = run_modes(methods)
    results = []
    for d in datasets:
        rows = [rows_by_key[it["key"]] for it in items if it["meta"]["dataset"] == d.name]
        results += evaluate_rows(d, rows, methods, modes, swap, sections.get(d.name))
    return results


def check_evaluation(
    methods: Sequence[str], datasets: Sequence[str], limit: int | None, judge_method: str = "reflectrm"
) -> None:
    """An evaluation's methods, datasets and limit, or a ValueError naming the fix."""
    if not methods or any(m not in ALL_METHODS for m in methods):
        raise ValueError(f"methods={list(methods)}: choose from {list(ALL_METHODS)}")
    judge = spec_for(judge_method)
    if unsupported := [m for m in methods if ("reflect" if m in ABLATIONS else m) not in judge.modes]:
        raise ValueError(
            f"methods={list(methods)}: {', '.join(unsupported)} not available with judge.method={judge.name}; "
            f"set methods=[{','.join(m for m in methods if m not in unsupported) or ','.join(judge.modes)}]"
        )
    if not datasets:
        raise ValueError("datasets is empty: give e.g. datasets=[llmbar:../shared/data/llmbar/natural.json]")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")


def check_budget(model: str, max_new_tokens: int) -> None:
    """A trained export records the judge budget of its rollouts (training.json): evaluating it below that
    budget cuts its judgments short and understates it, so that is refused with the fix."""
    record = Path(model) / "training.json"
    trained = json.loads(record.read_text()).get("max_new_tokens") if record.is_file() else None
    if trained and max_new_tokens < trained:
        raise ValueError(
            f"judge.max_new_tokens={max_new_tokens} is below the {trained} tokens {model} was trained with "
            f"(its training.json): evaluate at judge.max_new_tokens={trained} or more"
        )


def trained_method(model: str) -> str | None:
    """The judge method a trained export learnt (its training.json), None for any other model. Judging it with
    another method is allowed: prompting only, which the evaluation's summary says."""
    record = Path(model) / "training.json"
    return json.loads(record.read_text()).get("method", "reflectrm") if record.is_file() else None


def check_unique(keys: Sequence[str], what: str) -> None:
    """Results are keyed and resumed by id: two items with one id would overwrite each other."""
    seen: set[str] = set()
    for k in keys:
        if k in seen:
            raise ValueError(
                f"{what} has two items with id {k!r}: ids must be unique (scores are keyed and resumed by id)"
            )
        seen.add(k)
