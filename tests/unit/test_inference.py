"""The two-stage method on the scripted engine: every branch of method.md §4."""

from __future__ import annotations

import asyncio
import math

import pytest

from reflectrm.config import JudgeConfig
from reflectrm.engines.fake import FakeEngine, completion
from reflectrm.inference import Judge, Steps, ajudge, confidence, decide, majority_vote, select_anchor
from reflectrm.records import Judgment, Message, PreferencePair, Reflection
from tests.helpers import PAIR, critique, is_stage2, judgment, shown_candidate_position


def J(verdict, conf=-1.0):
    return Judgment("t", "a" if verdict else None, verdict, conf, 3, "stop", None if verdict else "bad")


def R(index, better):
    return Reflection(index, 1, better, True, "", 1)


# --------------------------------------------------------------------------- pure pieces


def test_confidence_is_mean_of_lowest_ten_percent():
    lps = [-0.1] * 18 + [-2.0, -3.0]  # 20 tokens -> the lowest 2
    assert confidence(lps) == pytest.approx(-2.5)
    assert confidence([-0.5, -4.0, -1.0]) == pytest.approx(-4.0)  # at least one token
    assert confidence([-1.0, -2.0, -3.0, -4.0], fraction=0.5) == pytest.approx(-3.5)
    assert confidence([]) == -math.inf


def test_anchor_is_most_confident_valid_judgment():
    js = [J(1, -2.0), J(None, -0.1), J(2, -0.5), J(1, -0.5)]
    assert select_anchor(js) == 2  # the invalid one is more confident but takes no part; tie -> first
    assert select_anchor([J(None), J(None)]) is None


def test_majority_vote_and_its_tie_break():
    assert majority_vote([J(1), J(2), J(2), J(None)]) == (2, pytest.approx(1 / 3))
    assert majority_vote([J(1, -3.0), J(2, -0.2)]) == (2, 0.5)  # tie -> the most confident verdict
    assert majority_vote([J(None), J(None)]) == (None, 0.5)


def test_decide_empty_winner_group_falls_back_to_anchor():
    js = [J(1), J(2), J(2)]
    assert decide(js, 0, [R(1, False), R(2, False)]) == (1, 1.0)


def test_decide_tied_winner_group_adds_anchor():
    js = [J(2), J(1), J(2), J(1)]
    assert decide(js, 0, [R(1, True), R(2, True), R(3, False)]) == (2, pytest.approx(1 / 3))


def test_decide_winner_group_majority_overrides_anchor():
    js = [J(1), J(2), J(2), J(1)]
    verdict, score = decide(js, 0, [R(1, True), R(2, True), R(3, False)])
    assert (verdict, score) == (2, 0.0)


# --------------------------------------------------------------------------- the driver, scripted


def scripted(stage1_verdicts, confidences, better_than_anchor, invalid_stage2=()):
    """Stage 1 sample k: verdict stage1_verdicts[k] (None: broken output), confidence confidences[k].
    Stage 2 for judgment k: picks the candidate iff better_than_anchor[k]; k in invalid_stage2 -> garbage."""

    def script(request, k):
        if not is_stage2(request):
            v = stage1_verdicts[k]
            if v is None:
                return completion("I think response one", [confidences[k]] * 4)
            return judgment(v, f"analysis-{k}", [confidences[k]] * 10)
        idx = next(
            i
            for i in range(len(stage1_verdicts))
            if f"analysis-{i}\nVerdict" in request.messages[-1].content and i != anchor_of(confidences, stage1_verdicts)
        )
        if idx in invalid_stage2:
            return completion("Critique 1 is better")
        pos = shown_candidate_position(request, f"analysis-{idx}\nVerdict")
        return critique(pos if better_than_anchor[idx] else 3 - pos)

    return FakeEngine(script)


def anchor_of(confs, verdicts):
    valid = [i for i, v in enumerate(verdicts) if v is not None]
    return max(valid, key=lambda i: (confs[i], -i))


def test_reflect_winner_group_vote():
    verdicts = [1, 2, 2, 1, 2]
    confs = [-0.1, -1.0, -1.0, -1.0, -1.0]  # anchor: judgment 0 (verdict 1)
    better = {1: True, 2: True, 3: False, 4: False}
    engine = scripted(verdicts, confs, better)
    r = Judge(engine, JudgeConfig(n=5, stage2="full")).judge_one(PAIR, "reflect")
    assert r.anchor == 0
    assert sorted(x.index for x in r.reflections) == [1, 2, 3, 4]
    assert {x.index: x.better_than_anchor for x in r.reflections} == better
    assert r.preferred == 2 and r.score == 0.0  # W = {1, 2}, both verdict 2
    assert r.majority == 2  # 3 of 5 for response 2
    assert not r.stage2_skipped
    assert len(engine.calls) == 2


def test_reflect_empty_winner_group_keeps_anchor():
    verdicts = [2, 1, 1, 1]
    engine = scripted(verdicts, [-0.1, -1, -1, -1], {1: False, 2: False, 3: False})
    r = Judge(engine, JudgeConfig(n=4)).judge_one(PAIR, "reflect")
    assert (r.preferred, r.score, r.majority) == (2, 0.0, 1)


def test_reflect_tied_winner_group_adds_anchor():
    verdicts = [1, 2, 1, 2]
    engine = scripted(verdicts, [-0.1, -1, -1, -1], {1: True, 2: True, 3: False})
    r = Judge(engine, JudgeConfig(n=4)).judge_one(PAIR, "reflect")
    assert (r.preferred, r.score) == (1, pytest.approx(2 / 3))


def test_invalid_stage2_answer_counts_as_not_better():
    verdicts = [1, 2, 2]
    engine = scripted(verdicts, [-0.1, -1, -1], {1: True, 2: True}, invalid_stage2={1, 2})
    r = Judge(engine, JudgeConfig(n=3)).judge_one(PAIR, "reflect")
    assert all(not x.valid and not x.better_than_anchor for x in r.reflections)
    assert r.preferred == 1  # W empty -> the anchor


def test_all_invalid_stage1_gives_no_verdict_and_no_stage2():
    engine = scripted([None, None, None], [-1, -1, -1], {})
    r = Judge(engine, JudgeConfig(n=3)).judge_one(PAIR, "reflect")
    assert r.preferred is None and r.score == 0.5 and r.anchor is None
    assert r.stage2_skipped and len(engine.calls) == 1
    assert r.valid_rate == 0.0


def test_invalid_judgments_take_no_part_in_stage2():
    verdicts = [1, None, 2, None, 2]
    engine = scripted(verdicts, [-0.1, 0.0, -1, 0.0, -1], {2: False, 4: False})
    r = Judge(engine, JudgeConfig(n=5)).judge_one(PAIR, "reflect")
    assert r.anchor == 0 and sorted(x.index for x in r.reflections) == [2, 4]


def test_unanimity_shortcut_skips_stage2_exactly():
    verdicts = [2, 2, None, 2]
    engine = scripted(verdicts, [-1, -0.5, -1, -1], {0: False, 3: False})
    r = Judge(engine, JudgeConfig(n=4)).judge_one(PAIR, "reflect")
    assert r.stage2_skipped and r.preferred == 2 and r.reflections == () and len(engine.calls) == 1
    engine = scripted(verdicts, [-1, -0.5, -1, -1], {0: False, 3: False})
    r2 = Judge(engine, JudgeConfig(n=4, skip_unanimous=False, stage2="full")).judge_one(PAIR, "reflect")
    assert not r2.stage2_skipped and len(r2.reflections) == 2 and r2.preferred == r.preferred
    engine = scripted(verdicts, [-1, -0.5, -1, -1], {0: False, 3: False})
    r3 = Judge(engine, JudgeConfig(n=4, skip_unanimous=False)).judge_one(
        PAIR, "reflect"
    )  # lazy: no other verdict to ask
    assert r3.reflections == () and r3.not_asked == (0, 3) and (r3.preferred, r3.score) == (r2.preferred, r2.score)


def test_critique_order_is_random_but_reproducible():
    verdicts = [1] + [2] * 7
    positions = {}
    for seed in range(6):
        engine = scripted(verdicts, [0.0] + [-1] * 7, {i: False for i in range(8)})
        r = Judge(engine, JudgeConfig(n=8, seed=seed, stage2="full")).judge_one(PAIR, "reflect")
        positions[seed] = tuple(x.candidate_position for x in r.reflections)
        for x, req in zip(r.reflections, engine.calls[1]):  # the recorded position is where it was shown
            assert shown_candidate_position(req, f"analysis-{x.index}\nVerdict") == x.candidate_position
    shown = {p for ps in positions.values() for p in ps}
    assert shown == {1, 2}  # both positions occur
    assert len(set(positions.values())) > 1  # and the order depends on the seed
    engine = scripted(verdicts, [0.0] + [-1] * 7, {i: False for i in range(8)})
    again = Judge(engine, JudgeConfig(n=8, seed=3, stage2="full")).judge_one(PAIR, "reflect")
    assert tuple(x.candidate_position for x in again.reflections) == positions[3]


def test_batch_makes_one_engine_call_per_stage_and_keeps_order():
    pairs = [PreferencePair(f"p{i}", (Message("user", f"q{i}"),), "a", "b", 1) for i in range(3)]
    engine = scripted([1, 2, 2], [-0.1, -1, -1], {1: True, 2: False})
    results = Judge(engine, JudgeConfig(n=3)).judge(pairs, "reflect")
    assert len(engine.calls) == 2 and len(engine.calls[0]) == 3 and len(engine.calls[1]) == 6
    assert [r.pair_id for r in results] == ["p0", "p1", "p2"]
    assert all(r.preferred == 2 for r in results)  # W = {1} with verdict 2


def test_greedy_and_majority_requests():
    engine = FakeEngine(lambda req, k: judgment(1 if k % 3 else 2))
    judge = Judge(engine, JudgeConfig(n=6, temperature=0.7))
    g = judge.judge_one(PAIR, "greedy")
    assert engine.calls[-1][0].params.n == 1 and engine.calls[-1][0].params.temperature == 0.0
    assert g.preferred == 2 and g.score == 0.0 and len(g.judgments) == 1
    m = judge.judge_one(PAIR, "majority")
    assert engine.calls[-1][0].params.n == 6 and engine.calls[-1][0].params.temperature == 0.7
    assert m.preferred == 1 and m.score == pytest.approx(4 / 6) and m.anchor is None


def test_seeds_are_per_pair_and_reproducible():
    steps = Steps(JudgeConfig(seed=1))
    other = PreferencePair("p2", PAIR.context, "x", "y", 2)
    assert steps.begin(PAIR, "reflect").params.seed == steps.begin(PAIR, "reflect").params.seed
    assert steps.begin(PAIR, "reflect").params.seed != steps.begin(other, "reflect").params.seed
    assert Steps(JudgeConfig(seed=2)).begin(PAIR, "reflect").params.seed != steps.begin(PAIR, "reflect").params.seed
    with pytest.raises(ValueError, match="valid modes"):
        steps.begin(PAIR, "vote")  # type: ignore[arg-type]


def test_async_driver_matches_batch_driver():
    verdicts = [1, 2, 2, 1, 2]
    confs = [-0.1, -1.0, -1.0, -1.0, -1.0]
    better = {1: True, 2: False, 3: True, 4: True}
    sync = Judge(scripted(verdicts, confs, better), JudgeConfig(n=5)).judge_one(PAIR, "reflect")
    engine = scripted(verdicts, confs, better)

    async def stage(requests):
        return engine.generate(requests)

    result = asyncio.run(ajudge(Steps(JudgeConfig(n=5)), PAIR, "reflect", stage, stage))
    assert result == sync


def test_trace_serialises_with_the_documented_fields():
    engine = scripted([1, 2, 2], [-0.1, -1, -1], {1: True, 2: False})
    d = Judge(engine, JudgeConfig(n=3)).judge_one(PAIR, "reflect").to_dict()
    assert {"preferred", "mode", "score", "judgments", "anchor", "reflections", "stage2_skipped", "usage"} <= set(d)
    assert {"analysis", "verdict", "confidence", "valid"} <= set(d["judgments"][0])
    assert {"index", "better_than_anchor"} <= set(d["reflections"][0])
    assert d["usage"]["completion_tokens"] > 0 and d["usage"]["prompt_tokens"] > 0


# --------------------------------------------------------------------------- lazy stage 2 (exact)


def test_lazy_stops_after_round_one_when_no_other_verdict_beats_the_anchor():
    verdicts = [1, 2, 2, 1, 1]  # anchor 0 (verdict 1); round 1 asks 1 and 2 (verdict 2)
    better = {1: False, 2: False, 3: True, 4: True}
    engine = scripted(verdicts, [-0.1, -1, -1, -1, -1], better)
    r = Judge(engine, JudgeConfig(n=5)).judge_one(PAIR, "reflect")
    assert len(engine.calls) == 2 and len(engine.calls[1]) == 2  # stage 1 + one round of 2 calls
    assert [x.index for x in r.reflections] == [1, 2] and r.not_asked == (3, 4)
    full = Judge(scripted(verdicts, [-0.1, -1, -1, -1, -1], better), JudgeConfig(n=5, stage2="full")).judge_one(
        PAIR, "reflect"
    )
    assert (r.preferred, r.score, r.anchor) == (full.preferred, full.score, full.anchor) == (1, 1.0, 0)
    assert r.to_dict()["stage2_calls"] == 2 and full.to_dict()["stage2_calls"] == 4


def test_lazy_asks_round_two_when_another_verdict_wins_and_then_equals_full():
    verdicts = [1, 2, 2, 1, 1]
    better = {1: True, 2: False, 3: True, 4: True}  # 1 beats the anchor: the anchor-verdict judgments decide
    engine = scripted(verdicts, [-0.1, -1, -1, -1, -1], better)
    lazy = Judge(engine, JudgeConfig(n=5)).judge_one(PAIR, "reflect")
    assert [len(c) for c in engine.calls] == [1, 2, 2]  # stage 1 (one request, n=5), then two rounds of 2
    full = Judge(scripted(verdicts, [-0.1, -1, -1, -1, -1], better), JudgeConfig(n=5, stage2="full")).judge_one(
        PAIR, "reflect"
    )
    assert lazy.to_dict() == full.to_dict()  # the whole trace: verdict, score, reflections in index order, usage
    assert lazy.not_asked == ()


def test_lazy_equals_full_on_random_patterns():
    """The property of method.md §4 that makes lazy exact: over many random stage-1 verdict patterns
    (invalid ones too), confidences and reflection outcomes, lazy gives full's verdict, score and anchor."""
    import random

    rng = random.Random(0)
    saved = 0
    for case in range(400):
        n = rng.randint(2, 8)
        verdicts = [rng.choice([1, 2, 2, 1, None]) for _ in range(n)]
        confs = [-rng.random() for _ in range(n)]
        better = {k: rng.random() < 0.4 for k in range(n)}
        invalid = {k for k in range(n) if rng.random() < 0.1}
        cfg = dict(n=n, seed=case, skip_unanimous=rng.random() < 0.5)
        full = Judge(scripted(verdicts, confs, better, invalid), JudgeConfig(**cfg, stage2="full")).judge_one(
            PAIR, "reflect"
        )
        lazy = Judge(scripted(verdicts, confs, better, invalid), JudgeConfig(**cfg, stage2="lazy")).judge_one(
            PAIR, "reflect"
        )
        assert (lazy.preferred, lazy.score, lazy.anchor) == (full.preferred, full.score, full.anchor), (
            case,
            verdicts,
            better,
        )
        assert {x.index for x in lazy.reflections} | set(lazy.not_asked) == {x.index for x in full.reflections}
        assert all(x in full.reflections for x in lazy.reflections)  # each comparison: the same answer in either round
        saved += len(full.reflections) - len(lazy.reflections)
    assert saved > 0  # and lazy did skip comparisons


def test_lazy_async_driver_runs_the_rounds():
    verdicts = [1, 2, 2, 1, 1]
    better = {1: True, 2: False, 3: False, 4: True}
    engine = scripted(verdicts, [-0.1, -1, -1, -1, -1], better)
    steps = Steps(JudgeConfig(n=5))

    async def stage(requests):
        return engine.generate(list(requests))

    r = asyncio.run(ajudge(steps, PAIR, "reflect", stage, stage))
    want = Judge(scripted(verdicts, [-0.1, -1, -1, -1, -1], better), JudgeConfig(n=5, stage2="full")).judge_one(
        PAIR, "reflect"
    )
    assert r.to_dict() == want.to_dict() and len(engine.calls) == 3


# --------------------------------------------------------------------------- verdict-only reflection (an option)


def test_verdict_only_reflection_is_one_choice_per_comparison():
    verdicts, confs = [1, 2, 2, 1, 2], [-0.1, -1.0, -1.0, -1.0, -1.0]
    better = {1: True, 2: True, 3: False, 4: False}
    analysis = Judge(scripted(verdicts, confs, better), JudgeConfig(n=5, stage2="full")).judge_one(PAIR, "reflect")

    def script(request, k):
        if not is_stage2(request):
            return judgment(verdicts[k], f"analysis-{k}", [confs[k]] * 10)
        assert request.params.choices == (" 1", " 2") and request.params.max_new_tokens == 1  # one prefill, no decode
        assert request.assistant_prefix.endswith("<Result>Critique")  # the prompt ends where the result sentence starts
        idx = next(i for i in range(1, 5) if f"analysis-{i}\nVerdict" in request.messages[-1].content)
        pos = shown_candidate_position(request, f"analysis-{idx}\nVerdict")
        return completion(f" {pos if better[idx] else 3 - pos}", [-0.2])

    engine = FakeEngine(script)
    r = Judge(engine, JudgeConfig(n=5, stage2="full", stage2_output="verdict")).judge_one(PAIR, "reflect")
    assert (r.preferred, r.score) == (analysis.preferred, analysis.score)  # the same decisions -> the same result
    assert [x.better_than_anchor for x in r.reflections] == [x.better_than_anchor for x in analysis.reflections]
    assert all(x.valid and x.completion_tokens == 1 for x in r.reflections)


def test_choice_split_handles_a_tokenizer_that_splits_off_the_space():
    from reflectrm.engines.base import choice_split

    class Chars:  # " 1" -> [" ", "1"], as SmolLM2's tokenizer does
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    assert choice_split(Chars(), (" 1", " 2")) == ([ord(" ")], [ord("1"), ord("2")])
    with pytest.raises(ValueError, match="cannot be told apart"):
        choice_split(Chars(), (" 1", " 1"))


def pair(pid: str, prompt: str = "Say hi.", r1: str = "hi", r2: str = "HI", label: int = 1) -> PreferencePair:
    return PreferencePair(pid, (Message("user", prompt),), r1, r2, label)


def test_both_orders_draw_their_own_seeds():
    engine = FakeEngine(lambda req, k: judgment(1))
    p = pair("p", r1="alpha", r2="beta")
    Judge(engine, JudgeConfig(n=2)).judge([p, p.swapped()], "majority")
    given, swapped = (r.params.seed for r in engine.calls[0])
    assert given != swapped
    Judge(engine, JudgeConfig(n=2)).judge([p], "majority")
    assert engine.calls[-1][0].params.seed == given  # and each order's seed is still reproducible
