"""From judge scores to RL rewards: one place for the arithmetic the service and the integrations share.

A judge's `score` is the share of final votes for response 1 (method.md §4), so judging
(response, reference) gives P(response better than the reference).
"""

from __future__ import annotations

from dataclasses import dataclass

NEUTRAL_SCORE = 0.5  # no verdict, no reference, or a sample that cannot be read: neither better nor worse


def reward_from_score(score: float) -> float:
    """The RL reward of a judgment of (response, reference): 2 * P(response better) - 1, in [-1, 1]."""
    return 2.0 * float(score) - 1.0


def both_orders_score(given: float, swapped: float) -> float:
    """P(response better) from both orders: `given` judged (response, reference), `swapped` judged
    (reference, response), where its score is the share of votes for the reference. Averaging the
    two removes the judge's position bias, at twice the cost."""
    return (float(given) + 1.0 - float(swapped)) / 2.0


@dataclass(frozen=True)
class RewardConfig:
    """The verifiable reward of one training rollout (method.md §3): its verdict against the gold label."""

    correct: float = 1.0
    wrong: float = -1.0
    invalid: float = -1.0
    format_bonus: float = 0.0  # added to every valid output (a sibling paper uses 0.1)


@dataclass(frozen=True)
class Graded:
    """One rollout graded: its reward, whether the strict parser read it, whether its verdict is right."""

    reward: float
    valid: bool
    correct: bool
