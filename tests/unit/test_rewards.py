"""From judge scores to RL rewards (reflectrm.rewards): the both-orders score against hand-computed values,
and on a judge with a position bias, scripted with the fake engine."""

from __future__ import annotations

import pytest

from reflectrm.config import JudgeConfig
from reflectrm.engines.fake import FakeEngine
from reflectrm.inference import Judge
from reflectrm.records import Message, PreferencePair
from reflectrm.rewards import NEUTRAL_SCORE, both_orders_score, reward_from_score
from tests.helpers import judgment


@pytest.mark.parametrize(
    "given, swapped, expected",
    [
        (1.0, 0.0, 1.0),  # better in both orders
        (0.0, 1.0, 0.0),  # worse in both orders
        (1.0, 1.0, 0.5),  # "the first is better" whatever is first: pure position bias, no information
        (0.0, 0.0, 0.5),  # the same bias towards the second position
        (0.75, 0.25, 0.75),  # consistent 3 votes of 4
        (0.75, 0.5, 0.625),
        (0.5, 0.5, 0.5),
    ],
)
def test_both_orders_score_against_hand_computed_values(given, swapped, expected):
    assert both_orders_score(given, swapped) == pytest.approx(expected)


def test_the_reward_spans_minus_one_to_one_and_neutral_is_zero():
    assert [reward_from_score(s) for s in (0.0, NEUTRAL_SCORE, 1.0)] == [-1.0, 0.0, 1.0]
    assert reward_from_score(both_orders_score(0.75, 0.25)) == pytest.approx(0.5)


def test_both_orders_remove_a_judges_position_bias():
    """A judge that says "Response 1" in 3 of 4 samples whatever is shown first: in the given order alone the
    response scores 0.75 against any reference; both orders give 0.5, what it knows (nothing)."""
    engine = FakeEngine(lambda request, k: judgment(1 if k < 3 else 2))
    pair = PreferencePair("p", (Message("user", "Name a colour."),), "blue", "red")
    judge = Judge(engine, JudgeConfig(n=4, mode="majority"))
    given, swapped = judge.judge([pair, pair.swapped()], "majority")
    assert given.score == swapped.score == 0.75  # the bias, in each order alone
    assert both_orders_score(given.score, swapped.score) == pytest.approx(0.5)
