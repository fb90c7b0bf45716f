"""Scripted outputs for the fake engine."""

from __future__ import annotations

from reflectrm.engines.fake import completion
from reflectrm.prompts import render_judgment
from reflectrm.records import Message, PreferencePair

PAIR = PreferencePair("p1", (Message("user", "Say hi in lowercase."),), "hi", "HI", 1)


def judgment(verdict: int, analysis: str = "because", logprobs=None):
    """A valid stage-1 output with `verdict`; its confidence is set through `logprobs`."""
    text = render_judgment(analysis, verdict, "response")
    return completion(text, logprobs if logprobs is not None else [-1.0] * len(text.split()))


def critique(better: int):
    return completion(render_judgment("this critique is sound", better, "critique"))


def is_stage2(request) -> bool:
    return "## Critiques for Judgment" in request.messages[-1].content


def shown_candidate_position(request, candidate_analysis: str) -> int:
    """Where the candidate critique (found by its analysis text) sits in a stage-2 prompt."""
    text = request.messages[-1].content
    first = text.index("[Critique 1]")
    second = text.index("[Critique 2]")
    at = text.index(candidate_analysis, first)
    return 1 if at < second else 2


def write_toy_mix(path, n_pairs: int, seed: int = 3):
    """A training mix like jobs.build_data's, made without a model: one preference row and one
    reflection row per synthetic pair (the reflection row pairs the set's checkable analysis with the
    right verdict against the same analysis with the wrong one)."""
    import json

    from reflectrm.data.loaders import pair_to_row, write_rows
    from reflectrm.data.reflection import preference_row
    from reflectrm.data.synthetic import synthetic_pairs, target_analysis

    rows = []
    for p in synthetic_pairs(n_pairs, seed=seed):
        pr = pair_to_row(p)
        rows.append(preference_row(pr))
        a = target_analysis(p)
        rows.append(
            {
                "id": f"refl:{p.id}",
                "task": "critique",
                "label": 1,
                "pair": json.dumps(pr),
                "critique_1": json.dumps({"analysis": a, "verdict": p.label}),
                "critique_2": json.dumps({"analysis": a, "verdict": 3 - p.label}),
            }
        )
    write_rows(rows, path)
    return path
