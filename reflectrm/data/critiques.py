"""Critic-RM's "generate and filter" (arXiv 2411.16646; method.md §6), the filter half: from K candidate
critiques of each response of a labelled pair, keep the instance only when the critiques' scores agree with
the label, and pick the critiques to train on.

The paper's counts, thresholds and refinement rule are not public. Ours, each a setting (CriticFilter):
- instance filter: the mean score of the chosen response's valid critiques must exceed the rejected one's by
  at least `min_margin` (critiques whose score cannot be read do not count; a side with none drops the pair);
- selection ("margin", the most consistent ones): the chosen response's highest-scored critique and the
  rejected one's lowest-scored (the first on a tie); "first": the first valid critique of each;
- ranking: the kept instances ranked by the selected critiques' score margin, and the top `keep` share kept.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from reflectrm.data.items import Critique, TrainingItem
from reflectrm.methods.critic_rm import parse_critique
from reflectrm.records import PreferencePair


@dataclass(frozen=True)
class CriticFilter:
    k: int = 4  # candidate critiques sampled per response
    min_margin: float = 0.0  # mean(chosen scores) - mean(rejected scores) must be above this
    select: Literal["margin", "first"] = "margin"
    keep: float = 1.0  # the share of kept instances, ranked by the selected critiques' margin, to train on

    def __post_init__(self) -> None:
        if self.k < 1 or not 0.0 < self.keep <= 1.0:
            raise ValueError(f"critic filter: k must be >= 1 and keep in (0, 1], got k={self.k}, keep={self.keep}")
        if self.select not in ("margin", "first"):
            raise ValueError(f"critic filter: select={self.select!r}; use margin or first")


@dataclass(frozen=True)
class Filtered:
    item: TrainingItem | None  # None: dropped
    reason: str  # "kept", "no valid critique", "scores contradict the label"
    margin: float = 0.0  # the selected critiques' score margin (chosen - rejected)


def filter_pair(pair: PreferencePair, texts_1: Sequence[str], texts_2: Sequence[str], cfg: CriticFilter) -> Filtered:
    """One labelled pair and the sampled critique texts of its response 1 and response 2."""
    sides = []
    for texts in (texts_1, texts_2):
        parsed = [parse_critique(t) for t in texts]
        sides.append([(p.critique, p.score) for p in parsed if p.valid])
    if not sides[0] or not sides[1]:
        return Filtered(None, "no valid critique")
    chosen, rejected = (sides[0], sides[1]) if pair.label == 1 else (sides[1], sides[0])
    if statistics.mean(s for _, s in chosen) - statistics.mean(s for _, s in rejected) <= cfg.min_margin:
        return Filtered(None, "scores contradict the label")
    if cfg.select == "margin":
        best = max(range(len(chosen)), key=lambda i: (chosen[i][1], -i))
        worst = min(range(len(rejected)), key=lambda i: (rejected[i][1], i))
        c, r = chosen[best], rejected[worst]
    else:
        c, r = chosen[0], rejected[0]
    first, second = (c, r) if pair.label == 1 else (r, c)
    item = TrainingItem.critic(pair, Critique(first[0], first[1]), Critique(second[0], second[1]))  # type: ignore[arg-type]
    return Filtered(item, "kept", float(c[1] - r[1]))  # type: ignore[operator]


def select_items(filtered: Sequence[Filtered], cfg: CriticFilter) -> tuple[list[TrainingItem], dict[str, int]]:
    """The items to train on (the top `keep` share by margin, stable), and the counts of each outcome."""
    counts = Counter(f.reason for f in filtered)
    kept = sorted((f for f in filtered if f.item is not None), key=lambda f: -f.margin)
    n = max(1, round(len(kept) * cfg.keep)) if kept else 0
    counts["kept_after_ranking"] = n
    return [f.item for f in kept[:n]], dict(counts)  # type: ignore[misc]


def sample_texts(
    engine: Any, pairs: Sequence[PreferencePair], k: int, **sampling: Any
) -> list[tuple[list[str], list[str]] | None]:
    """`k` critiques of each response of each pair, in one engine call, seeded by the pair's id and the
    response's text (pointwise: a response gets the same critiques in either order). None for a pair whose
    prompt is over the engine's limit. `sampling`: temperature, max_new_tokens, seed, prompt (PromptConfig)."""
    from reflectrm.config import PromptConfig
    from reflectrm.engines.base import GenerationRequest, SamplingParams, generate_each
    from reflectrm.methods.critic_rm import critique_prompt
    from reflectrm.seeds import derive_seed

    prompt = sampling.get("prompt", PromptConfig())
    requests = [
        GenerationRequest(
            critique_prompt(p.context, response, prompt),
            SamplingParams(
                n=k,
                temperature=sampling.get("temperature", 1.0),
                max_new_tokens=sampling.get("max_new_tokens", 256),
                seed=derive_seed(sampling.get("seed", 0), p.id, "critique", response),
            ),
        )
        for p in pairs
        for response in (p.response_1, p.response_2)
    ]
    gens, _ = generate_each(engine, requests)  # a prompt over the engine's limit comes back as None
    out: list[tuple[list[str], list[str]] | None] = []
    for g1, g2 in zip(gens[0::2], gens[1::2]):
        out.append(
            None if g1 is None or g2 is None else ([c.text for c in g1.completions], [c.text for c in g2.completions])
        )
    return out


def sample_critiques(
    engine: Any, pairs: Sequence[PreferencePair], cfg: CriticFilter, **sampling: Any
) -> list[Filtered]:
    """Generate and filter: `sample_texts` with cfg.k, then `filter_pair` on each pair."""
    texts = sample_texts(engine, pairs, cfg.k, **sampling)
    return [Filtered(None, "prompt too long") if t is None else filter_pair(p, *t, cfg) for p, t in zip(pairs, texts)]
