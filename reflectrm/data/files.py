"""Files and row errors: reading rows from a local file (or a hub id), writing rows atomically, and the
errors that name the file, the row, the field and what was expected.

A bad row raises `BadRowError` naming the file, the row number, the field and what was expected. A
format raises `FieldError` (a bad field) or `Tie` (dropped and counted) from its row parser; `load_pairs`
(reflectrm.data.formats) turns them into BadRowError or counts.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from reflectrm.records import Message, messages_from


class BadRowError(ValueError):
    def __init__(self, source: str, row: int, field: str, expected: str):
        super().__init__(f"{source} row {row}: field {field!r} {expected}")
        self.source, self.row, self.field = source, row, field


class EmptyDatasetError(ValueError):
    pass


class Tie(Exception):
    """The row is a tie: dropped and counted, not an error."""


class FieldError(Exception):
    """A row's field is missing or of the wrong kind (load_pairs names the file and the row)."""

    def __init__(self, field: str, expected: str):
        self.field, self.expected = field, expected


@dataclasses.dataclass
class LoadStats:
    source: str
    format: str
    rows_read: int = 0
    bad_rows: int = 0
    ties_dropped: int = 0
    pairs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- reading rows


def read_rows(source: str | Path, split: str = "train", subset: str | None = None) -> Iterator[Mapping[str, Any]]:
    """Rows of a local JSONL/JSON/Parquet file (.jsonl.gz and .json.gz too: HelpSteer3 ships those) or of a
    `datasets` hub id (`subset`: the hub dataset's config, e.g. HelpSteer3's "preference")."""
    path = Path(source)
    if path.is_file():
        gz = path.suffix.lower() == ".gz"
        suffix = Path(path.stem).suffix.lower() if gz else path.suffix.lower()
        opener = functools.partial(gzip.open, mode="rt", encoding="utf-8") if gz else functools.partial(open)
        if suffix == ".jsonl":
            with opener(path) as fh:
                for n, line in enumerate(fh, start=1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError as err:
                            raise BadRowError(str(path), n, "<line>", f"is not valid JSON ({err.msg})") from None
        elif suffix == ".json":
            with opener(path) as fh:
                data = json.load(fh)
            if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
                data = next(iter(data.values()))  # {"data": [...]} style
            if not isinstance(data, list):
                raise ValueError(f"{path}: expected a JSON list of rows")
            yield from data
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(path).to_pylist()
        else:
            raise ValueError(
                f"{path}: unknown file type {suffix!r}; use .jsonl, .json or .parquet (.jsonl.gz, .json.gz)"
            )
        return
    if path.suffix or str(source).startswith((".", "/", "~")) or str(source).count("/") != 1:
        raise FileNotFoundError(
            f"data source {source} does not exist (a local .jsonl/.json/.parquet file or a hub id org/name)"
        )
    try:
        import datasets

        yield from datasets.load_dataset(str(source), subset, split=split)
    except Exception as err:
        raise FileNotFoundError(
            f"could not load hub dataset {source!r} ({type(err).__name__}: no network?): download it and pass the local file"
        ) from None


# --------------------------------------------------------------------------- fields of a row


def text_field(row: Mapping[str, Any], field: str) -> str:
    """A prompt field: a non-empty string."""
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        raise FieldError(
            field, "must be a non-empty string" if field in row else "is missing (expected a non-empty string)"
        )
    return value


def response_field(row: Mapping[str, Any], field: str, coerce: bool = False) -> str:
    """A candidate response: any string, empty included (real data has empty model outputs)."""
    value = row.get(field)
    if coerce and value is not None and not isinstance(value, str):
        value = str(value)
    if not isinstance(value, str):
        raise FieldError(field, "must be a string" if field in row else "is missing (expected a string)")
    return value


def conversation_field(value: Any, field: str) -> tuple[Message, ...]:
    if value is None:
        raise FieldError(field, "is missing (expected a string or a list of {role, content} messages)")
    try:
        return messages_from(value)
    except (ValueError, TypeError) as err:
        raise FieldError(field, f"must be a string or a list of {{role, content}} messages ({err})") from None


def split_dialogue(value: Any, field: str) -> tuple[tuple[Message, ...], str]:
    """A response given as a message list: the last assistant turn is the response, the rest its prompt."""
    if isinstance(value, str):
        return (), value
    msgs = conversation_field(value, field)
    if msgs[-1].role != "assistant":
        raise FieldError(field, "as a message list must end with an assistant message")
    return msgs[:-1], msgs[-1].content


def write_rows(rows: list[dict[str, Any]], path: str | Path, table: Any = None) -> None:
    """Rows to .jsonl or .parquet, written to a temporary name and then renamed (never half-written).
    `table`: the rows already as a typed Arrow table (what .parquet writes instead of inferring one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".jsonl":
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if table is None:
            table = pa.Table.from_pylist(rows, schema=None if rows else pa.schema([]))
        pq.write_table(table, tmp)
    else:
        raise ValueError(f"{path}: write .jsonl or .parquet")
    tmp.replace(path)
