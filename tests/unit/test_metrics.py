"""Metrics against hand-computed cases."""

from __future__ import annotations

import pytest

from reflectrm.metrics import accuracy, consistency, flip_rate, invalid_rate

LABELS = [1, 2, 1, 2, 1]
GIVEN = [1, 2, 2, None, 1]  # right, right, wrong, invalid, right
SWAPPED = [2, 2, 1, 1, 1]  # gold swapped is [2, 1, 2, 1, 2]: right, wrong, wrong, right, wrong


def test_accuracy_counts_invalid_as_wrong():
    assert accuracy(GIVEN, LABELS) == pytest.approx(3 / 5)
    assert accuracy([], []) == 0.0


def test_consistency_needs_both_orders_right():
    assert consistency(GIVEN, SWAPPED, LABELS) == pytest.approx(1 / 5)  # only item 0


def test_flip_rate_among_items_with_two_verdicts():
    # item 0: prefers r1 then r1 (swapped 2 = original r1) -> no flip; item 1: r2 then r2 as 2 -> position
    # choice "2" both times = different responses -> flip; item 2: 2 then 1 -> same response -> no flip;
    # item 3 skipped (None); item 4: 1 then 1 -> flip.
    assert flip_rate(GIVEN, SWAPPED) == pytest.approx(2 / 4)
    assert flip_rate([None, 1], [2, None]) is None  # no item with a verdict in both orders: not measured


def test_invalid_rate_over_all_lists():
    assert invalid_rate(GIVEN, SWAPPED) == pytest.approx(1 / 10)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([1], [1, 2])
