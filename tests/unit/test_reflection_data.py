"""The reflection-data builder's grading, dropping, pairing and mixing on the scripted engine."""

from __future__ import annotations

import json

import pytest

from reflectrm.config import JudgeConfig
from reflectrm.data.reflection import PartStore, build_sets, parse_ratio, sample_and_grade, training_messages
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
    g = json.loads(rows["mixed-b"]["judgments"])
    assert [x["correct"] for x in g] == [False, True, True, True] and g[1]["analysis"] == "mixed-b analysis 1"


def test_drop_easy_pair_and_mix_exact_counts():
    pref, refl, mix, c = build_sets(graded_rows(), "4:1", seed=0)
    assert (c.items, c.easy_dropped, c.mixed, c.all_wrong) == (9, 2, 3, 3)
    assert (c.judgments, c.invalid_judgments) == (36, 10)
    assert len(pref) == 7 and {r["id"] for r in pref} == {f"pref:{k}" for k in PLAN if not k.startswith("easy")}
    assert {r["id"] for r in refl} == {"refl:mixed-a", "refl:mixed-b", "refl:mixed-c"}
    assert (c.reflection, c.preference, c.mix) == (1, 4, 5)  # 7 preference items balance 1 reflection item at 4:1
    assert sum(r["task"] == "critique" for r in mix) == 1 and sum(r["task"] == "response" for r in mix) == 4


def test_reflection_items_pair_a_right_and_a_wrong_analysis():
    _, refl, _, _ = build_sets(graded_rows(), "1:1", seed=0)
    labels = []
    for row in refl:
        c1, c2 = json.loads(row["critique_1"]), json.loads(row["critique_2"])
        good, bad = (c1, c2) if row["label"] == 1 else (c2, c1)
        assert good["verdict"] == 1 and bad["verdict"] == 2  # gold is 1 for every pair here
        labels.append(row["label"])
        msgs = training_messages(row)
        assert "## Critiques for Judgment" in msgs[-1].content and good["analysis"] in msgs[-1].content
    many = [build_sets(graded_rows(), "1:1", seed=s)[1] for s in range(8)]
    assert {r["label"] for rs in many for r in rs} == {1, 2}  # random order


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
    msgs = training_messages(pref[0])
    assert "## Responses for Judgment" in msgs[-1].content and "## Critiques" not in msgs[-1].content
    assert (
        parse_output("<Analysis>x</Analysis><Result>Response 1 is better than Response 2</Result>").verdict
        == pref[0]["label"]
    )


def test_part_store_resume_never_duplicates(tmp_path):
    store = PartStore(tmp_path / "parts")
    rows = graded_rows()
    store.write(rows[:4])
    # a crash here; the re-run skips what was written and does the rest
    assert store.done_ids() == {r["id"] for r in rows[:4]}
    todo = [r for r in rows if r["id"] not in store.done_ids()]
    store.write(todo)
    store.write(rows[2:3])  # even a part written twice (a retried batch) is read back once
    back = store.read_all()
    assert sorted(r["id"] for r in back) == sorted(r["id"] for r in rows)
    assert build_sets(back, "4:1")[3] == build_sets(rows, "4:1")[3]
    assert not list((tmp_path / "parts").glob(".*.tmp"))


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
