"""Loaders: the preference formats users have, by name, into `PreferencePair`s.

    pairs, stats = load_pairs("llmbar", "../shared/data/llmbar/natural.json")
    pairs, stats = load_pairs("chosen-rejected", "prefs.parquet", on_bad_row="skip")
    pairs, stats = load_pairs("helpsteer3", "nvidia/HelpSteer3", split="train")   # a hub id, with a network

Sources: a local .jsonl / .json (a list of rows) / .parquet file, or a `datasets` hub id.
A bad row raises `BadRowError` naming the file, the row number, the field and what was expected;
with `on_bad_row="skip"` it is skipped and counted. Ties are dropped and counted where a format
has them. An empty result is an error.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

from reflectrm.records import Message, PreferencePair, messages_from


class BadRowError(ValueError):
    def __init__(self, source: str, row: int, field: str, expected: str):
        super().__init__(f"{source} row {row}: field {field!r} {expected}")
        self.source, self.row, self.field = source, row, field


class EmptyDatasetError(ValueError):
    pass


class _Tie(Exception):
    """The row is a tie: dropped and counted, not an error."""


class _Bad(Exception):
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


# --------------------------------------------------------------------------- helpers for formats


def _text(row: Mapping[str, Any], field: str) -> str:
    """A prompt field: a non-empty string."""
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        raise _Bad(field, "must be a non-empty string" if field in row else "is missing (expected a non-empty string)")
    return value


def _response(row: Mapping[str, Any], field: str, coerce: bool = False) -> str:
    """A candidate response: any string, empty included (real data has empty model outputs)."""
    value = row.get(field)
    if coerce and value is not None and not isinstance(value, str):
        value = str(value)
    if not isinstance(value, str):
        raise _Bad(field, "must be a string" if field in row else "is missing (expected a string)")
    return value


def _conversation(value: Any, field: str) -> tuple[Message, ...]:
    if value is None:
        raise _Bad(field, "is missing (expected a string or a list of {role, content} messages)")
    try:
        return messages_from(value)
    except (ValueError, TypeError) as err:
        raise _Bad(field, f"must be a string or a list of {{role, content}} messages ({err})") from None


def _split_dialogue(value: Any, field: str) -> tuple[tuple[Message, ...], str]:
    """A response given as a message list: the last assistant turn is the response, the rest its prompt."""
    if isinstance(value, str):
        return (), value
    msgs = _conversation(value, field)
    if msgs[-1].role != "assistant":
        raise _Bad(field, "as a message list must end with an assistant message")
    return msgs[:-1], msgs[-1].content


def _content_id(*parts: str) -> str:
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()[:16]


def order_by_hash(pair_id: str, seed: int) -> bool:
    """True: keep the chosen response first. A seeded hash of the id: reproducible, about half each."""
    return hashlib.sha256(f"{seed}:{pair_id}".encode()).digest()[0] % 2 == 0


# --------------------------------------------------------------------------- the formats

RowFn = Callable[[Mapping[str, Any], int, str, int], PreferencePair]


def _helpsteer3(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    context = _conversation(row.get("context"), "context")
    pref = row.get("overall_preference")
    if not isinstance(pref, int) or isinstance(pref, bool) or not -3 <= pref <= 3:
        raise _Bad("overall_preference", "must be an integer in -3..3")
    if pref == 0:
        raise _Tie()
    r1, r2 = _response(row, "response1"), _response(row, "response2")
    pid = str(row.get("id", _content_id(name, str(n))))
    # HelpSteer3: negative = response1 is better, positive = response2 is better.
    return PreferencePair(
        pid,
        context,
        r1,
        r2,
        1 if pref < 0 else 2,
        "helpsteer3",
        str(row.get("domain", "")),
        {"overall_preference": pref},
    )


def _chosen_rejected(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    chosen_ctx, chosen = _split_dialogue(row.get("chosen"), "chosen")
    rejected_ctx, rejected = _split_dialogue(row.get("rejected"), "rejected")
    if "prompt" in row and row["prompt"] not in (None, ""):
        context = _conversation(row["prompt"], "prompt")
    elif chosen_ctx:
        context = chosen_ctx
    else:
        raise _Bad("prompt", "is missing (give a prompt, or chosen/rejected as message lists that include it)")
    if rejected_ctx and chosen_ctx and rejected_ctx != chosen_ctx:
        raise _Bad("rejected", "has a different conversation than 'chosen'")
    pid = str(row.get("id", _content_id(*(m.content for m in context), chosen, rejected)))
    subset = str(row.get("subset", row.get("source", "")))
    if order_by_hash(pid, seed):
        return PreferencePair(pid, context, chosen, rejected, 1, "chosen-rejected", subset)
    return PreferencePair(pid, context, rejected, chosen, 2, "chosen-rejected", subset)


_JUDGEBENCH_CATEGORY = {
    "mmlu-pro": "knowledge",
    "livebench-reasoning": "reasoning",
    "livebench-math": "math",
    "livecodebench": "coding",
}


def _judgebench(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    label = row.get("label")
    if label not in ("A>B", "B>A"):
        raise _Bad("label", "must be 'A>B' or 'B>A'")
    source = str(row.get("source", ""))
    category = next((c for prefix, c in _JUDGEBENCH_CATEGORY.items() if source.startswith(prefix)), source)
    return PreferencePair(
        str(row.get("pair_id", n)),
        (Message("user", _text(row, "question")),),
        _response(row, "response_A"),
        _response(row, "response_B"),
        1 if label == "A>B" else 2,
        "judgebench",
        category,
        {"source": source, "response_model": row.get("response_model")},
    )


def _llmbar_like(source_name: str) -> RowFn:
    def parse(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
        label = row.get("label")
        if label not in (1, 2):
            raise _Bad("label", "must be 1 or 2")
        return PreferencePair(
            f"{name}:{n}",
            (Message("user", _text(row, "input")),),
            _response(row, "output_1"),
            _response(row, "output_2"),
            label,
            source_name,
            name,
        )

    return parse


def _pandalm(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    votes = [row.get(f"annotator{k}") for k in (1, 2, 3)]
    for k, v in enumerate(votes, start=1):
        if v not in (0, 1, 2):
            raise _Bad(f"annotator{k}", "must be 0 (tie), 1 or 2")
    ones, twos = votes.count(1), votes.count(2)
    if ones == twos or max(ones, twos) < 2:  # no majority for either response: a tie
        raise _Tie()
    parts = [row.get(f) for f in ("instruction", "input")]
    if not all(isinstance(p, str) or p is None for p in parts):
        raise _Bad("instruction", "and 'input' must be strings")
    prompt = "\n\n".join(p.strip() for p in parts if p and p.strip())  # one row has a blank instruction
    if not prompt:
        raise _Bad("instruction", "and 'input' are both empty (expected a prompt)")
    return PreferencePair(
        str(row.get("idx", n)),
        (Message("user", prompt),),
        _response(row, "response1", coerce=True),
        _response(row, "response2", coerce=True),
        1 if ones > twos else 2,
        "pandalm",
        str(row.get("motivation_app", "")),
        {"annotators": votes},
    )


FORMATS: dict[str, RowFn] = {
    "helpsteer3": _helpsteer3,
    "chosen-rejected": _chosen_rejected,
    "judgebench": _judgebench,
    "llmbar": _llmbar_like("llmbar"),
    "mtbench-human": _llmbar_like("mtbench-human"),
    "pandalm": _pandalm,
}


HUB_SUBSETS = {"helpsteer3": "preference"}  # the hub dataset's config a format reads (nvidia/HelpSteer3 has several)


def load_pairs(
    fmt: str,
    source: str | Path,
    *,
    on_bad_row: Literal["error", "skip"] = "error",
    limit: int | None = None,
    seed: int = 0,
    split: str = "train",
) -> tuple[list[PreferencePair], LoadStats]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"on_bad_row={on_bad_row!r}: use 'error' or 'skip'")
    parse = FORMATS[fmt]
    name = Path(source).stem if Path(source).is_file() else str(source)
    stats = LoadStats(str(source), fmt)
    pairs: list[PreferencePair] = []
    for n, row in enumerate(read_rows(source, split, HUB_SUBSETS.get(fmt)), start=1):
        if limit is not None and len(pairs) >= limit:
            break
        stats.rows_read += 1
        try:
            if not isinstance(row, Mapping):
                raise _Bad("<row>", "must be an object")
            pairs.append(parse(row, n, name, seed))
        except _Tie:
            stats.ties_dropped += 1
        except _Bad as bad:
            if on_bad_row == "error":
                raise BadRowError(str(source), n, bad.field, bad.expected) from None
            stats.bad_rows += 1
    if not pairs:
        raise EmptyDatasetError(
            f"{source} ({fmt}) gave no pairs: {stats.rows_read} rows read, {stats.bad_rows} bad, {stats.ties_dropped} ties"
        )
    stats.pairs = len(pairs)
    return pairs, stats


def parse_dataset_spec(spec: str) -> tuple[str, str]:
    """`format:path` -> (format, path), e.g. `llmbar:../shared/data/llmbar/natural.json`."""
    fmt, sep, path = spec.partition(":")
    if not sep or fmt not in FORMATS:
        raise ValueError(f"dataset {spec!r}: expected FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")
    return fmt, path


# --------------------------------------------------------------------------- the canonical schema


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


def _canonical(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    label = row.get("label")
    if label not in (1, 2, None):
        raise _Bad("label", "must be 1, 2 or null")
    meta = row.get("metadata") or "{}"
    try:
        metadata = json.loads(meta) if isinstance(meta, str) else dict(meta)
    except (json.JSONDecodeError, TypeError, ValueError):
        raise _Bad("metadata", "must be a JSON object (or its string)") from None
    return PreferencePair(
        str(row.get("id", n)),
        _conversation(row.get("context"), "context"),
        _response(row, "response_1"),
        _response(row, "response_2"),
        label,
        str(row.get("source", "")),
        str(row.get("subset", "")),
        metadata,
    )


FORMATS["canonical"] = _canonical


def _judge_input(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    """`reflectrm judge --input` rows: prompt (string) or messages (list), response_1, response_2,
    optional id and label."""
    has_messages = row.get("messages") is not None
    context = (
        _conversation(row.get("messages"), "messages") if has_messages else (Message("user", _text(row, "prompt")),)
    )
    label = row.get("label")
    if label not in (1, 2, None):
        raise _Bad("label", "must be 1, 2 or absent")
    return PreferencePair(
        str(row.get("id", n)), context, _response(row, "response_1"), _response(row, "response_2"), label
    )


FORMATS["judge-input"] = _judge_input


def pair_from_row(row: Mapping[str, Any]) -> PreferencePair:
    """The inverse of pair_to_row."""
    return _canonical(row, 0, "", 0)


def write_pairs(pairs: list[PreferencePair], path: str | Path) -> None:
    """Canonical rows to .jsonl or .parquet."""
    write_rows([pair_to_row(p) for p in pairs], path)


def write_rows(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Rows to .jsonl or .parquet, written to a temporary name and then renamed (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".jsonl":
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = None if rows else pa.schema([])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    else:
        raise ValueError(f"{path}: write .jsonl or .parquet")
    tmp.replace(path)
