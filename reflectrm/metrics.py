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


Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion: never a point, also at 0/n and n/n
    (0/32 -> [0, 0.107]). `successes` may be fractional (a both-order score summed over pairs).
    None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # rounding never leaves p outside


def pair_scores(preds: Sequence[Pred], preds_swapped: Sequence[Pred], labels: Sequence[int]) -> list[float]:
    """Each pair's both-order score: the share of its two judgments (as given, swapped) that are right:
    0, 0.5 or 1. A judge that always names one position scores 0.5 on every pair."""
    _check(preds, preds_swapped, labels)
    return [((p == y) + (q == 3 - y)) / 2 for p, q, y in zip(preds, preds_swapped, labels)]


def position_preference(*pred_lists: Sequence[Pred]) -> float | None:
    """The share of valid verdicts that name "Response 1" (0.5 = no position preference; a judge that
    always answers "Response 1" has 1.0). None: no valid verdict."""
    valid = [p for preds in pred_lists for p in preds if p is not None]
    return sum(p == 1 for p in valid) / len(valid) if valid else None


def label_shares(labels: Sequence[int]) -> dict[str, float]:
    """{"1": share of pairs whose gold is Response 1, "2": ...}: the score of a position-constant judge in one order."""
    n = len(labels)
    return {str(y): (sum(lab == y for lab in labels) / n if n else 0.0) for y in (1, 2)}


def mcnemar_exact(b: int, c: int) -> float:
    """The exact two-sided McNemar p-value for b and c discordant pairs: 2 * P(X <= min(b, c)) for
    X ~ Binomial(b + c, 1/2), capped at 1 (1.0 when there is no discordant pair)."""
    from math import comb

    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference(
    a: Sequence[float], b: Sequence[float], reps: int = 4000, level: float = 0.95, seed: int = 0
) -> dict[str, float | tuple[float, float] | None]:
    """Mean of a - b over the same pairs, with a paired percentile-bootstrap interval: the pairs are
    resampled (seeded) and both scores of a pair move together, so what the two share cancels."""
    import random

    n = _check(a, b)
    if not n:
        return {"difference": None, "ci": None}
    diffs = [x - y for x, y in zip(a, b)]
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    lo = means[int((1 - level) / 2 * reps)]
    hi = means[min(reps - 1, int((1 + level) / 2 * reps))]
    return {"difference": sum(diffs) / n, "ci": (lo, hi)}
