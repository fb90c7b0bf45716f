"""Scoring pairs in separable stages: the per-batch work that jobs/score.py and jobs/evaluate.py
distribute over Ray Data actor pools. No Ray in here.

    items --stage1--> + stage-1 generations --select--> + pending --stage2--> result rows
    (engine: N judgments)    (pure: parse, anchor, plan)      (engine: the reflection calls, then the vote)

An item is one pair to judge with one mode: `{"key", "pair", "mode", "meta"}`, every value a string
(`pair` = the canonical row as JSON, `meta` = JSON of columns to copy into the result, such as the
dataset or the order). Between the stages every column stays a string, so the rows cross any
transport (Ray Data blocks, Parquet) without type surprises. A prompt over the engine's token limit
fails only its own item, with the counts in `error`; the batch goes on.
"""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any, Sequence

from reflectrm.data.loaders import pair_from_row, pair_to_row
from reflectrm.engines.base import Completion, Engine, Generation, GenerationRequest, PromptTooLongError
from reflectrm.inference import Mode, Pending, Steps
from reflectrm.records import JudgeResult, PreferencePair

Row = dict[str, Any]


def make_item(key: str, pair: PreferencePair, mode: Mode, **meta: Any) -> dict[str, str]:
    return {"key": key, "pair": json.dumps(pair_to_row(pair)), "mode": mode, "meta": json.dumps(meta)}


# --------------------------------------------------------------------------- engine calls


def generate_each(engine: Engine, requests: Sequence[GenerationRequest]) -> tuple[list[Generation | None], list[str]]:
    """One engine call for the batch. A prompt over the token limit gets None and its error text;
    the other requests still run (in one call)."""
    try:
        return list(engine.generate(requests)), [""] * len(requests)
    except PromptTooLongError as err:
        limit = err.limit
    counts = [engine.count_tokens(r.messages) for r in requests]
    fits = [i for i, c in enumerate(counts) if c <= limit]
    gens: list[Generation | None] = [None] * len(requests)
    errors = [str(PromptTooLongError(c, limit)) if c > limit else "" for c in counts]
    for i, gen in zip(fits, engine.generate([requests[i] for i in fits]) if fits else []):
        gens[i] = gen
    return gens, errors


def generation_to_json(gen: Generation) -> str:
    return json.dumps({"prompt_tokens": gen.prompt_tokens, "completions": [[c.text, c.token_ids, c.logprobs, c.finish_reason] for c in gen.completions]})


def generation_from_json(text: str) -> Generation:
    data = json.loads(text)
    return Generation(data["prompt_tokens"], tuple(Completion(t, tuple(ids), tuple(lps), fr) for t, ids, lps, fr in data["completions"]))


def _pack(pending: Pending) -> str:
    # Internal hand-over between our own pipeline steps (never user input), like Ray's own transport.
    return base64.b64encode(pickle.dumps(pending)).decode()


def _unpack(text: str) -> Pending:
    return pickle.loads(base64.b64decode(text))  # noqa: S301 (written by _pack above)


# --------------------------------------------------------------------------- the steps over rows


def run_stage1(engine: Engine, steps: Steps, items: Sequence[Row]) -> list[Row]:
    """Stage 1 for a batch of items: their N judgments, in one engine call."""
    pairs = [pair_from_row(json.loads(it["pair"])) for it in items]
    gens, errors = generate_each(engine, [steps.begin(p, it["mode"]) for p, it in zip(pairs, items)])
    return [
        {**it, "stage1": generation_to_json(g) if g is not None else "", "error": f"stage 1: {e}" if e else ""}
        for it, g, e in zip(items, gens, errors)
    ]


def run_select(steps: Steps, rows: Sequence[Row]) -> list[Row]:
    """The pure step between the stages: parse stage 1, pick the anchor, plan stage 2."""
    out = []
    for row in rows:
        pending = ""
        if row["stage1"]:
            pair = pair_from_row(json.loads(row["pair"]))
            pending = _pack(steps.after_stage1(pair, row["mode"], generation_from_json(row["stage1"])))
        out.append({**{k: v for k, v in row.items() if k != "stage1"}, "pending": pending})
    return out


def run_stage2(engine: Engine, steps: Steps, rows: Sequence[Row]) -> list[Row]:
    """Stage 2 for a batch: every planned reflection call in one engine call, then each item's vote.
    Returns `{"key", "row"}` with the result row as JSON."""
    pendings = [_unpack(r["pending"]) if r["pending"] else None for r in rows]
    requests = [planned.request for p in pendings if p is not None for planned in p.plan]
    gens, errors = generate_each(engine, requests) if requests else ([], [])
    out, at = [], 0
    for row, pending in zip(rows, pendings):
        if pending is None:
            out.append({"key": row["key"], "row": json.dumps(result_row(row, None, row["error"]))})
            continue
        k = len(pending.plan)
        answers = [g if g is not None else UNANSWERED for g in gens[at : at + k]]
        too_long = [e for e in errors[at : at + k] if e]
        at += k
        error = f"stage 2: {len(too_long)} reflection prompt(s) over the limit, counted as 'not better' ({too_long[0]})" if too_long else ""
        result = steps.finish(pending, answers)
        out.append({"key": row["key"], "row": json.dumps(result_row(row, result, error, stage1_prompt_tokens=pending.usage.prompt_tokens))})
    return out


def run_both(engine: Engine, steps: Steps, items: Sequence[Row]) -> list[Row]:
    """All three steps in one place (one actor pool for both stages)."""
    return run_stage2(engine, steps, run_select(steps, run_stage1(engine, steps, items)))


# An unanswerable reflection call (prompt too long): an empty answer, which parses as invalid and
# so counts as "not better" (method.md §4).
UNANSWERED = Generation(0, (Completion("", (), (), "length"),))


def result_row(item: Row, result: JudgeResult | None, error: str = "", stage1_prompt_tokens: int = 0) -> Row:
    """One output row: the item's key and metadata, the verdict, usage and the whole trace."""
    pair = json.loads(item["pair"])
    row: Row = {"id": item["key"], "pair_id": pair["id"], "mode": item["mode"], "label": pair.get("label"), **json.loads(item.get("meta") or "{}")}
    if result is None:
        return {**row, "preferred": None, "score": 0.5, "majority": None, "stage2_skipped": True, "valid_rate": 0.0,
                "n_judgments": 0, "stage2_calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                "stage1_prompt_tokens": 0, "stage1_completion_tokens": 0, "error": error or "no stage-1 generation", "trace": json.dumps(None)}
    return {
        **row,
        "preferred": result.preferred,
        "score": result.score,
        "majority": result.majority,
        "stage2_skipped": result.stage2_skipped,
        "valid_rate": result.valid_rate,
        "n_judgments": len(result.judgments),
        "stage2_calls": len(result.reflections),
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "stage1_prompt_tokens": stage1_prompt_tokens,  # what majority@N alone would have cost
        "stage1_completion_tokens": sum(j.completion_tokens for j in result.judgments),
        "error": error,
        "trace": json.dumps(result.to_dict()),
    }
