"""Evaluation metrics (method.md §5). Predictions are 1, 2 or None (no valid verdict = wrong).

Positional consistency (the paper's definition): an item counts only if it is judged correctly in
BOTH orders, i.e. as given and with the responses swapped.
"""

from __future__ import annotations

from typing import Mapping, Sequence

Pred = int | None


def _check(*seqs: Sequence) -> int:
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise ValueError(f"metric inputs differ in length: {sorted(lengths)}")
    return lengths.pop()


def accuracy(preds: Sequence[Pred], labels: Sequence[int]) -> float:
    n = _check(preds, labels)
    return sum(p == y for p, y in zip(preds, labels)) / n if n else 0.0


def consistency(preds: Sequence[Pred], preds_swapped: Sequence[Pred], labels: Sequence[int]) -> float:
    """Share of items correct as given AND correct with the responses swapped (gold flips too)."""
    n = _check(preds, preds_swapped, labels)
    return sum(p == y and q == 3 - y for p, q, y in zip(preds, preds_swapped, labels)) / n if n else 0.0


def flip_rate(preds: Sequence[Pred], preds_swapped: Sequence[Pred]) -> float | None:
    """Share of items, among those with a verdict in both orders, whose preferred RESPONSE changes
    when the order changes (a position-driven judge flips on every item). None: no such item."""
    _check(preds, preds_swapped)
    both = [(p, q) for p, q in zip(preds, preds_swapped) if p is not None and q is not None]
    return sum(q != 3 - p for p, q in both) / len(both) if both else None


def invalid_rate(*pred_lists: Sequence[Pred]) -> float:
    preds = [p for preds in pred_lists for p in preds]
    return sum(p is None for p in preds) / len(preds) if preds else 0.0


def section_weighted(
    per_subset: Mapping[str, tuple[float, int]], sections: Mapping[str, Sequence[str]] | None = None
) -> float | None:
    """RewardBench-v1-style weighting: a section's score is the mean of its subsets' scores weighted
    by their item counts; the result is the plain mean over the sections that have items.

    `per_subset`: subset -> (score, items). `sections`: section -> subsets; "*" stands for every
    subset no other section names. Default: every subset is its own section (a macro average).
    A subset that no section covers is an error (it would silently not count).
    """
    if not per_subset:
        return None
    if not sections:
        sections = {s: [s] for s in per_subset}
    named = {s for subs in sections.values() for s in subs if s != "*"}
    rest = [s for s in per_subset if s not in named]
    if rest and not any("*" in subs for subs in sections.values()):
        raise ValueError(f"subsets {sorted(rest)} are in no section: add them to one, or add '*' to a section")
    scores = []
    for subs in sections.values():
        members = [s for s in subs if s != "*" and s in per_subset] + (rest if "*" in subs else [])
        count = sum(per_subset[s][1] for s in members)
        if count:
            scores.append(sum(per_subset[s][0] * per_subset[s][1] for s in members) / count)
    return sum(scores) / len(scores) if scores else None


def bootstrap_ci(
    values: Sequence[float], reps: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """A percentile bootstrap interval of the mean of per-pair values (1/0 for accuracy or consistency):
    `reps` resamples of the pairs with replacement, seeded. None when there are no values."""
    import random

    n = len(values)
    if not n:
        return None
    rng = random.Random(seed)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    lo = means[int((1 - level) / 2 * reps)]
    hi = means[min(reps - 1, int((1 + level) / 2 * reps))]
    return lo, hi
