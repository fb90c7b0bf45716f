"""Scoring pairs in separable stages: the per-batch work that the Ray Data scoring pipeline
(jobs/ray_scoring.py) distributes over actor pools. No Ray in here.

    items --stage1--> + stage-1 generation --stage2--> result rows
    (engine: N judgments)   (pure select: parse, anchor, plan; engine: the reflection calls; the vote)

An item is one pair to judge with one mode: `{"key", "pair", "mode", "meta"}` (`pair` = the canonical
row, `meta` = the columns to copy into the result, such as the dataset or the order, or None). Stage 1
adds `stage1` (the Generation record) and `error`. Every nested value is an Arrow struct column
(`rows_table` gives each its type), never JSON text, so the seam between the pools is typed. The pure
select step runs inside stage 2, so the in-between state of the method (`Pending`) never crosses a
process. A result row is plain columns (ints, floats, strings) and `trace`, the whole JudgeResult as a
struct. A prompt over the engine's token limit fails only its own item, with the counts in `error`; the
batch goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from reflectrm.data.codec import pair_from_row, pair_to_row, pair_type
from reflectrm.data.files import write_rows
from reflectrm.engines.base import Completion, Engine, Generation, generate_each
from reflectrm.inference import Mode, Pending, Steps
from reflectrm.records import JudgeResult, PreferencePair

Row = dict[str, Any]
# The layout of items and result rows (2: pair, stage1 and trace as Arrow structs, not JSON text). It is part
# of a run's result settings, so a resume over parts of another layout stops and names it.
ROWS_VERSION = 4  # 3: the trace names its judge method; 4: Critic-RM's rewards and critiques in the trace


def make_item(key: str, pair: PreferencePair, mode: Mode, **meta: Any) -> Row:
    return {"key": key, "pair": pair_to_row(pair), "mode": mode, "meta": dict(meta) or None}


# --------------------------------------------------------------------------- engine calls


def write_results(rows: Sequence[Row], path: Path) -> None:
    """Result rows to .jsonl (the trace nested) or .parquet (the trace a struct column), written atomically."""
    write_rows(list(rows), path, table=rows_table(rows) if path.suffix == ".parquet" else None)


def generation_to_row(gen: Generation) -> Row:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completions": [
            {
                "text": c.text,
                "token_ids": list(c.token_ids),
                "logprobs": list(c.logprobs),
                "finish_reason": c.finish_reason,
            }
            for c in gen.completions
        ],
    }


def generation_from_row(row: Row) -> Generation:
    return Generation(
        row["prompt_tokens"],
        tuple(
            Completion(c["text"], tuple(c["token_ids"]), tuple(c["logprobs"]), c["finish_reason"])
            for c in row["completions"]
        ),
    )


def arrow_types() -> dict[str, Any]:
    """The Arrow type of each nested column of items and rows (the rest are plain values)."""
    import pyarrow as pa

    completion = pa.struct(
        [
            ("text", pa.string()),
            ("token_ids", pa.list_(pa.int64())),
            ("logprobs", pa.list_(pa.float64())),
            ("finish_reason", pa.string()),
        ]
    )
    judgment = pa.struct(
        [
            ("analysis", pa.string()),
            ("verdict", pa.int64()),
            ("confidence", pa.float64()),
            ("valid", pa.bool_()),
            ("error", pa.string()),
            ("completion_tokens", pa.int64()),
            ("finish_reason", pa.string()),
            ("text", pa.string()),
        ]
    )
    reflection = pa.struct(
        [
            ("index", pa.int64()),
            ("candidate_position", pa.int64()),
            ("better_than_anchor", pa.bool_()),
            ("valid", pa.bool_()),
            ("text", pa.string()),
            ("completion_tokens", pa.int64()),
            ("error", pa.string()),
        ]
    )
    critique = pa.struct(
        [
            ("text", pa.string()),
            ("score", pa.int64()),
            ("error", pa.string()),
            ("reward", pa.float64()),
            ("completion_tokens", pa.int64()),
        ]
    )
    trace = pa.struct(
        [
            ("id", pa.string()),
            ("preferred", pa.int64()),
            ("method", pa.string()),
            ("mode", pa.string()),
            ("score", pa.float64()),
            ("majority", pa.int64()),
            ("judgments", pa.list_(judgment)),
            ("anchor", pa.int64()),
            ("reflections", pa.list_(reflection)),
            ("stage2_skipped", pa.bool_()),
            ("stage2_calls", pa.int64()),
            ("not_asked", pa.list_(pa.int64())),
            ("usage", pa.struct([("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64())])),
            # Critic-RM (pointwise): each response's mean reward, and its critiques (null for pairwise methods)
            ("valid_rate", pa.float64()),
            ("rewards", pa.list_(pa.float64())),
            ("critiques", pa.list_(pa.list_(critique))),
            ("template", pa.string()),
        ]
    )
    stage1 = pa.struct([("prompt_tokens", pa.int64()), ("completions", pa.list_(completion))])
    return {"pair": pair_type(), "stage1": stage1, "trace": trace}


def rows_table(rows: Sequence[Row]) -> Any:
    """Items or rows as an Arrow table, each nested column with its type (`arrow_types`), so every batch
    and every Parquet part of a run has one schema whatever its values (a batch of errors included)."""
    import pyarrow as pa

    types = arrow_types()
    columns = list(rows[0]) if rows else []
    return pa.table({c: pa.array([r[c] for r in rows], type=types.get(c)) for c in columns})


# --------------------------------------------------------------------------- the steps over rows


def run_stage1(engine: Engine, steps: Steps, items: Sequence[Row]) -> list[Row]:
    """Stage 1 for a batch of items: their N judgments, in one engine call."""
    pairs = [pair_from_row(it["pair"]) for it in items]
    own = [steps.for_mode(it["mode"]) for it in items]  # an ablation mode: reflect with its setting changed
    gens, errors = generate_each(engine, [its.begin(p, mode) for p, (its, mode) in zip(pairs, own)])
    return [
        {
            **it,
            "stage1": generation_to_row(g) if g is not None else None,
            "error": f"stage 1: {e}" if e is not None else "",
        }
        for it, g, e in zip(items, gens, errors)
    ]


def run_stage2(engine: Engine, steps: Steps, rows: Sequence[Row]) -> list[Row]:
    """The select step, then stage 2 for the batch: each round's reflection calls (one round for
    judge.stage2=full, one or two for lazy) in one engine call, then each item's vote. Returns one
    result row per item (see `result_row`)."""
    pendings: list[Pending | None] = []
    own = [steps.for_mode(row["mode"]) for row in rows]  # an ablation mode: reflect with its setting changed
    for row, (its, mode) in zip(rows, own):
        pair = pair_from_row(row["pair"])
        pendings.append(its.after_stage1(pair, mode, generation_from_row(row["stage1"])) if row["stage1"] else None)
    too_long: list[list[str]] = [[] for _ in rows]
    while any(p is not None and p.plan for p in pendings):
        gens, errors = generate_each(engine, [planned.request for p in pendings if p is not None for planned in p.plan])
        at = 0
        for i, p in enumerate(pendings):
            if p is None or not p.plan:
                continue
            k = len(p.plan)
            too_long[i] += [str(e) for e in errors[at : at + k] if e is not None]
            pendings[i] = own[i][0].answer(p, [g if g is not None else UNANSWERED for g in gens[at : at + k]])
            at += k
    out = []
    for row, pending, over, (its, _) in zip(rows, pendings, too_long, own):
        if pending is None:
            out.append(result_row(row, None, row["error"]))
            continue
        error = (
            f"stage 2: {len(over)} reflection prompt(s) over the limit, counted as 'not better' ({over[0]})"
            if over
            else ""
        )
        out.append(result_row(row, its.finish(pending), error, stage1_prompt_tokens=pending.usage.prompt_tokens))
    return out


def run_both(engine: Engine, steps: Steps, items: Sequence[Row]) -> list[Row]:
    """Both stages in one place (one actor pool for both stages)."""
    return run_stage2(engine, steps, run_stage1(engine, steps, items))


# An unanswerable reflection call (prompt too long): an empty answer, which parses as invalid and
# so counts as "not better" (method.md §4).
UNANSWERED = Generation(0, (Completion("", (), (), "length"),))


def run_critic(judge: Any, cfg: Any, items: Sequence[Row]) -> list[Row]:
    """Critic-RM for a batch of items (`judge` a reflectrm.critic_judge.CriticJudge, `cfg` the JudgeConfig):
    each response critiqued m times (1 in mode greedy, else cfg.n) and read by the head; a prompt over the
    limit fails only its own item."""
    from reflectrm.engines.base import PromptTooLongError
    from reflectrm.methods.critic_rm import critiques_per_response

    out = []
    for it in items:
        try:
            result = judge.judge([pair_from_row(it["pair"])], m=critiques_per_response(it["mode"], cfg.n))[0]
        except PromptTooLongError as err:
            out.append(result_row(it, None, f"critique: {err}"))
            continue
        u = result.usage
        out.append(
            {
                **result_row(it, None),
                "preferred": result.preferred,
                "score": result.score,
                "stage2_outcome": "none",  # no stage 2: a pointwise reward
                "valid_rate": result.valid_rate,
                "n_judgments": 2 * result.m,
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "stage1_prompt_tokens": u.prompt_tokens,
                "stage1_completion_tokens": u.completion_tokens,
                "error": "",
                "trace": result.to_dict(),
            }
        )
    return out


def result_row(item: Row, result: JudgeResult | None, error: str = "", stage1_prompt_tokens: int = 0) -> Row:
    """One output row: the item's key and metadata, the verdict, usage and the whole trace."""
    pair = item["pair"]
    row: Row = {
        "id": item["key"],
        "pair_id": pair["id"],
        "mode": item["mode"],
        "label": pair.get("label"),
        **(item.get("meta") or {}),
    }
    if result is None:
        return {
            **row,
            "preferred": None,
            "score": 0.5,
            "majority": None,
            "stage2_skipped": True,
            "stage2_outcome": "error",
            "valid_rate": 0.0,
            "n_judgments": 0,
            "stage2_calls": 0,
            "stage2_not_asked": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "stage1_prompt_tokens": 0,
            "stage1_completion_tokens": 0,
            "error": error or "no stage-1 generation",
            "trace": None,
        }
    return {
        **row,
        "preferred": result.preferred,
        "score": result.score,
        "majority": result.majority,
        "stage2_skipped": result.stage2_skipped,
        "stage2_outcome": stage2_outcome(result),
        "valid_rate": result.valid_rate,
        "n_judgments": len(result.judgments),
        "stage2_calls": len(result.reflections),
        "stage2_not_asked": len(result.not_asked),  # lazy stage 2: comparisons that could not change the result
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "stage1_prompt_tokens": stage1_prompt_tokens,  # what majority@N alone would have cost
        "stage1_completion_tokens": sum(j.completion_tokens for j in result.judgments),
        "error": error,
        "trace": result.to_dict(),
    }


def stage2_outcome(result: JudgeResult) -> str:
    """Why stage 2 did or did not run for one pair: "ran"; "unanimous" (the short-cut: every valid
    verdict agrees); "no_valid" (no valid judgment, so no verdict). Rows with no result are "error"."""
    if result.anchor is None:
        return "no_valid"
    return "ran" if result.reflections else "unanimous"


def stage2_rates(rows: Sequence[Row]) -> dict[str, float | None]:
    """The share of pairs of each stage-2 outcome, apart (the unanimity rate counts only pairs with a
    valid judgment that all agree; no valid judgment, and errors such as a prompt too long, are their own)."""
    n = len(rows)
    outcomes = [r.get("stage2_outcome") or ("error" if r.get("error") else "unanimous") for r in rows]
    return {
        f"stage2_{o}_rate": (outcomes.count(o) / n if n else None) for o in ("ran", "unanimous", "no_valid", "error")
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
        **stage2_rates(rows),
        "stage2_calls": sum(r["stage2_calls"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "labelled": len(labelled),
        "accuracy": sum(r["preferred"] == r["label"] for r in labelled) / len(labelled) if labelled else None,
    }
