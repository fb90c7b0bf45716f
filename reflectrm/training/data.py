"""The items a training run reads, and the held-out items of its greedy check.

An item is a `TrainingItem` (reflectrm.data.items): the pair, the task, the label, the two critiques of a
reflection item and, for sft, the target judgment. They come from jobs.build_data's Parquet
(`format: mix`, for mix/pref/refl.parquet), from the synthetic set, or from any loader format
(preference items only).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from reflectrm.data.codec import pair_from_row
from reflectrm.data.items import Critique, ItemRowError, TrainingItem, read_items
from reflectrm.data.orders import TWIN, orient_items, orient_pairs
from reflectrm.data.sources import DataConfig, load_source
from reflectrm.methods import JudgeMethod, method_for
from reflectrm.prompts import render_judgment
from reflectrm.records import PreferencePair
from reflectrm.seeds import derive_seed


class TrainingDataError(ValueError):
    """The training data cannot be used as given; the message names the file and the fix."""


TRAINING_ORDERS = "both"  # the default of `data.orders` in training: every pair in both orders


def check_step_orders(recipe: str, data: DataConfig, prompts_per_worker: int) -> None:
    """Under orders=both a rollout step holds each pair in both orders: its prompts come in twos."""
    if recipe in ("grpo", "rft") and (data.orders or TRAINING_ORDERS) == "both" and prompts_per_worker % 2:
        raise TrainingDataError(
            f"trainer.prompts_per_worker={prompts_per_worker} with data.orders=both: a step holds each pair in both "
            "orders, so it must be even (or set data.orders=random)"
        )


def load_items(
    recipe: str, data: DataConfig, seed: int, method: JudgeMethod | None = None
) -> tuple[list[TrainingItem], list[TrainingItem], list[str]]:
    """(training items, held-out preference items, notes for the user). The training items are in
    `data.orders` (default both: an item's swapped twin follows it, and `interleave` keeps them together,
    so with an even batch they land in the same step). `method`: the judge format trained (ReflectRM's by
    default); one without a reflection task gets the synthetic SFT set's preference targets only, in its format."""
    method = method or method_for("reflectrm")
    if recipe == "critic_rm":
        return _critic_items(data), [], []
    notes: list[str] = []
    orders = data.orders or TRAINING_ORDERS
    if data.format == "mix":
        rows = _mix_items(Path(data.path), recipe)
    elif recipe == "sft" and data.format == "rm-r1":  # RM-R1's rows: the judge traces are the targets
        pairs, _ = load_source(dataclasses.replace(data, limit=None), seed)
        rows = [TrainingItem.preference(p).with_target(p.metadata["target"]) for p in pairs if "target" in p.metadata]
        if not rows:
            raise TrainingDataError(
                f"{data.path}: recipe=sft needs judge traces (an assistant message last in each row)"
            )
    elif recipe == "sft" and data.format != "synthetic":
        rows = _target_items(Path(data.path))
    else:
        pairs, _ = load_source(dataclasses.replace(data, limit=None), seed)  # data.limit counts training items
        rows = [TrainingItem.preference(p) for p in pairs]
        if recipe == "sft":  # synthetic: the set's own checkable target judgments, of BOTH tasks (4:1)
            pairs = orient_pairs(pairs, orders, seed)  # label-balanced targets: each pair's own, in its order
            per_pair = 2 if orders == "both" else 1  # twins share their task
            rows = [
                sft_target_item(p, seed, critique=method.reflection and k // per_pair % 5 == 4, method=method)
                for k, p in enumerate(pairs)
            ]
    if recipe == "rft":  # method.md §2.6: the preference items of the SAME mix (ratio 1:0 on the same items)
        rows = [r for r in rows if r.task == "response"]
        if data.format == "mix" and Path(data.path).name == "pref.parquet":
            notes.append(
                "recipe=rft on pref.parquet trains on every preference item, more than the unified run's "
                "mix.parquet holds: point data.path at mix.parquet for a fair baseline"
            )
    if not method.reflection and any(r.task == "critique" for r in rows):
        raise TrainingDataError(
            f"{data.path}: reflection items, which method={method.name} has no task for: train on preference "
            "items (pairs), or with method=reflectrm"
        )
    if recipe == "grpo" and method.reflection and not any(r.task == "critique" for r in rows):
        notes.append("no reflection items in the data: this run is RFT (preference items only)")
    pref = sorted(
        (r for r in rows if r.task == "response" and not r.id.endswith(TWIN)),
        key=lambda r: derive_seed(seed, "held-out", r.id),
    )
    held_ids = {r.id for r in pref[: data.held_out]}
    held = [r for r in pref if r.id in held_ids]
    train = [r for r in rows if r.id.removesuffix(TWIN) not in held_ids]  # a held-out pair's twin too
    if recipe != "sft" or data.format != "synthetic":  # the synthetic SFT set was oriented as pairs, above
        fixed = sum(r.target is not None for r in train)
        if orders != "given" and fixed:
            notes.append(f"data.orders={orders}: {fixed} items carry a fixed target text and keep their given order")
        train = orient_items(train, orders, seed)
    train = interleave(train, derive_seed(seed, "order"))
    if data.limit is not None:
        cut = data.limit
        if 0 < cut < len(train) and _unit(train[cut]) == _unit(train[cut - 1]):
            cut -= 1  # never cut between an item and its twin
        train = train[:cut]
    return train, held, notes


def checkable_mix(n_pairs: int, seed: int = 3) -> list[TrainingItem]:
    """A training mix made without a model, one preference row and one reflection row per synthetic pair
    (the reflection row pairs the set's checkable analysis with the right verdict against the same analysis
    with the wrong one): for tests and benchmarks of the training path."""
    from reflectrm.data.synthetic import synthetic_pairs, target_analysis

    items = []
    for p in synthetic_pairs(n_pairs, seed=seed):
        a, label = target_analysis(p), int(p.label)  # type: ignore[arg-type]
        items += [TrainingItem.preference(p), TrainingItem.reflection(p, Critique(a, label), Critique(a, 3 - label), 1)]
    return items


def _unit(item: TrainingItem) -> str:
    return item.id.removesuffix(TWIN)


def interleave(rows: list[TrainingItem], seed: int) -> list[TrainingItem]:
    """The rows in a seeded random order within each task, the tasks spread evenly: every prefix keeps
    the mix's ratio (4:1 gives one critique item in each run of five), so a short run, or any step of a
    long one, trains on both tasks as the mix says, rather than on what a plain shuffle happened to
    put first. An item and its swapped twin (orders=both) move as one unit, side by side."""
    rng = random.Random(seed)
    units: dict[str, list[TrainingItem]] = {}
    for r in rows:
        units.setdefault(_unit(r), []).append(r)
    groups = [[u for u in units.values() if u[0].task == task] for task in ("response", "critique")]
    for g in groups:
        rng.shuffle(g)
    groups = [g for g in groups if g]
    out: list[TrainingItem] = []
    taken = [0] * len(groups)
    while sum(taken) < len(units):  # the task furthest behind its share goes next (ties: the preference task)
        k = min(range(len(groups)), key=lambda i: ((taken[i] + 0.5) / len(groups[i]), i))
        out += groups[k][taken[k]]
        taken[k] += 1
    return out


def sft_target_item(
    pair: PreferencePair, seed: int, critique: bool = False, method: JudgeMethod | None = None
) -> TrainingItem:
    """A synthetic pair's SFT item: its checkable judgment, or (critique) a reflection item whose two
    critiques share that analysis, one with the verdict it supports and one with the other, in a seeded
    random order, and whose target names the consistent one. A warm start on both tasks makes GRPO's
    rollouts valid on both (method.md §2: the 4:1 mix). `method`: the preference target's format (ReflectRM's
    by default)."""
    from reflectrm.data.synthetic import target_analysis

    analysis, label = target_analysis(pair), int(pair.label)  # type: ignore[arg-type]
    if not critique:
        return TrainingItem.preference(pair).with_target((method or method_for("reflectrm")).render(analysis, label))
    base = pair.id.removesuffix(TWIN)  # a swapped twin shows its critiques in the other order too
    good = 1 if random.Random(derive_seed(seed, base, "critique-order")).random() < 0.5 else 2
    good = 3 - good if base != pair.id else good
    right, wrong = Critique(analysis, label), Critique(analysis, 3 - label)
    c1, c2 = (right, wrong) if good == 1 else (wrong, right)
    why = (
        f"Both critiques find the same facts, which show that Response {label} follows the instruction. "
        f"Critique {good} concludes that, Critique {3 - good} concludes the opposite of its own analysis."
    )
    return TrainingItem.reflection(pair, c1, c2, good).with_target(render_judgment(why, good, "critique"))


def _mix_items(path: Path, recipe: str) -> list[TrainingItem]:
    if not path.exists():
        raise TrainingDataError(
            f"data.path={path}: no such file (build one with `python -m jobs.build_data`, or set data.format=synthetic)"
        )
    try:
        items = read_items(path)
    except (ItemRowError, KeyError, TypeError) as err:
        raise TrainingDataError(f"{path}: {err}") from None
    if not items:
        raise TrainingDataError(
            f"{path} is empty: build_data kept no items (see stats.json beside it: every pair easy, or too long). "
            "Build from more pairs (data.limit), or sample more judgments per pair (judge.n)"
        )
    if recipe == "sft" and items[0].target is None:
        raise TrainingDataError(f"{path}: recipe=sft needs a `target` column (the judgment to learn)")
    return items


def _critic_items(data: DataConfig) -> list[TrainingItem]:
    """Critic-RM's items (the critiques its generate-and-filter kept), as written: a critic item is pointwise,
    each critique prompt shows one response, so the order of a pair does not matter and is not changed."""
    if data.format != "mix":
        raise TrainingDataError(
            f"recipe=critic_rm reads critic items (data.format=mix, a Parquet of TrainingItem.critic rows), got "
            f"data.format={data.format}"
        )
    rows = _mix_items(Path(data.path), "critic_rm")
    if other := sorted({r.task for r in rows} - {"critic"}):
        raise TrainingDataError(f"{data.path}: recipe=critic_rm needs critic items only, found {other} items")
    return rows[: data.limit] if data.limit is not None else rows


def _target_items(path: Path) -> list[TrainingItem]:
    import pandas as pd

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=path.suffix == ".jsonl")
    if "target" not in frame.columns:
        raise TrainingDataError(
            f"{path}: recipe=sft needs a `target` column (the judgment to learn) next to the pair's fields"
        )
    out = []
    for rec in frame.to_dict("records"):
        pair = pair_from_row(rec["pair"] if isinstance(rec.get("pair"), dict) else rec)
        out.append(TrainingItem.preference(pair).with_target(rec["target"]))
    return out
