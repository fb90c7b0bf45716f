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
    """A training mix like jobs.build_data's, made without a model (reflectrm.training.data.checkable_mix)."""
    from reflectrm.data.items import write_items
    from reflectrm.training.data import checkable_mix

    write_items(checkable_mix(n_pairs, seed), path)
    return path


def write_toy_critic(path, n_pairs: int, seed: int = 9):
    """Critic-RM items made without a model: the synthetic pair's checkable analysis scored 8 for the better
    response, a fixed complaint scored 3 for the other."""
    from reflectrm.data.items import Critique, TrainingItem, write_items
    from reflectrm.data.synthetic import synthetic_pairs, target_analysis

    items = []
    for p in synthetic_pairs(n_pairs, seed=seed):
        good, bad = Critique(target_analysis(p), 8), Critique("It misses the instruction.", 3)
        items.append(TrainingItem.critic(p, *((good, bad) if p.label == 1 else (bad, good))))
    write_items(items, path)
    return path
