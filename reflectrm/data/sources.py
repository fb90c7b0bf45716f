"""A job's input pairs: the one data section of every job, and the loader behind it.

pairs, stats = load_source(DataConfig(format="llmbar", path="../shared/data/llmbar/natural.json"))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from reflectrm.data.formats import load_pairs
from reflectrm.records import PreferencePair


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A job's input: a loader format and path (or build_data's mix for training), and how much of it."""

    format: str = "synthetic"  # a loader format (reflectrm.data.formats.FORMATS), synthetic, or (train) mix
    path: str = "2000"  # file / hub id; synthetic: how many pairs; mix: build_data's mix.parquet (pref, refl)
    limit: int | None = None  # at most this many pairs (training: rows)
    on_bad_row: Literal["error", "skip"] = "error"  # skip: count bad rows instead of stopping
    held_out: int = 0  # training only: preference items kept apart for the greedy check (never trained on)
    # given | both | random (reflectrm.data.orders): the order each pair is shown in. None: the job's
    # default (training: both, build_data: random; the score job judges pairs as given)
    orders: str | None = None

    def __post_init__(self) -> None:
        from reflectrm.data.orders import check_orders

        if self.held_out < 0:
            raise ValueError(f"data.held_out={self.held_out}: must be >= 0")
        check_orders(self.orders)


def load_source(data: DataConfig, seed: int) -> tuple[list[PreferencePair], dict[str, Any]]:
    """A job's input pairs: a loader format and path, or `synthetic` with `path` = the number of pairs."""
    fmt, path, limit = data.format, data.path, data.limit
    if fmt == "synthetic":
        from reflectrm.data.synthetic import synthetic_pairs

        n = int(path) if str(path).isdigit() else 0
        if n < 1:
            raise ValueError(f"data.format=synthetic needs data.path=N (how many pairs), got {path!r}")
        pairs = synthetic_pairs(n if limit is None else min(n, limit), seed=seed)
        return pairs, {
            "source": f"synthetic:{n}",
            "format": "synthetic",
            "rows_read": len(pairs),
            "bad_rows": 0,
            "ties_dropped": 0,
            "pairs": len(pairs),
        }
    pairs, stats = load_pairs(fmt, path, on_bad_row=data.on_bad_row, limit=limit, seed=seed)  # type: ignore[arg-type]
    return pairs, stats.to_dict()
