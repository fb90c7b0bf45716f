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

from reflectrm import comparison
from reflectrm.data.codec import pair_to_row
from reflectrm.data.formats import load_pairs
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.evaluation import CI_METHOD, balanced_sample
from reflectrm.records import PreferencePair
from reflectrm.report import plot_before_after, plot_curves, table

LLMBAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llmbar" / "natural.json"
METRICS = (
    ("accuracy", "both-order accuracy"),
    ("consistency", "consistency"),
    ("position_preference", "says Response 1"),
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
    drawn_for_training = [p for s, n in training_draws.items() for p in synthetic_pairs(int(n), seed=s)]
    seen = {k for p in drawn_for_training for k in (_key(p), _key(p.swapped()))}  # training shows both orders
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
    drawn, dropped = heldout_pairs(3 * pairs, seed, training_draws)
    sets = {"synthetic": balanced_sample([drawn], pairs, seed)}  # label-balanced, never the first rows
    if llmbar and LLMBAR.is_file():  # real pairs too, when the shared data is there
        sets["llmbar-natural"] = balanced_sample([load_pairs("llmbar", LLMBAR)[0]], llmbar, seed)
    files = {}
    for name, ps in sets.items():
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(pair_to_row(p)) + "\n" for p in ps))
        files[name] = (path, len(ps))
    return files, dropped


def before_after(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (dataset, method): each metric (and interval) before and after, how many pairs it rests on,
    and the paired comparison of after against before (reflectrm.comparison)."""
    paired = {(c["dataset"], c["method"]): c for c in comparison.compare(before["results"], after["results"])}
    out = []
    for b, a in zip(before["results"], after["results"]):
        out.append(
            {
                "dataset": b["dataset"],
                "method": b["method"],
                "pairs": b["n_items"],
                "label_shares": b["label_shares"],
                **{k: {"before": b.get(k), "after": a.get(k)} for k, _ in METRICS},
                **{
                    f"{k}_ci": {"before": b.get(f"{k}_ci"), "after": a.get(f"{k}_ci")}
                    for k in ("accuracy", "consistency")
                },
                "paired": {
                    k: v for k, v in paired[(b["dataset"], b["method"])].items() if k not in ("dataset", "method")
                },
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

    def ci(v: Any) -> str:
        return f"[{v[0]:.2f}, {v[1]:.2f}]" if v else ""

    rows = [
        [
            c["dataset"],
            c["method"],
            f"{c['pairs']} ({c['label_shares']['1']:.2f})",
            f"{_f(c['accuracy']['before'])} {ci(c['accuracy_ci']['before'])} -> "
            f"{_f(c['accuracy']['after'])} {ci(c['accuracy_ci']['after'])}",
            f"{c['paired']['difference']:+.2f} [{c['paired']['difference_ci'][0]:+.2f}, {c['paired']['difference_ci'][1]:+.2f}]",
            f"{_f(c['consistency']['before'])} -> {_f(c['consistency']['after'])}",
            f"{c['paired']['mcnemar_p']:.3f}",
            *(f"{_f(c[k]['before'])} -> {_f(c[k]['after'])}" for k, _ in METRICS[2:]),
        ]
        for c in compare
    ]
    heads = [
        "dataset",
        "method",
        "pairs x2 orders (label-1 share)",
        "both-order acc [95% Wilson]",
        "after - before [paired 95% CI]",
        "consistency",
        "McNemar p",
        *(label for _, label in METRICS[2:]),
    ]
    text = table(heads, rows) + f"\n\n{CI_METHOD}.\n{comparison.METHOD}."
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
