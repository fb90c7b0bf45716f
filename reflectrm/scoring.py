"""Scoring pairs in separable stages: the per-batch work that the Ray Data scoring pipeline
(jobs/ray_scoring.py) distributes over actor pools. No Ray in here.

    items --stage1--> + stage-1 generation --stage2--> result rows
    (engine: N judgments)   (pure select: parse, anchor, plan; engine: the reflection calls; the vote)

An item is one pair to judge with one mode: `{"key", "pair", "mode", "meta"}`, every value a string
(`pair` = the canonical row as JSON, `meta` = JSON of columns to copy into the result, such as the
dataset or the order). Stage 1 adds `stage1` (JSON of the Generation record) and `error`, so the
seam between the pools is plain string columns. The pure select step runs inside stage 2, so the
in-between state of the method (`Pending`) never crosses a process. A result row is plain columns
(ints, floats, strings; the whole trace as JSON). A prompt over the engine's token limit fails only
its own item, with the counts in `error`; the batch goes on.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from reflectrm.data.loaders import pair_from_row, pair_to_row
from reflectrm.engines.base import Completion, Engine, Generation, GenerationRequest, PromptTooLongError
from reflectrm.inference import Mode, Pending, Steps
from reflectrm.records import JudgeResult, PreferencePair

Row = dict[str, Any]


def make_item(key: str, pair: PreferencePair, mode: Mode, **meta: Any) -> dict[str, str]:
    return {"key": key, "pair": json.dumps(pair_to_row(pair)), "mode": mode, "meta": json.dumps(meta)}


# --------------------------------------------------------------------------- engine calls


def generate_each(
    engine: Engine, requests: Sequence[GenerationRequest]
) -> tuple[list[Generation | None], list[PromptTooLongError | None]]:
    """One engine call for the batch. A prompt over the token limit gets None and its typed error;
    the other requests still run (in one call)."""
    try:
        return list(engine.generate(requests)), [None] * len(requests)
    except PromptTooLongError as err:
        limit = err.limit
    counts = [engine.count_tokens(r.messages) for r in requests]
    fits = [i for i, c in enumerate(counts) if c <= limit]
    gens: list[Generation | None] = [None] * len(requests)
    errors = [PromptTooLongError(c, limit) if c > limit else None for c in counts]
    for i, gen in zip(fits, engine.generate([requests[i] for i in fits]) if fits else []):
        gens[i] = gen
    return gens, errors


def generation_to_json(gen: Generation) -> str:
    return json.dumps(
        {
            "prompt_tokens": gen.prompt_tokens,
            "completions": [[c.text, c.token_ids, c.logprobs, c.finish_reason] for c in gen.completions],
        }
    )


def generation_from_json(text: str) -> Generation:
    data = json.loads(text)
    return Generation(
        data["prompt_tokens"],
        tuple(Completion(t, tuple(ids), tuple(lps), fr) for t, ids, lps, fr in data["completions"]),
    )


# --------------------------------------------------------------------------- the steps over rows


def run_stage1(engine: Engine, steps: Steps, items: Sequence[Row]) -> list[Row]:
    """Stage 1 for a batch of items: their N judgments, in one engine call."""
    pairs = [pair_from_row(json.loads(it["pair"])) for it in items]
    gens, errors = generate_each(engine, [steps.begin(p, it["mode"]) for p, it in zip(pairs, items)])
    return [
        {
            **it,
            "stage1": generation_to_json(g) if g is not None else "",
            "error": f"stage 1: {e}" if e is not None else "",
        }
        for it, g, e in zip(items, gens, errors)
    ]


def run_stage2(engine: Engine, steps: Steps, rows: Sequence[Row]) -> list[Row]:
    """The select step, then stage 2 for the batch: each round's reflection calls (one round for
    judge.stage2=full, one or two for lazy) in one engine call, then each item's vote. Returns one
    result row per item (see `result_row`)."""
    pendings: list[Pending | None] = []
    for row in rows:
        pair = pair_from_row(json.loads(row["pair"]))
        pendings.append(
            steps.after_stage1(pair, row["mode"], generation_from_json(row["stage1"])) if row["stage1"] else None
        )
    too_long: list[list[str]] = [[] for _ in rows]
    while any(p is not None and p.plan for p in pendings):
        gens, errors = generate_each(engine, [planned.request for p in pendings if p is not None for planned in p.plan])
        at = 0
        for i, p in enumerate(pendings):
            if p is None or not p.plan:
                continue
            k = len(p.plan)
            too_long[i] += [str(e) for e in errors[at : at + k] if e is not None]
            pendings[i] = steps.answer(p, [g if g is not None else UNANSWERED for g in gens[at : at + k]])
            at += k
    out = []
    for row, pending, over in zip(rows, pendings, too_long):
        if pending is None:
            out.append(result_row(row, None, row["error"]))
            continue
        error = (
            f"stage 2: {len(over)} reflection prompt(s) over the limit, counted as 'not better' ({over[0]})"
            if over
            else ""
        )
        out.append(result_row(row, steps.finish(pending), error, stage1_prompt_tokens=pending.usage.prompt_tokens))
    return out


def run_both(engine: Engine, steps: Steps, items: Sequence[Row]) -> list[Row]:
    """Both stages in one place (one actor pool for both stages)."""
    return run_stage2(engine, steps, run_stage1(engine, steps, items))


# An unanswerable reflection call (prompt too long): an empty answer, which parses as invalid and
# so counts as "not better" (method.md §4).
UNANSWERED = Generation(0, (Completion("", (), (), "length"),))


def result_row(item: Row, result: JudgeResult | None, error: str = "", stage1_prompt_tokens: int = 0) -> Row:
    """One output row: the item's key and metadata, the verdict, usage and the whole trace."""
    pair = json.loads(item["pair"])
    row: Row = {
        "id": item["key"],
        "pair_id": pair["id"],
        "mode": item["mode"],
        "label": pair.get("label"),
        **json.loads(item.get("meta") or "{}"),
    }
    if result is None:
        return {
            **row,
            "preferred": None,
            "score": 0.5,
            "majority": None,
            "stage2_skipped": True,
            "valid_rate": 0.0,
            "n_judgments": 0,
            "stage2_calls": 0,
            "stage2_not_asked": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "stage1_prompt_tokens": 0,
            "stage1_completion_tokens": 0,
            "error": error or "no stage-1 generation",
            "trace": json.dumps(None),
        }
    return {
        **row,
        "preferred": result.preferred,
        "score": result.score,
        "majority": result.majority,
        "stage2_skipped": result.stage2_skipped,
        "valid_rate": result.valid_rate,
        "n_judgments": len(result.judgments),
        "stage2_calls": len(result.reflections),
        "stage2_not_asked": len(result.not_asked),  # lazy stage 2: comparisons that could not change the result
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "stage1_prompt_tokens": stage1_prompt_tokens,  # what majority@N alone would have cost
        "stage1_completion_tokens": sum(j.completion_tokens for j in result.judgments),
        "error": error,
        "trace": json.dumps(result.to_dict()),
    }


def summarize_scores(rows: Sequence[Row]) -> dict[str, Any]:
    """Counts over a scoring run's result rows (what jobs.score prints and saves)."""
    n = len(rows)
    labelled = [r for r in rows if r["label"] in (1, 2)]
    return {
        "pairs": n,
        "preferred_1": sum(r["preferred"] == 1 for r in rows),
        "preferred_2": sum(r["preferred"] == 2 for r in rows),
        "no_verdict": sum(r["preferred"] is None for r in rows),
        "errors": sum(bool(r["error"]) for r in rows),
        "valid_judgment_rate": sum(r["valid_rate"] for r in rows) / n if n else 0.0,
        "stage2_skip_rate": sum(bool(r["stage2_skipped"]) for r in rows) / n if n else 0.0,
        "stage2_calls": sum(r["stage2_calls"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "labelled": len(labelled),
        "accuracy": sum(r["preferred"] == r["label"] for r in labelled) / len(labelled) if labelled else None,
    }
