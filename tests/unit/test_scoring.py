"""The scorer's steps (reflectrm.scoring) on the scripted engine: the exact outputs of the method."""

from __future__ import annotations

import pytest

from reflectrm.config import JudgeConfig
from reflectrm.engines.base import PromptTooLongError
from reflectrm.engines.fake import FakeEngine
from reflectrm.inference import Judge, Steps
from reflectrm.records import JudgeResult, Judgment, Message, PreferencePair, Reflection
from reflectrm.scoring import make_item, result_row, rows_table, run_both, run_stage1, run_stage2, stage2_rates
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
        assert row["trace"] == want.to_dict()
        assert row["dataset"] == "d" and row["order"] == "given" and row["label"] == 1 and row["error"] == ""
        assert row["stage2_calls"] == 3 and row["stage2_skipped"] is False and row["valid_rate"] == 1.0
        assert row["completion_tokens"] == want.usage.completion_tokens > row["stage1_completion_tokens"] == 4 * 12
        assert row["prompt_tokens"] > row["stage1_prompt_tokens"] > 0


def test_separate_stages_equal_one_pool_and_cross_as_typed_columns():
    import pyarrow as pa

    steps = Steps(CFG)
    s1 = run_stage1(FakeEngine(script), steps, items())
    table = rows_table(s1)  # the seam between the pools: typed Arrow columns, no JSON text, no pickle
    assert pa.types.is_struct(table.schema.field("stage1").type) and pa.types.is_struct(table.schema.field("pair").type)
    assert not any(pa.types.is_string(f.type) for f in table.schema if f.name in ("pair", "stage1", "meta"))
    separate = run_stage2(FakeEngine(script), steps, table.to_pylist())
    assert separate == run_both(FakeEngine(script), steps, items())
    out = rows_table(separate)  # result rows: plain typed columns and the trace as a struct
    assert pa.types.is_struct(out.schema.field("trace").type)
    back = out.to_pylist()  # the same rows; the trace's Critic-RM fields (rewards, critiques...) come back null
    critic_only = {"valid_rate", "rewards", "critiques", "template"}
    assert all(all(r["trace"][k] is None for k in critic_only) for r in back)
    assert [{**r, "trace": {k: v for k, v in r["trace"].items() if k not in critic_only}} for r in back] == separate


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
    trace = row["trace"]
    assert [r["better_than_anchor"] for r in trace["reflections"]] == [False, False, False]
    assert row["preferred"] == trace["judgments"][trace["anchor"]]["verdict"] == 1  # W empty -> the anchor
    assert first[0]["error"] == ""


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="valid modes are greedy, majority, reflect"):
        run_stage1(FakeEngine(script), Steps(CFG), [{**items()[0], "mode": "best"}])


def pair(pid: str, prompt: str = "Say hi.", r1: str = "hi", r2: str = "HI", label: int = 1) -> PreferencePair:
    return PreferencePair(pid, (Message("user", prompt),), r1, r2, label)


def test_unanimity_rate_leaves_out_no_valid_pairs_and_errors():
    item = make_item("k", pair("p"), "reflect")
    valid = Judgment("t", "a", 1, -1.0, 3, "stop")
    invalid = Judgment("t", None, None, float("-inf"), 3, "length")
    ran = Reflection(1, 1, True, True, "t", 3)
    rows = [
        result_row(item, JudgeResult(1, "reflect", 1.0, (valid, valid), anchor=0, stage2_skipped=True)),
        result_row(item, JudgeResult(None, "reflect", 0.5, (invalid, invalid), stage2_skipped=True)),
        result_row(item, None, error="prompt has 5000 tokens; the limit is 4096"),
        result_row(item, JudgeResult(1, "reflect", 1.0, (valid, valid), anchor=0, reflections=(ran,))),
    ]
    assert [r["stage2_outcome"] for r in rows] == ["unanimous", "no_valid", "error", "ran"]
    assert stage2_rates(rows) == {
        "stage2_ran_rate": 0.25,
        "stage2_unanimous_rate": 0.25,
        "stage2_no_valid_rate": 0.25,
        "stage2_error_rate": 0.25,
    }


def ablation_script(request, k):
    from tests.helpers import critique, is_stage2

    if is_stage2(request):
        return critique(1)
    return judgment([1, 2, 2, 1, 2, 1][k], f"analysis {k}", [-0.1 if k == 0 else -1.0] * 12)


def test_ablations_share_reflects_stage1_and_change_only_the_anchor_or_the_winners():
    from reflectrm.evaluation import run_modes, source_of
    from reflectrm.inference import Steps
    from reflectrm.scoring import run_both

    ps = [pair(f"p{i}", prompt=f"Question {i}?") for i in range(12)]
    steps = Steps(JudgeConfig(n=6, stage2="full", seed=5))
    rows = {}
    for mode in ("reflect", "random_anchor", "random_winners"):
        engine = FakeEngine(ablation_script)
        rows[mode] = (run_both(engine, steps, [make_item(p.id, p, mode) for p in ps]), engine)
    traces = {m: [r["trace"] for r in rs] for m, (rs, _) in rows.items()}
    for m in ("random_anchor", "random_winners"):  # the same stage-1 samples as reflect's
        assert [[j["text"] for j in t["judgments"]] for t in traces[m]] == [
            [j["text"] for j in t["judgments"]] for t in traces["reflect"]
        ]
    assert all(t["anchor"] == 0 for t in traces["reflect"])  # judgment 0 is the most confident
    assert len({t["anchor"] for t in traces["random_anchor"]}) > 1  # drawn among the valid ones, per pair
    calls = rows["random_winners"][1].calls
    assert len(calls) == 1 and len(calls[0]) == 12  # stage 1 only: coin flips, no reflection call
    assert len(rows["random_anchor"][1].calls) == 2  # stage 1, then reflections against the random anchor
    flips = [[r["better_than_anchor"] for r in t["reflections"]] for t in traces["random_winners"]]
    assert all(len(f) == 5 for f in flips) and len({tuple(f) for f in flips}) > 1
    again = run_both(FakeEngine(ablation_script), steps, [make_item(p.id, p, "random_winners") for p in ps])
    assert [r["preferred"] for r in again] == [r["preferred"] for r in rows["random_winners"][0]]  # seeded
    assert run_modes(["greedy", "reflect", "random_anchor"]) == ["greedy", "reflect", "random_anchor"]
    assert source_of("random_winners", ["reflect", "random_winners"]) == ("random_winners", "preferred")
