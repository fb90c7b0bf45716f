"""Paired comparisons of two judges, or two methods, on the same pairs (both orders).

    rows = compare(results_a, results_b)      # evaluation results (results.json's "results"), A vs B
    print(markdown(rows, "base", "trained"))

Per (dataset, method) that both hold: both-order accuracy of each, the difference B - A with a paired
95% bootstrap interval over pairs, consistency of each with an exact McNemar test, and the discordant
pairs. Pairs are matched by id, so only pairs both judged count; a comparison on no common pair is
an error that names the datasets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from reflectrm.metrics import mcnemar_exact, paired_difference, position_preference
from reflectrm.report import table

METHOD = (
    "difference = B - A in both-order accuracy, 95% paired percentile bootstrap over pairs (4,000 resamples, "
    "seeded); McNemar: exact two-sided test on the pairs consistent under one judge only"
)


def load_results(path: str | Path) -> dict[str, Any]:
    """An evaluation's results.json (jobs.evaluate writes it), or the folder that holds one."""
    p = Path(path)
    p = p / "results.json" if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(
            f"{path}: no results.json there: give an evaluation's output folder or its results.json"
        )
    data = json.loads(p.read_text())
    if not isinstance(data, dict) or "results" not in data:
        raise ValueError(f"{p} is not an evaluation's results.json (it has no 'results')")
    return data


def _score(p: int | None, q: int | None, y: int) -> float:
    return ((p == y) + (q == 3 - y)) / 2


def compare_verdicts(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> dict[str, Any]:
    """A vs B from each one's verdicts {pair id: [given, swapped, gold]} (evaluation's "verdicts")."""
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError("the two results share no pair id: compare runs evaluated on the same pairs")
    golds = [a[i][2] for i in ids]
    if golds != [b[i][2] for i in ids]:
        raise ValueError("the two results give the same pair different gold labels: they are not the same data")
    sa = [_score(*a[i]) for i in ids]
    sb = [_score(*b[i]) for i in ids]
    ca = [s == 1.0 for s in sa]
    cb = [s == 1.0 for s in sb]
    only_a = sum(x and not y for x, y in zip(ca, cb))
    only_b = sum(y and not x for x, y in zip(ca, cb))
    diff = paired_difference(sb, sa)
    return {
        "pairs": len(ids),
        "accuracy": {"a": sum(sa) / len(ids), "b": sum(sb) / len(ids)},
        "difference": diff["difference"],
        "difference_ci": diff["ci"],
        "pairs_scored_differently": sum(x != y for x, y in zip(sa, sb)),
        "consistency": {"a": sum(ca) / len(ids), "b": sum(cb) / len(ids)},
        "consistent_only_a": only_a,
        "consistent_only_b": only_b,
        "mcnemar_p": mcnemar_exact(only_a, only_b),
        "position_preference": {
            "a": position_preference([a[i][0] for i in ids], [a[i][1] for i in ids]),
            "b": position_preference([b[i][0] for i in ids], [b[i][1] for i in ids]),
        },
    }


def compare(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every (dataset, method) in both result lists, paired. A result without verdicts (an evaluation
    from before they were recorded) is an error naming the fix."""
    by_key = {(r["dataset"], r["method"]): r for r in b}
    out = []
    for r in a:
        other = by_key.get((r["dataset"], r["method"]))
        if other is None:
            continue
        if "verdicts" not in r or "verdicts" not in other:
            raise ValueError(
                f"{r['dataset']} {r['method']}: a result has no per-pair verdicts (written before they were "
                "recorded): evaluate again to compare"
            )
        out.append(
            {"dataset": r["dataset"], "method": r["method"], **compare_verdicts(r["verdicts"], other["verdicts"])}
        )
    if not out:
        raise ValueError("the two results share no (dataset, method): compare evaluations of the same datasets")
    return out


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


HEADERS = [
    "dataset",
    "method",
    "pairs",
    "both-order acc A -> B",
    "B - A [paired 95% CI]",
    "pairs scored differently",
    "consistency A -> B",
    "consistent only A / only B",
    "McNemar p",
    "says Response 1 A -> B",
]


def rows(compared: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            c["dataset"],
            c["method"],
            c["pairs"],
            f"{_f(c['accuracy']['a'])} -> {_f(c['accuracy']['b'])}",
            f"{c['difference']:+.3f} [{c['difference_ci'][0]:+.3f}, {c['difference_ci'][1]:+.3f}]",
            c["pairs_scored_differently"],
            f"{_f(c['consistency']['a'])} -> {_f(c['consistency']['b'])}",
            f"{c['consistent_only_a']} / {c['consistent_only_b']}",
            _p(c["mcnemar_p"]),
            f"{_f(c['position_preference']['a'])} -> {_f(c['position_preference']['b'])}",
        ]
        for c in compared
    ]


def markdown(compared: Sequence[dict[str, Any]], a: str, b: str) -> str:
    return "\n".join([f"A = {a}", f"B = {b}", "", table(HEADERS, rows(compared)), "", METHOD + "."])
