"""The main job's experiment (jobs/main.py): held-out pairs by construction, and before vs after training.

files, dropped = heldout_files(folder, pairs, llmbar, seed, training_draws)   # the evaluation's data
compare = before_after(eval_before, eval_after)                               # per dataset x method
summary = write_report(out, model, compare, build_stats, train_summary, seconds)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from reflectrm.data.codec import pair_to_row
from reflectrm.data.formats import load_pairs
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.records import PreferencePair
from reflectrm.report import plot_before_after, plot_curves, table

LLMBAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llmbar" / "natural.json"
METRICS = (
    ("accuracy", "accuracy"),
    ("consistency", "consistency"),
    ("valid_judgment_rate", "valid format"),
    ("tokens_per_item", "tokens/item"),
)


def _key(p: PreferencePair) -> tuple[str, str, str]:
    return (p.context[-1].content, p.response_1, p.response_2)


def heldout_pairs(
    pairs: int, seed: int, training_draws: dict[int, int], top_up: bool = False
) -> tuple[list[PreferencePair], int]:
    """`pairs` synthetic pairs from their own seed, minus any that a training draw also holds
    (`training_draws`: seed -> how many pairs that stage draws from the synthetic set), and how many
    were dropped. `top_up`: draw on (the set is prefix-stable) until `pairs` are left after dropping."""
    seen = {_key(p) for s, n in training_draws.items() for p in synthetic_pairs(int(n), seed=s)}
    n = pairs
    while True:
        drawn = synthetic_pairs(n, seed=seed)
        kept = [p for p in drawn if _key(p) not in seen]
        if not top_up or len(kept) >= pairs or n >= 4 * pairs:
            return kept[:pairs] if top_up else kept, len(drawn) - len(kept)
        n += pairs - len(kept)


def split_held_out(
    pairs: list[PreferencePair], held: int, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(training pairs, `held` held-out pairs): a seeded hash of each pair's id decides, so the split
    never depends on the file's order; pairs sharing content with a held-out one go to neither side."""
    ranked = sorted(pairs, key=lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).hexdigest())
    kept = ranked[:held]
    keys = {_key(p) for p in kept}
    return [p for p in ranked[held:] if _key(p) not in keys], kept


def overlap(evaluation: list[PreferencePair], *training: list[PreferencePair]) -> int:
    """How many evaluation pairs also appear (same last user turn and responses, in either order) in training."""
    seen = {k for ps in training for p in ps for k in (_key(p), _key(p.swapped()))}
    return sum(_key(p) in seen for p in evaluation)


def heldout_files(
    folder: Path, pairs: int, llmbar: int, seed: int, training_draws: dict[int, int]
) -> tuple[dict[str, tuple[Path, int]], int]:
    """The evaluation's datasets as canonical JSONL files: {name: (path, pairs)}, and how many were dropped."""
    folder.mkdir(parents=True, exist_ok=True)
    kept, dropped = heldout_pairs(pairs, seed, training_draws)
    sets = {"synthetic": kept}
    if llmbar and LLMBAR.is_file():  # real pairs too, when the shared data is there
        sets["llmbar-natural"] = load_pairs("llmbar", LLMBAR)[0][:llmbar]
    files = {}
    for name, ps in sets.items():
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(pair_to_row(p)) + "\n" for p in ps))
        files[name] = (path, len(ps))
    return files, dropped


def before_after(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (dataset, method): each metric before and after, and how many pairs it rests on."""
    out = []
    for b, a in zip(before["results"], after["results"]):
        out.append(
            {
                "dataset": b["dataset"],
                "method": b["method"],
                "pairs": b["n_items"],
                **{k: {"before": b.get(k), "after": a.get(k)} for k, _ in METRICS},
            }
        )
    return out


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)


def write_report(
    out: Path,
    model: str,
    compare: list[dict[str, Any]],
    build: dict[str, Any],
    grpo: dict[str, Any],
    seconds: dict[str, float],
) -> dict[str, Any]:
    """summary.json, before_after.png and training_curves.png; returns the summary with its `table`."""
    rows = [
        [c["dataset"], c["method"], c["pairs"], *(f"{_f(c[k]['before'])} -> {_f(c[k]['after'])}" for k, _ in METRICS)]
        for c in compare
    ]
    text = table(["dataset", "method", "pairs (x2 orders)", *(label for _, label in METRICS)], rows)
    total = round(sum(seconds.values()), 1)
    summary = {
        "model": model,
        "seconds": seconds,
        "total_seconds": total,
        "results": compare,
        "table": text,
        "build_data": {
            k: build.get(k) for k in ("items", "judgments", "invalid_judgments", "preference", "reflection", "mixed")
        },
        "grpo": {"steps": grpo["steps"], "first": grpo["first"], "last": grpo["last"]},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    pairs = ", ".join(sorted({f"{c['dataset']} {c['pairs']}" for c in compare}))
    plot_before_after(
        compare,
        out / "before_after.png",
        f"{model}: before vs after training, held-out pairs in both orders ({pairs} pairs)",
    )
    keys = {"warmstart": ["loss"], "grpo": ["reward_mean", "valid_rate", "accuracy", "loss"]}
    panels = []
    for stage, wanted in keys.items():
        path = out / stage / "metrics.jsonl"
        if path.is_file():
            steps = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            panels.append((f"{stage} ({len(steps)} steps)", steps, wanted))
    plot_curves(panels, out / "training_curves.png", f"{model}: training curves")
    return summary
