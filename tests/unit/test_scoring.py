"""The scorer's steps (reflectrm.scoring) on the scripted engine: the exact outputs of the method."""

from __future__ import annotations

import json

import pytest

from reflectrm.config import JudgeConfig
from reflectrm.engines.base import PromptTooLongError
from reflectrm.engines.fake import FakeEngine
from reflectrm.inference import Judge, Steps
from reflectrm.records import Message, PreferencePair
from reflectrm.scoring import make_item, run_both, run_stage1, run_stage2
from tests.helpers import PAIR, critique, is_stage2, judgment

CFG = JudgeConfig(n=4, seed=3, stage2="full")  # the call counts below are full stage 2's; lazy: test_inference.py
# Stage 1: verdicts 1, 2, 2, 1 with judgment 0 the most confident (the anchor). Stage 2: every
# candidate shown in position 1 wins, in position 2 loses (so the outcome depends on the order).
VERDICTS = [1, 2, 2, 1]


def script(request, k):
    if is_stage2(request):
        return critique(1)
    return judgment(VERDICTS[k], f"analysis {k}", [-0.1 if k == 0 else -1.0] * 12)


def pairs():
    return [PAIR, PreferencePair("p2", (Message("user", "Count to three."),), "1 2 3", "one", 1, "synthetic", "count")]


def items(mode="reflect"):
    return [make_item(p.id, p, mode, dataset="d", order="given") for p in pairs()]


def test_scorer_gives_exactly_the_library_results():
    expected = Judge(FakeEngine(script), CFG).judge(pairs(), "reflect")
    engine = FakeEngine(script)
    rows = run_both(engine, Steps(CFG), items())
    assert len(engine.calls) == 2  # one engine call per stage for the whole batch
    assert len(engine.calls[1]) == 2 * 3  # 3 reflection calls per pair (N - 1)
    for row, want in zip(rows, expected):
        assert row["id"] == row["pair_id"] == want.pair_id
        assert (row["preferred"], row["score"], row["majority"]) == (want.preferred, want.score, want.majority)
        assert json.loads(row["trace"]) == json.loads(json.dumps(want.to_dict()))
        assert row["dataset"] == "d" and row["order"] == "given" and row["label"] == 1 and row["error"] == ""
        assert row["stage2_calls"] == 3 and row["stage2_skipped"] is False and row["valid_rate"] == 1.0
        assert row["completion_tokens"] == want.usage.completion_tokens > row["stage1_completion_tokens"] == 4 * 12
        assert row["prompt_tokens"] > row["stage1_prompt_tokens"] > 0


def test_separate_stages_equal_one_pool_and_cross_as_plain_columns():
    steps = Steps(CFG)
    s1 = run_stage1(FakeEngine(script), steps, items())
    assert all(isinstance(v, str) for row in s1 for v in row.values())  # the seam between the pools: string columns
    assert json.loads(s1[0]["stage1"])["completions"]  # JSON of the Generation record, no pickle
    separate = run_stage2(FakeEngine(script), steps, json.loads(json.dumps(s1)))  # after any transport
    assert separate == run_both(FakeEngine(script), steps, items())
    scalar = (str, int, float, bool, type(None))
    assert all(isinstance(v, scalar) for row in separate for v in row.values())  # result rows: plain typed columns


def test_lazy_stage2_runs_its_rounds_inside_stage2_and_equals_full():
    lazy = JudgeConfig(n=4, seed=3)
    engine = FakeEngine(script)
    rows = run_both(engine, Steps(lazy), items())
    full = run_both(FakeEngine(script), Steps(CFG), items())
    for a, b in zip(rows, full):
        assert (a["preferred"], a["score"]) == (b["preferred"], b["score"])
        assert a["stage2_calls"] + a["stage2_not_asked"] == b["stage2_calls"]
    assert sum(r["stage2_calls"] for r in rows) <= sum(r["stage2_calls"] for r in full)


def test_greedy_and_majority_make_no_stage2_call():
    for mode, n in (("greedy", 1), ("majority", 4)):
        engine = FakeEngine(script)
        rows = run_both(engine, Steps(CFG), items(mode))
        assert len(engine.calls) == 1 and all(r["n_judgments"] == n and r["stage2_calls"] == 0 for r in rows)
    assert rows[0]["completion_tokens"] == rows[0]["stage1_completion_tokens"]


class LimitedEngine(FakeEngine):
    """The fake engine with a prompt-token limit, like the real engines."""

    def __init__(self, script, limit):
        super().__init__(script)
        self.limit = limit

    def generate(self, requests):
        for r in requests:
            if self.count_tokens(r.messages) > self.limit:
                raise PromptTooLongError(self.count_tokens(r.messages), self.limit)
        return super().generate(requests)


def test_a_prompt_over_the_limit_fails_only_its_own_item():
    long = PreferencePair("long", (Message("user", "word " * 500),), "a", "b", 2)
    its = items() + [make_item("long", long, "reflect")]
    engine = LimitedEngine(script, limit=400)
    rows = {r["id"]: r for r in run_both(engine, Steps(CFG), its)}
    assert (
        rows["long"]["preferred"] is None
        and "limit is 400" in rows["long"]["error"]
        and rows["long"]["error"].startswith("stage 1")
    )
    assert rows["p1"]["preferred"] in (1, 2) and rows["p1"]["error"] == "" and rows["p2"]["error"] == ""


def test_a_reflection_prompt_over_the_limit_counts_as_not_better():
    steps = Steps(CFG)
    first = run_both(FakeEngine(script), steps, items()[:1])
    stage1_tokens = FakeEngine(script).count_tokens(steps.begin(PAIR, "reflect").messages)
    engine = LimitedEngine(script, limit=stage1_tokens + 5)  # stage 1 fits; the longer stage-2 prompts do not
    row = run_both(engine, steps, items()[:1])[0]
    assert row["error"].startswith("stage 2: 3 reflection prompt(s) over the limit")
    trace = json.loads(row["trace"])
    assert [r["better_than_anchor"] for r in trace["reflections"]] == [False, False, False]
    assert row["preferred"] == trace["judgments"][trace["anchor"]]["verdict"] == 1  # W empty -> the anchor
    assert first[0]["error"] == ""


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="valid modes are greedy, majority, reflect"):
        run_stage1(FakeEngine(script), Steps(CFG), [{**items()[0], "mode": "best"}])
