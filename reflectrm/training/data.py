"""The rows a training run reads, and the held-out rows of its greedy check.

A row: id, task (response | critique), label, pair (the canonical pair as JSON), critique_1/2
(JSON or None), and for sft the target judgment. They come from jobs.build_data's Parquet
(`format: mix`, for mix/pref/refl.parquet), from the synthetic set, or from any loader format
(preference items only).
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

from reflectrm.data.loaders import pair_from_row, pair_to_row
from reflectrm.data.reflection import load_source, preference_row
from reflectrm.inference import derive_seed
from reflectrm.records import PreferencePair
from reflectrm.prompts import render_judgment

KEEP = ("id", "task", "label", "pair", "critique_1", "critique_2", "target")


class TrainingDataError(ValueError):
    """The training data cannot be used as given; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class TrainDataConfig:
    format: str = (
        "mix"  # mix: jobs.build_data's parquet (mix/pref/refl); synthetic; or a loader format (preference items)
    )
    path: str = "runs/build_data/mix.parquet"  # for synthetic: the number of pairs
    limit: int | None = None  # at most this many training rows
    held_out: int = 16  # preference rows kept apart for the greedy check (never trained on)


def load_rows(
    recipe: str, data: TrainDataConfig, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(training rows, held-out preference rows, notes for the user)."""
    notes: list[str] = []
    if data.format == "mix":
        rows = _mix_rows(Path(data.path), recipe)
    elif recipe == "sft" and data.format != "synthetic":
        rows = _target_rows(Path(data.path))
    else:
        pairs, _ = load_source(data.format, data.path, None, "error", seed)
        rows = [preference_row(pair_to_row(p)) for p in pairs]
        if recipe == "sft":  # synthetic: the set's own checkable target judgments, of BOTH tasks (4:1)
            rows = [sft_target_row(p, seed, critique=k % 5 == 4) for k, p in enumerate(pairs)]
    if recipe == "rft":  # method.md §2.6: the preference items of the SAME mix (ratio 1:0 on the same items)
        rows = [r for r in rows if r["task"] == "response"]
        if data.format == "mix" and Path(data.path).name == "pref.parquet":
            notes.append(
                "recipe=rft on pref.parquet trains on every preference item, more than the unified run's "
                "mix.parquet holds: point data.path at mix.parquet for a fair baseline"
            )
    if recipe == "grpo" and not any(r["task"] == "critique" for r in rows):
        notes.append("no reflection items in the data: this run is RFT (preference items only)")
    pref = sorted((r for r in rows if r["task"] == "response"), key=lambda r: derive_seed(seed, "held-out", r["id"]))
    held_ids = {r["id"] for r in pref[: data.held_out]}
    held = [r for r in pref if r["id"] in held_ids]
    train = [r for r in rows if r["id"] not in held_ids]
    train = interleave(train, derive_seed(seed, "order"))
    if data.limit is not None:
        train = train[: data.limit]
    return [_clean(r) for r in train], [_clean(r) for r in held], notes


def checkable_mix(n_pairs: int, seed: int = 3) -> list[dict[str, Any]]:
    """A training mix made without a model, one preference row and one reflection row per synthetic pair
    (the reflection row pairs the set's checkable analysis with the right verdict against the same analysis
    with the wrong one): for tests and benchmarks of the training path."""
    from reflectrm.data.synthetic import synthetic_pairs, target_analysis

    rows = []
    for p in synthetic_pairs(n_pairs, seed=seed):
        pr = pair_to_row(p)
        rows.append(preference_row(pr))
        a = target_analysis(p)
        rows.append(
            {
                "id": f"refl:{p.id}",
                "task": "critique",
                "label": 1,
                "pair": json.dumps(pr),
                "critique_1": json.dumps({"analysis": a, "verdict": p.label}),
                "critique_2": json.dumps({"analysis": a, "verdict": 3 - p.label}),
            }
        )
    return rows


def interleave(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The rows in a seeded random order within each task, the tasks spread evenly: every prefix keeps
    the mix's ratio (4:1 gives one critique item in each run of five), so a short run, or any step of a
    long one, trains on both tasks as the mix says, rather than on what a plain shuffle happened to
    put first."""
    rng = random.Random(seed)
    groups = [[r for r in rows if r["task"] == task] for task in ("response", "critique")]
    for g in groups:
        rng.shuffle(g)
    groups = [g for g in groups if g]
    out: list[dict[str, Any]] = []
    taken = [0] * len(groups)
    while len(out) < len(rows):  # the task furthest behind its share goes next (ties: the preference task)
        k = min(range(len(groups)), key=lambda i: ((taken[i] + 0.5) / len(groups[i]), i))
        out.append(groups[k][taken[k]])
        taken[k] += 1
    return out


def sft_target_row(pair: PreferencePair, seed: int, critique: bool = False) -> dict[str, Any]:
    """A synthetic pair's SFT row: its checkable judgment, or (critique) a reflection item whose two
    critiques share that analysis, one with the verdict it supports and one with the other, in a seeded
    random order, and whose target names the consistent one. A warm start on both tasks makes GRPO's
    rollouts valid on both (method.md §2: the 4:1 mix)."""
    from reflectrm.data.synthetic import target_analysis

    analysis, label = target_analysis(pair), int(pair.label)  # type: ignore[arg-type]
    row = preference_row(pair_to_row(pair))
    if not critique:
        return {**row, "target": render_judgment(analysis, label)}
    good = 1 if random.Random(derive_seed(seed, pair.id, "critique-order")).random() < 0.5 else 2
    right, wrong = {"analysis": analysis, "verdict": label}, {"analysis": analysis, "verdict": 3 - label}
    c1, c2 = (right, wrong) if good == 1 else (wrong, right)
    why = (
        f"Both critiques find the same facts, which show that Response {label} follows the instruction. "
        f"Critique {good} concludes that, Critique {3 - good} concludes the opposite of its own analysis."
    )
    return {
        **row,
        "id": f"refl:{pair.id}",
        "task": "critique",
        "label": good,
        "critique_1": json.dumps(c1),
        "critique_2": json.dumps(c2),
        "target": render_judgment(why, good, "critique"),
    }


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (int(row[k]) if k == "label" else row[k]) for k in KEEP if k in row}


def _mix_rows(path: Path, recipe: str) -> list[dict[str, Any]]:
    if not path.exists():
        raise TrainingDataError(
            f"data.path={path}: no such file (build one with `python -m jobs.build_data`, or set data.format=synthetic)"
        )
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    if not rows:
        raise TrainingDataError(
            f"{path} is empty: build_data kept no items (see stats.json beside it: every pair easy, or too long). "
            "Build from more pairs (data.limit), or sample more judgments per pair (judge.n)"
        )
    missing = {"id", "task", "label", "pair"} - set(rows[0] if rows else {})
    if missing:
        raise TrainingDataError(
            f"{path}: not a training mix (missing columns {sorted(missing)}); jobs.build_data writes mix.parquet"
        )
    if recipe == "sft" and "target" not in rows[0]:
        raise TrainingDataError(f"{path}: recipe=sft needs a `target` column (the judgment to learn)")
    return rows


def _target_rows(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=path.suffix == ".jsonl")
    if "target" not in frame.columns:
        raise TrainingDataError(
            f"{path}: recipe=sft needs a `target` column (the judgment to learn) next to the pair's fields"
        )
    rows = []
    for rec in frame.to_dict("records"):
        pair = pair_from_row(json.loads(rec["pair"]) if "pair" in rec else rec)
        rows.append({**preference_row(pair_to_row(pair)), "target": rec["target"]})
    return rows
