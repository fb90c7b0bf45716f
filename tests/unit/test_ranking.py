"""Group-wise rewards with no reference (reflectrm.ranking): the tournament, the scores, the collector."""

from __future__ import annotations

import asyncio

import pytest

from reflectrm.ranking import GroupCollector, comparisons, group_scores


def test_circular_judges_each_response_against_the_next_in_both_orders():
    pairs = comparisons(4, "circular")
    assert len(pairs) == 8 and len(set(pairs)) == 8
    assert {frozenset(p) for p in pairs} == {frozenset(p) for p in [(0, 1), (1, 2), (2, 3), (3, 0)]}
    assert all((j, i) in pairs for i, j in pairs)  # both orders: position bias cancels
    assert comparisons(2, "circular") == [(0, 1), (1, 0)]  # not the same pair twice over
    assert comparisons(1, "circular") == [] and comparisons(0, "all_pairs") == []


def test_all_pairs_judges_every_ordered_pair():
    pairs = comparisons(5, "all_pairs")
    assert len(pairs) == 20 and set(pairs) == {(i, j) for i in range(5) for j in range(5) if i != j}
    with pytest.raises(ValueError, match="scheme"):
        comparisons(3, "round_robin")


def strict_order(pairs):
    """Outcomes where a lower index always wins (0 best)."""
    return [(i, j, 1.0 if i < j else 0.0) for i, j in pairs]


@pytest.mark.parametrize("method", ["win_rate", "bradley_terry"])
@pytest.mark.parametrize("scheme", ["circular", "all_pairs"])
def test_scores_follow_the_wins(method, scheme):
    g = 4
    scores = group_scores(g, strict_order(comparisons(g, scheme)), method)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] == max(scores) and scores[0] > 0.5
    if scheme == "all_pairs":  # every pair compared: a strict order gives strictly falling scores
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == g


def test_a_position_biased_judge_scores_everyone_the_same():
    """A judge that always prefers position 1: with both orders judged, nobody gains."""
    for method in ("win_rate", "bradley_terry"):
        scores = group_scores(3, [(i, j, 1.0) for i, j in comparisons(3, "all_pairs")], method)
        assert scores == pytest.approx([0.5, 0.5, 0.5])


def test_bradley_terry_stays_finite_for_an_unbeaten_response_and_unplayed_get_half():
    scores = group_scores(3, [(0, 1, 1.0), (1, 0, 0.0)], "bradley_terry")
    assert 0.5 < scores[0] < 1.0 and 0.0 < scores[1] < 0.5 and scores[2] == 0.5
    assert group_scores(3, [(0, 1, 1.0), (1, 0, 0.0)], "win_rate") == [1.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="method"):
        group_scores(2, [], "elo")


def test_collector_gathers_one_response_per_call_into_its_prompts_group():
    ranked = []

    async def rank(context, responses):
        ranked.append((context, list(responses)))
        return [float(len(r)) for r in responses]

    async def go():
        c = GroupCollector(rank, size=3, wait_s=0.2)
        full = await asyncio.gather(*(c.score("q1", "ctx1", r) for r in ("a", "bb", "ccc")))  # closed when full
        partial = await asyncio.gather(*(c.score("q2", "ctx2", r) for r in ("x", "yy")))  # closed by its wait
        alone = await c.score("q3", "ctx3", "only")  # nothing to compare with
        return full, partial, alone

    c_full, c_partial, alone = asyncio.run(go())
    assert c_full == [1.0, 2.0, 3.0] and c_partial == [1.0, 2.0] and alone is None
    assert ranked == [("ctx1", ["a", "bb", "ccc"]), ("ctx2", ["x", "yy"])]


def test_collector_hands_a_failed_ranking_to_every_caller_of_the_group():
    async def rank(context, responses):
        raise RuntimeError("engine died")

    async def go():
        c = GroupCollector(rank, size=2, wait_s=5.0)
        return await asyncio.gather(c.score("k", "ctx", "a"), c.score("k", "ctx", "b"), return_exceptions=True)

    out = asyncio.run(go())
    assert all(isinstance(e, RuntimeError) for e in out)
    with pytest.raises(ValueError, match="size"):
        GroupCollector(rank, size=1, wait_s=1.0)
