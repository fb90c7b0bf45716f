"""Building ReflectRM's training mix (method.md §2), as pure steps the build_data job distributes.

1. `sample_and_grade`: the model samples N judgments per pair (temperature 1.0); each is graded
   against the gold label. One row per pair comes out (the per-batch work of a Ray Data actor), with
   the pair and its graded judgments as Arrow structs (`graded_schema`), never JSON text.
2. The rows go to a result store (reflectrm.data.store) as they arrive.
3. `build_sets`: drop easy items (all N correct); the preference set is the rest; the reflection
   set has ONE (correct, wrong) analysis pair per item with mixed outcomes, in random order;
   mix the two at the configured ratio (default 4:1). The sets are `TrainingItem`s.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from reflectrm.config import JudgeConfig, PromptConfig
from reflectrm.data.codec import pair_from_row, pair_to_row, pair_type
from reflectrm.data.items import Critique, TrainingItem
from reflectrm.engines.base import Engine, generate_each
from reflectrm.inference import Steps, to_judgment
from reflectrm.prompts import reflection_prompt, response_prompt
from reflectrm.records import PreferencePair
from reflectrm.seeds import derive_seed

# The layout of graded rows (2: the pair and its judgments as Arrow structs, not JSON text). It is part of
# build_data's result settings, so a resume over parts of another layout stops and names it.
ROWS_VERSION = 2

# --------------------------------------------------------------------------- 1. sample and grade


def worst_reflection_tokens(
    engine: Engine, pair: PreferencePair, cfg: JudgeConfig, prompt_cfg: PromptConfig = PromptConfig()
) -> int:
    """Prompt tokens of this pair's reflection item with both analyses at the judge's token budget
    (the longest critique prompt its judgments can make)."""
    return engine.count_tokens(reflection_prompt(pair, ("", 1), ("", 2), prompt_cfg)) + 2 * cfg.max_new_tokens


def too_long_reason(
    engine: Engine, pair: PreferencePair, cfg: JudgeConfig, prompt_cfg: PromptConfig = PromptConfig()
) -> str | None:
    """ "judge" or "reflection" when this pair's prompt would pass the engine's token limit, else None."""
    limit = getattr(engine, "max_prompt_tokens", None)
    if not limit:
        return None
    if engine.count_tokens(response_prompt(pair, prompt_cfg)) > limit:
        return "judge"
    if worst_reflection_tokens(engine, pair, cfg, prompt_cfg) > limit:
        return "reflection"
    return None


def sample_and_grade(
    engine: Engine, pairs: Sequence[PreferencePair], cfg: JudgeConfig, prompt_cfg: PromptConfig = PromptConfig()
) -> list[dict[str, Any]]:
    """N judgments per pair in one engine call, each graded against the gold label. A pair whose judge
    prompt, or worst-case reflection prompt, is over the engine's token limit is not sampled: its row
    says why in `too_long` (build_sets skips and counts it), so one long item never stops a job."""
    unlabelled = [p.id for p in pairs if p.label not in (1, 2)]
    if unlabelled:
        raise ValueError(f"pair {unlabelled[0]} has no gold label: the reflection builder needs labelled data")
    steps = Steps(cfg, prompt_cfg)
    reasons = [too_long_reason(engine, p, cfg, prompt_cfg) for p in pairs]
    fit = [i for i, r in enumerate(reasons) if r is None]
    gens, errors = generate_each(engine, [steps.begin(pairs[i], "majority", cfg.n) for i in fit])
    by_index = dict(zip(fit, gens))
    for i, err in zip(fit, errors):
        if err is not None:  # the engine's own count disagreed with ours: still skipped, never a crash
            reasons[i] = "judge"
    rows = []
    for i, pair in enumerate(pairs):
        gen = by_index.get(i)
        judgments = [to_judgment(c, cfg.confidence_fraction) for c in gen.completions] if gen is not None else []
        graded = [
            {
                "analysis": j.analysis,
                "verdict": j.verdict,
                "valid": j.valid,
                "correct": j.verdict == pair.label,
                "confidence": j.confidence,
                "tokens": j.completion_tokens,
            }
            for j in judgments
        ]
        rows.append(
            {
                "id": pair.id,
                "pair": pair_to_row(pair),
                "judgments": graded,
                "n_correct": sum(g["correct"] for g in graded),
                "n_valid": sum(g["valid"] for g in graded),
                "n": len(graded),
                "completion_tokens": sum(g["tokens"] for g in graded),
                "prompt_tokens": gen.prompt_tokens if gen is not None else 0,
                "too_long": reasons[i] or "",
            }
        )
    return rows


def graded_schema() -> Any:
    """The Arrow schema of sample_and_grade's rows (the pair and its judgments as structs)."""
    import pyarrow as pa

    judgment = pa.struct(
        [
            ("analysis", pa.string()),
            ("verdict", pa.int64()),
            ("valid", pa.bool_()),
            ("correct", pa.bool_()),
            ("confidence", pa.float64()),
            ("tokens", pa.int64()),
        ]
    )
    ints = ("n_correct", "n_valid", "n", "completion_tokens", "prompt_tokens")
    return pa.schema(
        [("id", pa.string()), ("pair", pair_type()), ("judgments", pa.list_(judgment))]
        + [(k, pa.int64()) for k in ints]
        + [("too_long", pa.string())]
    )


# --------------------------------------------------------------------------- 3. the sets and the mix


def parse_ratio(text: str) -> tuple[int, int]:
    """'4:1' -> (4, 1). '1:0' means preference items only (the RFT baseline)."""
    try:
        a, b = (int(x) for x in str(text).split(":"))
    except ValueError:
        raise ValueError(f"mix ratio {text!r}: expected PREF:REFL integers, e.g. 4:1 (or 1:0 for RFT)") from None
    if a < 0 or b < 0 or a + b == 0:
        raise ValueError(f"mix ratio {text!r}: both parts must be >= 0 and not both 0")
    return a, b


@dataclass
class BuildCounts:
    items: int = 0
    too_long: int = 0  # skipped: the judge prompt or the worst-case reflection prompt is over the limit
    easy_dropped: int = 0
    mixed: int = 0
    all_wrong: int = 0  # no correct judgment (wrong or invalid only)
    judgments: int = 0
    invalid_judgments: int = 0
    preference_available: int = 0
    reflection_available: int = 0
    preference: int = 0
    reflection: int = 0
    mix: int = 0
    note: str = ""  # what the user should know about the mix (it is not the asked ratio, or has one kind only)


def build_sets(
    rows: Iterable[dict[str, Any]], ratio: str = "4:1", seed: int = 0
) -> tuple[list[TrainingItem], list[TrainingItem], list[TrainingItem], BuildCounts]:
    """(preference rows, reflection rows, mixed rows, counts) from graded rows (see sample_and_grade)."""
    a, b = parse_ratio(ratio)
    counts = BuildCounts()
    pref, refl = [], []
    for row in rows:
        counts.items += 1
        if row.get("too_long"):  # never sampled: its judge or reflection prompt is over the token limit
            counts.too_long += 1
            continue
        graded = row["judgments"]
        counts.judgments += len(graded)
        counts.invalid_judgments += sum(not g["valid"] for g in graded)
        if all(g["correct"] for g in graded):
            counts.easy_dropped += 1
            continue
        pair = pair_from_row(row["pair"])
        pref.append(TrainingItem.preference(pair))
        right = [g for g in graded if g["valid"] and g["correct"]]
        wrong = [g for g in graded if g["valid"] and not g["correct"]]
        if not right:
            counts.all_wrong += 1
        if right and wrong:
            counts.mixed += 1
            rng = random.Random(derive_seed(seed, row["id"], "reflection"))
            good, bad = rng.choice(right), rng.choice(wrong)
            good_first = rng.random() < 0.5
            c1, c2 = (good, bad) if good_first else (bad, good)
            critiques = [Critique(c["analysis"], c["verdict"]) for c in (c1, c2)]
            refl.append(TrainingItem.reflection(pair, *critiques, label=1 if good_first else 2))
    counts.preference_available, counts.reflection_available = len(pref), len(refl)
    rng = random.Random(derive_seed(seed, "mix"))
    if b == 0:
        n_pref, n_refl = len(pref), 0
    elif a == 0:
        n_pref, n_refl = 0, len(refl)
    elif not refl:  # nothing to reflect on: the mix is the preference items (GRPO on them is RFT)
        n_pref, n_refl = len(pref), 0
        if pref:
            counts.note = f"no reflection items: the mix is the {len(pref)} preference items only (an RFT run)"
    elif not pref:
        n_pref, n_refl = 0, 0
    else:  # as many reflection items as the preference items can balance, then a:b; at least one of each
        n_refl = max(1, min(len(refl), math.floor(len(pref) * b / a)))
        n_pref = max(1, min(len(pref), math.ceil(n_refl * a / b)))
        if n_pref * b < n_refl * a:
            counts.note = f"only {len(pref)} preference items: the mix is {n_pref}:{n_refl}, not {a}:{b}"
    pref_pick = rng.sample(pref, n_pref)
    refl_pick = rng.sample(refl, n_refl)
    mix = pref_pick + refl_pick
    rng.shuffle(mix)
    counts.preference, counts.reflection, counts.mix = n_pref, n_refl, len(mix)
    return pref, refl, mix, counts
