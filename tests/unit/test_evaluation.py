"""reflectrm.evaluation (what jobs.evaluate runs): datasets, method plumbing and the metrics table, on hand-made rows."""

from __future__ import annotations

import json

import pytest

from reflectrm.evaluation import check_budget, evaluate_rows, load_dataset, metrics_for, run_modes, source_of
from reflectrm.metrics import section_weighted


def row(pair_id, order, label, preferred, majority=None, subset="s", mode="reflect", **kw):
    base = {
        "pair_id": pair_id,
        "order": order,
        "label": label if order == "given" else 3 - label,
        "preferred": preferred,
        "majority": majority,
        "subset": subset,
        "mode": mode,
        "valid_rate": 1.0,
        "stage2_skipped": False,
        "error": "",
        "completion_tokens": 30,
        "stage1_completion_tokens": 20,
        "prompt_tokens": 300,
        "stage1_prompt_tokens": 100,
    }
    return {**base, **kw}


ROWS = [  # 3 pairs, both orders. Gold: p1 -> 1, p2 -> 2, p3 -> 1 (swapped: flipped)
    row("p1", "given", 1, 1, majority=1),
    row("p1", "swapped", 1, 2, majority=1),  # reflect right both ways; majority wrong when swapped
    row("p2", "given", 2, 2, majority=2),
    row("p2", "swapped", 2, 2, majority=1),  # position-driven: always "2"
    row("p3", "given", 1, None, majority=None, valid_rate=0.0),
    row("p3", "swapped", 1, 2, majority=2),
]


def test_metrics_for_hand_computed():
    m = metrics_for(ROWS, "reflect", "preferred", swap=True)
    assert m["n_items"] == 3
    assert m["accuracy_given"] == pytest.approx(2 / 3)  # p1, p2
    assert m["accuracy"] == pytest.approx(4 / 6)  # both orders: p1 twice, p2 given, p3 swapped
    assert m["position_preference"] == pytest.approx(1 / 5)  # 5 valid verdicts, one says "1"
    assert m["accuracy_swapped"] == pytest.approx(2 / 3)  # p1 (2), p3 (2); p2 says 2, gold 1
    assert m["consistency"] == pytest.approx(1 / 3)  # only p1
    assert m["flip_rate"] == pytest.approx(1 / 2)  # of p1, p2 (p3 has no verdict as given): p2 flips
    assert m["invalid_rate"] == pytest.approx(1 / 6)
    assert m["tokens_per_item"] == 30 and m["prompt_tokens_per_item"] == 300
    assert m["cost_vs_majority"] == {"generated_tokens": 1.5, "prompt_tokens": 3.0}
    maj = metrics_for(ROWS, "majority", "majority", swap=True)
    assert maj["accuracy_given"] == pytest.approx(2 / 3) and maj["accuracy_swapped"] == pytest.approx(
        2 / 3
    )  # p1, p2 | p2, p3
    assert maj["consistency"] == pytest.approx(1 / 3)  # only p2 (p1's majority is wrong when swapped)
    assert maj["tokens_per_item"] == 20 and "cost_vs_majority" not in maj and maj["stage2_unanimous_rate"] is None


def test_no_swap_leaves_order_metrics_unmeasured():
    m = metrics_for([r for r in ROWS if r["order"] == "given"], "reflect", "preferred", swap=False)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["consistency"] is None and m["flip_rate"] is None


def test_majority_comes_from_reflects_stage1():
    assert run_modes(["greedy", "majority", "reflect"]) == ["greedy", "reflect"]
    assert run_modes(["majority"]) == ["majority"]
    assert source_of("majority", ["greedy", "reflect"]) == ("reflect", "majority")
    assert source_of("majority", ["majority"]) == ("majority", "preferred")


def test_section_weighting_rewardbench_style():
    per = {"a": (1.0, 30), "b": (0.0, 10), "c": (0.5, 20)}
    assert section_weighted(per) == pytest.approx((1.0 + 0.0 + 0.5) / 3)  # default: each subset a section
    assert section_weighted(per, {"x": ["a", "b"], "y": ["c"]}) == pytest.approx((30 / 40 + 0.5) / 2)
    assert section_weighted(per, {"all": ["*"]}) == pytest.approx((30 + 10) / 60)
    assert section_weighted(per, {"x": ["a"], "rest": ["*"]}) == pytest.approx((1.0 + 10 / 30) / 2)
    with pytest.raises(ValueError, match=r"\['c'\] are in no section"):
        section_weighted(per, {"x": ["a", "b"]})


def test_evaluate_rows_reports_subsets_and_weighting():
    rows = [{**r, "subset": "s1" if r["pair_id"] != "p3" else "s2"} for r in ROWS]

    class D:
        name, held_out = "d", False

    out = evaluate_rows(D, rows, ["reflect"], ["reflect"], True, None)[0]
    assert [(s["subset"], s["n_items"], s["accuracy_given"]) for s in out["subsets"]] == [
        ("s1", 2, 1.0),
        ("s2", 1, 0.0),
    ]
    assert [s["accuracy"] for s in out["subsets"]] == [0.75, 0.5]  # both orders: p1 2/2 + p2 1/2; p3 1/2
    assert out["weighted_accuracy"] == pytest.approx(0.625)  # macro over s1, s2


def test_load_dataset_names_limits_round_robin_and_held_out(tmp_path):
    for name, n in (("a", 3), ("b", 2)):
        (tmp_path / f"{name}.json").write_text(
            json.dumps([{"input": f"q{i}", "output_1": "x", "output_2": "y", "label": 1} for i in range(n)])
        )
    d = load_dataset(f"llmbar:{tmp_path}/a.json+{tmp_path}/b.json", 3, "error", 0, ["judgebench"])
    assert d.name == "llmbar" and len(d.pairs) == 3 and not d.held_out
    assert {p.id[0] for p in d.pairs} == {"a", "b"}  # a limit samples from every file (seeded, by label)
    d = load_dataset(f"mine=llmbar:{tmp_path}/a.json", None, "error", 0, ["llmbar"])
    assert d.name == "mine" and len(d.pairs) == 3 and d.held_out
    assert load_dataset(f"llmbar:{tmp_path}/b.json", None, "error", 0, []).name == "llmbar/b"
    with pytest.raises(ValueError, match="expected FORMAT:PATH"):
        load_dataset(f"nope:{tmp_path}/a.json", None, "error", 0, [])


def test_heldout_synthetic_pairs_top_up_to_the_asked_number():
    """Pairs a training draw also holds are dropped; with top_up the draw goes on until the asked number is left."""
    from reflectrm.data.synthetic import synthetic_pairs
    from reflectrm.experiment import heldout_pairs, overlap

    draws = {0: 120, 201: 32}
    plain, dropped = heldout_pairs(32, 202, draws)
    topped, dropped_too = heldout_pairs(32, 202, draws, top_up=True)
    assert dropped >= 1 and len(plain) == 32 - dropped  # this seed does collide with training
    assert len(topped) == 32 and topped[: len(plain)] == plain and dropped_too >= dropped
    assert overlap(topped, *(synthetic_pairs(n, seed=s) for s, n in draws.items())) == 0


def test_a_trained_model_is_never_evaluated_below_its_training_budget(tmp_path):
    (tmp_path / "training.json").write_text(json.dumps({"recipe": "grpo", "max_new_tokens": 96}))
    check_budget(str(tmp_path), 96)
    check_budget(str(tmp_path), 256)
    check_budget("tiny-random", 8)  # an alias or a base model has no record
    with pytest.raises(ValueError, match=r"judge\.max_new_tokens=96 or more"):
        check_budget(str(tmp_path), 64)
