"""The codec of the canonical pair row: `PreferencePair` <-> a row of plain values (JSONL, Parquet, Arrow).

row = pair_to_row(pair); pair_from_row(row) == pair
pair_type(): the row as an Arrow struct (a column of pairs in Parquet and Ray Data)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from reflectrm.data.files import FieldError, conversation_field, response_field, write_rows
from reflectrm.records import PreferencePair


def pair_to_row(pair: PreferencePair) -> dict[str, Any]:
    """The canonical row (JSONL/Parquet) of a pair; `load_pairs("canonical", ...)` reads it back."""
    return {
        "id": pair.id,
        "context": [m.to_dict() for m in pair.context],
        "response_1": pair.response_1,
        "response_2": pair.response_2,
        "label": pair.label,
        "source": pair.source,
        "subset": pair.subset,
        "metadata": json.dumps(dict(pair.metadata), sort_keys=True),
    }


def canonical_pair(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    label = row.get("label")
    if label not in (1, 2, None):
        raise FieldError("label", "must be 1, 2 or null")
    meta = row.get("metadata") or "{}"
    try:
        metadata = json.loads(meta) if isinstance(meta, str) else dict(meta)
    except (json.JSONDecodeError, TypeError, ValueError):
        raise FieldError("metadata", "must be a JSON object (or its string)") from None
    return PreferencePair(
        str(row.get("id", n)),
        conversation_field(row.get("context"), "context"),
        response_field(row, "response_1"),
        response_field(row, "response_2"),
        label,
        str(row.get("source", "")),
        str(row.get("subset", "")),
        metadata,
    )


def pair_from_row(row: Mapping[str, Any]) -> PreferencePair:
    """The inverse of pair_to_row."""
    return canonical_pair(row, 0, "", 0)


def write_pairs(pairs: list[PreferencePair], path: str | Path) -> None:
    """Canonical rows to .jsonl or .parquet."""
    write_rows([pair_to_row(p) for p in pairs], path)


def pair_type() -> Any:
    """pair_to_row's row as an Arrow struct type (metadata stays the JSON text of a free-form mapping)."""
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.struct(
        [
            ("id", pa.string()),
            ("context", pa.list_(message)),
            ("response_1", pa.string()),
            ("response_2", pa.string()),
            ("label", pa.int64()),
            ("source", pa.string()),
            ("subset", pa.string()),
            ("metadata", pa.string()),
        ]
    )
