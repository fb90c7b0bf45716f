"""The run's record files: metrics.jsonl (one line per step, rank 0), events.jsonl (start, steps, end),
and the summary of a finished run (its table of first and last values)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence


class RunLog:
    """metrics.jsonl and events.jsonl of one run, written by rank 0."""

    def __init__(self, output: Path):
        self.metrics, self.events = output / "metrics.jsonl", output / "events.jsonl"

    def start(self, step: int, total: int, workers: int) -> None:
        """On (re)start: drop metrics of steps after the checkpoint (they are done again), then log it."""
        self.metrics.parent.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.metrics, step)
        append(
            self.events,
            {"event": "start", "resumed_from": step, "total_steps": total, "workers": workers, "time": time.time()},
        )

    def step(self, metrics: dict[str, Any]) -> None:
        append(self.metrics, metrics)
        append(self.events, {"event": "step", "step": metrics["step"]})

    def end(self, step: int) -> None:
        append(self.events, {"event": "end", "step": step, "time": time.time()})


def short(m: dict[str, Any]) -> str:
    """A progress bar's description of one step's metrics."""
    keys = [("loss", "loss"), ("reward_mean", "reward"), ("valid_rate", "valid"), ("eval_accuracy", "eval acc")]
    return " ".join(f"{label} {m[k]:.3f}" for k, label in keys if isinstance(m.get(k), float))


def append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """On resume: drop metrics of steps after the checkpoint (they are done again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


SUMMARY_KEYS = (
    "loss",
    "reward_mean",
    "signal_group_rate",
    "valid_rate",
    "accuracy",
    "pref_accuracy",
    "refl_accuracy",
    "kl",
    "lm_loss",
    "bt_loss",
    "reward_accuracy",
    "reward_margin",
    "eval_accuracy",
    "eval_valid_rate",
    "gen_tokens_per_s",
    "update_tokens_per_s",
    "gen_seconds",
    "update_seconds",
)


def summarize_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """From metrics.jsonl's rows: the first and last step, the generation share of step time, and
    `table`: [metric, first, last, "step a -> step b"] (eval metrics from the first and last eval)."""
    first, last = rows[0], rows[-1]
    evals = [r for r in rows if "eval_accuracy" in r]
    table_rows = []
    for k in SUMMARY_KEYS:
        a, b = (evals[0], evals[-1]) if k.startswith("eval") and evals else (first, last)
        if k in b:
            table_rows.append([k, a.get(k), b.get(k), f"{a['step']} -> {b['step']}"])
    gen = sum(r.get("gen_seconds", 0) for r in rows)
    upd = sum(r.get("update_seconds", 0) for r in rows)
    return {
        "steps": last["step"],
        "generation_share": round(gen / max(gen + upd, 1e-9), 3),
        "too_long": sum(int(r.get("too_long", 0)) for r in rows),  # GRPO prompts skipped: over the token limit
        "first": first,
        "last": last,
        "table": table_rows,
    }


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's rows (a line being written right now is left out)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            break
    return rows
