"""Intervals, paired comparisons and position preference (reflectrm.metrics, reflectrm.comparison), on known cases."""

from __future__ import annotations

import json

import pytest

from reflectrm import comparison
from reflectrm.evaluation import balanced_sample, metrics_for
from reflectrm.metrics import mcnemar_exact, paired_difference, wilson
from reflectrm.records import Message, PreferencePair


def test_wilson_never_collapses_at_the_ends():
    lo, hi = wilson(0, 32)
    assert lo == 0.0 and hi == pytest.approx(0.107, abs=0.002)  # the exact 95% upper bound is 0.109
    lo, hi = wilson(8, 8)
    assert hi == 1.0 and lo == pytest.approx(0.676, abs=0.002)
    lo, hi = wilson(16, 32)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.33, abs=0.01)
    assert wilson(0, 0) is None
    for n in range(1, 300):  # the estimate always lies inside, rounding included (a plot's error bars rely on it)
        assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0
        lo, hi = wilson(n / 3, n)
        assert lo <= (n / 3) / n <= hi


def test_mcnemar_exact_on_known_tables():
    # b=1, c=9: 2 * P(X <= 1), X ~ Bin(10, .5) = 2 * 11/1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0


def test_paired_interval_sees_what_unpaired_cannot():
    # 40 pairs: B right where A is, plus 8 more; shared difficulty cancels in the pairing
    a = [1.0] * 16 + [0.0] * 24
    b = [1.0] * 24 + [0.0] * 16
    d = paired_difference(b, a)
    assert d["difference"] == pytest.approx(0.2)
    lo, hi = d["ci"]
    assert 0 < lo < 0.2 < hi  # excludes zero
    unpaired_lo = 0.2 - 1.96 * (0.6 * 0.4 / 40 + 0.4 * 0.6 / 40) ** 0.5
    assert unpaired_lo < 0 < lo  # two unpaired intervals would overlap zero
    assert paired_difference(b, a) == d  # seeded
    same = paired_difference(a, a)
    assert same["difference"] == 0 and same["ci"] == (0.0, 0.0)


def _rows(preds):  # [(pair id, label, given verdict, swapped verdict)]
    out = []
    for pid, label, p, q in preds:
        for order, v, y in (("given", p, label), ("swapped", q, 3 - label)):
            out.append(
                {
                    "pair_id": pid,
                    "order": order,
                    "label": y,
                    "preferred": v,
                    "mode": "greedy",
                    "subset": "s",
                    "valid_rate": 1.0,
                    "error": "",
                    "stage1_completion_tokens": 10,
                    "stage1_prompt_tokens": 10,
                }
            )
    return out


def test_a_position_constant_judge_scores_half_on_a_balanced_set():
    pairs = [(f"p{i}", 1 + i % 2, 1, 1) for i in range(20)]  # always "Response 1"; 10 label-1, 10 label-2
    m = metrics_for(_rows(pairs), "greedy", "preferred", swap=True)
    assert m["accuracy"] == 0.5 and m["consistency"] == 0.0 and m["position_preference"] == 1.0
    assert m["accuracy_given"] == 0.5 and m["label_shares"] == {"1": 0.5, "2": 0.5}
    assert m["consistency_ci"][0] == 0.0 and m["consistency_ci"][1] > 0.1  # Wilson, not a point
    skewed = [(f"p{i}", 1 if i < 16 else 2, 1, 1) for i in range(20)]  # 80% label 1
    s = metrics_for(_rows(skewed), "greedy", "preferred", swap=True)
    assert s["accuracy_given"] == 0.8 and s["accuracy"] == 0.5  # given order only would reward the bias


def test_compare_pairs_runs_by_id_and_counts_discordant(tmp_path):
    base = [(f"p{i}", 1 + i % 2, 1, 1) for i in range(20)]  # position-constant
    trained = [(pid, y, y, 3 - y) if i < 12 else (pid, y, 1, 1) for i, (pid, y, _, _) in enumerate(base)]
    a = metrics_for(_rows(base), "greedy", "preferred", swap=True)
    b = metrics_for(_rows(trained), "greedy", "preferred", swap=True)
    c = comparison.compare([{"dataset": "d", "method": "greedy", **a}], [{"dataset": "d", "method": "greedy", **b}])[0]
    assert c["pairs"] == 20 and c["consistency"] == {"a": 0.0, "b": 0.6}
    assert (c["consistent_only_a"], c["consistent_only_b"]) == (0, 12)
    assert c["mcnemar_p"] == pytest.approx(2 / 2**12)
    assert c["difference"] == pytest.approx(0.3) and c["difference_ci"][0] > 0
    for name, r in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(
            json.dumps({"model": name, "results": [{"dataset": "d", "method": "greedy", **r}]})
        )
    from reflectrm.cli import main

    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "missing")]) == 2


def test_compare_refuses_different_data():
    a = {"p1": [1, 2, 1]}
    with pytest.raises(ValueError, match="share no pair id"):
        comparison.compare_verdicts(a, {"p2": [1, 2, 1]})
    with pytest.raises(ValueError, match="different gold labels"):
        comparison.compare_verdicts(a, {"p1": [1, 2, 2]})


def test_a_limit_draws_a_seeded_label_balanced_sample():
    pairs = [
        PreferencePair(f"p{i}", (Message("user", f"q{i}"),), "x", "y", 1 if i < 80 else 2) for i in range(100)
    ]  # 80:20, label 1 first: "the first 16 rows" would be all label 1
    s = balanced_sample([pairs], 16, seed=0)
    assert len(s) == 16 and sum(p.label == 1 for p in s) == 8
    assert [p.id for p in s] == [p.id for p in balanced_sample([pairs], 16, seed=0)]
    assert [p.id for p in s] != [p.id for p in balanced_sample([pairs], 16, seed=1)]
    short = balanced_sample([pairs], 60, seed=0)  # only 20 label-2 pairs: label 1 fills the rest
    assert len(short) == 60 and sum(p.label == 2 for p in short) == 20
