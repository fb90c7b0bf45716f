"""The reflection-data builder's grading, dropping, pairing and mixing on the scripted engine."""

from __future__ import annotations

import pytest

from reflectrm.config import JudgeConfig
from reflectrm.data.builder import build_sets, parse_ratio, sample_and_grade
from reflectrm.data.codec import pair_to_row
from reflectrm.engines.fake import FakeEngine, completion
from reflectrm.parsing import parse_output
from reflectrm.records import Message, PreferencePair
from tests.helpers import judgment

# Per pair id: the verdicts of its 4 samples (None = an unparseable output). Gold label: 1.
PLAN = {
    "easy-a": [1, 1, 1, 1],
    "easy-b": [1, 1, 1, 1],
    "mixed-a": [1, 2, 2, None],
    "mixed-b": [2, 1, 1, 1],
    "mixed-c": [1, None, 2, 2],
    "wrong-a": [2, 2, 2, 2],
    "wrong-b": [None, None, 2, None],
    "invalid": [None, None, None, None],
    "almost": [1, 1, 1, None],  # not easy (one invalid) but not mixed either (no valid wrong one)
}


def pairs():
    return [PreferencePair(pid, (Message("user", f"question {pid}"),), "good", "bad", 1) for pid in PLAN]


def engine():
    def script(request, k):
        pid = next(p for p in PLAN if f"question {p}\n" in request.messages[-1].content)
        v = PLAN[pid][k]
        return judgment(v, f"{pid} analysis {k}") if v else completion("no format here")

    return FakeEngine(script)


def graded_rows():
    return sample_and_grade(engine(), pairs(), JudgeConfig(n=4))


def test_grading_counts_per_item():
    rows = {r["id"]: r for r in graded_rows()}
    assert rows["mixed-a"]["n_correct"] == 1 and rows["mixed-a"]["n_valid"] == 3 and rows["mixed-a"]["n"] == 4
    assert rows["easy-a"]["n_correct"] == 4 and rows["invalid"]["n_valid"] == 0
    g = rows["mixed-b"]["judgments"]
    assert [x["correct"] for x in g] == [False, True, True, True] and g[1]["analysis"] == "mixed-b analysis 1"


def test_drop_easy_pair_and_mix_exact_counts():
    pref, refl, mix, c = build_sets(graded_rows(), "4:1", seed=0)
    assert (c.items, c.easy_dropped, c.mixed, c.all_wrong) == (9, 2, 3, 3)
    assert (c.judgments, c.invalid_judgments) == (36, 10)
    assert len(pref) == 7 and {r.id for r in pref} == {f"pref:{k}" for k in PLAN if not k.startswith("easy")}
    assert {r.id for r in refl} == {"refl:mixed-a", "refl:mixed-b", "refl:mixed-c"}
    assert (c.reflection, c.preference, c.mix) == (1, 4, 5)  # 7 preference items balance 1 reflection item at 4:1
    assert sum(r.task == "critique" for r in mix) == 1 and sum(r.task == "response" for r in mix) == 4


def test_reflection_items_pair_a_right_and_a_wrong_analysis():
    _, refl, _, _ = build_sets(graded_rows(), "1:1", seed=0)
    labels = []
    for row in refl:
        c1, c2 = row.critiques
        good, bad = (c1, c2) if row.label == 1 else (c2, c1)
        assert good.verdict == 1 and bad.verdict == 2  # gold is 1 for every pair here
        labels.append(row.label)
        msgs = row.messages()
        assert "## Critiques for Judgment" in msgs[-1].content and good.analysis in msgs[-1].content
    many = [build_sets(graded_rows(), "1:1", seed=s)[1] for s in range(8)]
    assert {r.label for rs in many for r in rs} == {1, 2}  # random order


def test_ratios():
    rows = graded_rows()
    assert build_sets(rows, "1:0")[3].mix == 7  # RFT: preference items only
    _, _, mix, c = build_sets(rows, "1:1")
    assert (c.preference, c.reflection) == (3, 3)
    assert build_sets(rows, "0:1")[3].mix == 3
    with pytest.raises(ValueError, match="expected PREF:REFL"):
        parse_ratio("four")
    with pytest.raises(ValueError, match="not both 0"):
        parse_ratio("0:0")


def test_preference_rows_render_the_judge_prompt():
    pref, _, _, _ = build_sets(graded_rows(), "1:0")
    msgs = pref[0].messages()
    assert "## Responses for Judgment" in msgs[-1].content and "## Critiques" not in msgs[-1].content
    assert (
        parse_output("<Analysis>x</Analysis><Result>Response 1 is better than Response 2</Result>").verdict
        == pref[0].label
    )


def test_synthetic_target_judgments_parse_to_the_gold_label():
    from reflectrm.data.synthetic import synthetic_pairs, target_analysis
    from reflectrm.parsing import parse_output
    from reflectrm.prompts import render_judgment

    pairs = synthetic_pairs(180, seed=3)
    for p in pairs:
        analysis = target_analysis(p)
        parsed = parse_output(render_judgment(analysis, p.label), "response")
        assert parsed.verdict == p.label and parsed.analysis == analysis
        first, second = analysis.split(" Response 2 ")
        verdicts = ["does not follow" not in first, "does not follow" not in second]  # what each sentence says
        assert verdicts == [p.label == 1, p.label == 2]  # the complying response is the one said to follow
    assert {p.metadata["category"] for p in pairs} == {
        "word_count",
        "sentence_count",
        "uppercase",
        "lowercase",
        "include_word",
        "avoid_word",
        "bullets",
        "json",
        "arithmetic",
    }


def pair(pid: str, prompt: str = "Say hi.", r1: str = "hi", r2: str = "HI", label: int = 1) -> PreferencePair:
    return PreferencePair(pid, (Message("user", prompt),), r1, r2, label)


def engine_prompt(p: PreferencePair):
    from reflectrm.prompts import response_prompt

    return response_prompt(p)


def graded(pid: str, verdicts: list[int]) -> dict:
    p = pair(pid)
    gs = [
        {"analysis": f"a{k}", "verdict": v, "valid": True, "correct": v == 1, "confidence": -1.0, "tokens": 3}
        for k, v in enumerate(verdicts)
    ]
    return {"id": pid, "pair": pair_to_row(p), "judgments": gs}


def test_build_data_skips_and_counts_over_long_items_instead_of_crashing():
    cfg = JudgeConfig(n=4, max_new_tokens=64)
    engine = FakeEngine(lambda req, k: judgment(1 if k % 2 else 2))
    short = pair("short")
    fits = engine.count_tokens(engine_prompt(short))
    engine.max_prompt_tokens = fits + 200  # the judge prompt fits; a reflection prompt adds 2 x 64 + its frame
    long_judge = pair("long-judge", prompt="word " * 400)
    # the judge prompt fits, but two analyses at the 64-token budget push the reflection prompt over
    long_reflection = pair("long-reflection", r1="w " * 60, r2="w " * 60)
    rows = {r["id"]: r for r in sample_and_grade(engine, [short, long_judge, long_reflection], cfg)}
    assert rows["short"]["too_long"] == "" and rows["short"]["n"] == 4
    assert rows["long-judge"]["too_long"] == "judge" and rows["long-judge"]["n"] == 0
    assert rows["long-reflection"]["too_long"] == "reflection" and rows["long-reflection"]["n"] == 0
    pref, refl, mix, counts = build_sets(rows.values(), "4:1")
    assert counts.too_long == 2 and counts.items == 3
    assert {r.id for r in pref} == {"pref:short"} and {r.id for r in refl} == {"refl:short"}


def test_without_a_limit_nothing_is_skipped():
    engine = FakeEngine(lambda req, k: judgment(1))
    (row,) = sample_and_grade(engine, [pair("x", prompt="word " * 400)], JudgeConfig(n=2))
    assert row["too_long"] == "" and row["n"] == 2


def test_no_reflection_items_the_mix_is_the_preference_items_and_says_so():
    rows = [graded(f"w{i}", [2, 2]) for i in range(3)]  # all wrong: preference items, nothing to pair
    pref, refl, mix, c = build_sets(rows, "4:1")
    assert (len(pref), len(refl), len(mix)) == (3, 0, 3) and "preference items only" in c.note


def test_fewer_preference_items_than_the_ratio_keeps_one_of_each():
    rows = [graded("m0", [1, 2]), graded("w0", [2, 2]), graded("w1", [2, 2])]  # 3 preference, 1 reflection
    _, _, mix, c = build_sets(rows, "4:1")
    tasks = [r.task for r in mix]
    assert tasks.count("critique") == 1 and tasks.count("response") == 3 and "not 4:1" in c.note
    _, _, mix, c = build_sets([graded("m0", [1, 2])], "4:1")  # one item, both kinds
    assert sorted(r.task for r in mix) == ["critique", "response"]
