"""Formats: the preference formats users have, by name, into `PreferencePair`s.

    pairs, stats = load_pairs("llmbar", "../shared/data/llmbar/natural.json")
    pairs, stats = load_pairs("chosen-rejected", "prefs.parquet", on_bad_row="skip")
    pairs, stats = load_pairs("helpsteer3", "nvidia/HelpSteer3", split="train")   # a hub id, with a network

Sources: a local .jsonl / .json (a list of rows) / .parquet file, or a `datasets` hub id (reflectrm.data.files).
A bad row raises `BadRowError` naming the file, the row number, the field and what was expected;
with `on_bad_row="skip"` it is skipped and counted. Ties are dropped and counted where a format
has them. An empty result is an error.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from reflectrm.data.codec import canonical_pair
from reflectrm.data.files import (
    BadRowError,
    EmptyDatasetError,
    FieldError,
    LoadStats,
    Tie,
    conversation_field,
    read_rows,
    response_field,
    split_dialogue,
    text_field,
)
from reflectrm.records import Message, PreferencePair


def _content_id(*parts: str) -> str:
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()[:16]


def order_by_hash(pair_id: str, seed: int) -> bool:
    """True: keep the chosen response first. A seeded hash of the id: reproducible, about half each."""
    return hashlib.sha256(f"{seed}:{pair_id}".encode()).digest()[0] % 2 == 0


# --------------------------------------------------------------------------- the formats

RowFn = Callable[[Mapping[str, Any], int, str, int], PreferencePair]


def _helpsteer3(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    context = conversation_field(row.get("context"), "context")
    pref = row.get("overall_preference")
    if not isinstance(pref, int) or isinstance(pref, bool) or not -3 <= pref <= 3:
        raise FieldError("overall_preference", "must be an integer in -3..3")
    if pref == 0:
        raise Tie()
    r1, r2 = response_field(row, "response1"), response_field(row, "response2")
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
    chosen_ctx, chosen = split_dialogue(row.get("chosen"), "chosen")
    rejected_ctx, rejected = split_dialogue(row.get("rejected"), "rejected")
    if "prompt" in row and row["prompt"] not in (None, ""):
        context = conversation_field(row["prompt"], "prompt")
    elif chosen_ctx:
        context = chosen_ctx
    else:
        raise FieldError("prompt", "is missing (give a prompt, or chosen/rejected as message lists that include it)")
    if rejected_ctx and chosen_ctx and rejected_ctx != chosen_ctx:
        raise FieldError("rejected", "has a different conversation than 'chosen'")
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
        raise FieldError("label", "must be 'A>B' or 'B>A'")
    source = str(row.get("source", ""))
    category = next((c for prefix, c in _JUDGEBENCH_CATEGORY.items() if source.startswith(prefix)), source)
    return PreferencePair(
        str(row.get("pair_id", n)),
        (Message("user", text_field(row, "question")),),
        response_field(row, "response_A"),
        response_field(row, "response_B"),
        1 if label == "A>B" else 2,
        "judgebench",
        category,
        {"source": source, "response_model": row.get("response_model")},
    )


def _llmbar_like(source_name: str) -> RowFn:
    def parse(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
        label = row.get("label")
        if label not in (1, 2):
            raise FieldError("label", "must be 1 or 2")
        return PreferencePair(
            f"{name}:{n}",
            (Message("user", text_field(row, "input")),),
            response_field(row, "output_1"),
            response_field(row, "output_2"),
            label,
            source_name,
            name,
        )

    return parse


def _pandalm(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    votes = [row.get(f"annotator{k}") for k in (1, 2, 3)]
    for k, v in enumerate(votes, start=1):
        if v not in (0, 1, 2):
            raise FieldError(f"annotator{k}", "must be 0 (tie), 1 or 2")
    ones, twos = votes.count(1), votes.count(2)
    if ones == twos or max(ones, twos) < 2:  # no majority for either response: a tie
        raise Tie()
    parts = [row.get(f) for f in ("instruction", "input")]
    if not all(isinstance(p, str) or p is None for p in parts):
        raise FieldError("instruction", "and 'input' must be strings")
    prompt = "\n\n".join(p.strip() for p in parts if p and p.strip())  # one row has a blank instruction
    if not prompt:
        raise FieldError("instruction", "and 'input' are both empty (expected a prompt)")
    return PreferencePair(
        str(row.get("idx", n)),
        (Message("user", prompt),),
        response_field(row, "response1", coerce=True),
        response_field(row, "response2", coerce=True),
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
                raise FieldError("<row>", "must be an object")
            pairs.append(parse(row, n, name, seed))
        except Tie:
            stats.ties_dropped += 1
        except FieldError as bad:
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


FORMATS["canonical"] = canonical_pair


def _judge_input(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    """`reflectrm judge --input` rows: prompt (string) or messages (list), response_1, response_2,
    optional id and label."""
    has_messages = row.get("messages") is not None
    context = (
        conversation_field(row.get("messages"), "messages")
        if has_messages
        else (Message("user", text_field(row, "prompt")),)
    )
    label = row.get("label")
    if label not in (1, 2, None):
        raise FieldError("label", "must be 1, 2 or absent")
    return PreferencePair(
        str(row.get("id", n)), context, response_field(row, "response_1"), response_field(row, "response_2"), label
    )


FORMATS["judge-input"] = _judge_input

_RM_R1_PROMPT = re.compile(
    r"\[Client Question\]\n(?P<q>.*?)\n\n\[The Start of Chatbot A's Response\]\n(?P<a>.*?)\n"
    r"\[The End of Chatbot A's Response\]\n\n\[The Start of Chatbot B's Response\]\n(?P<b>.*?)\n"
    r"\[The End of Chatbot B's Response\]",
    re.S,
)


def _rm_r1(row: Mapping[str, Any], n: int, name: str, seed: int) -> PreferencePair:
    """RM-R1's own rows (`context_messages` + `winner`): the judge prompt's user message holds the question
    and both responses in RM-R1's single-turn template; winner model_a / model_b is the label (kept in its
    given order: their data alternates A/B); an assistant message last is the judge's trace, the pair's
    `metadata["target"]` (stage 1's SFT target)."""
    msgs = row.get("context_messages")
    if not isinstance(msgs, list) or not all(isinstance(m, Mapping) for m in msgs):
        raise FieldError("context_messages", "must be a list of {role, content} messages")
    users = [m.get("content") for m in msgs if m.get("role") == "user"]
    found = _RM_R1_PROMPT.search(users[-1]) if users and isinstance(users[-1], str) else None
    if found is None:
        raise FieldError(
            "context_messages",
            "needs a user message in RM-R1's single-turn template ([Client Question] ... "
            "[The End of Chatbot B's Response]); multi-turn rows are not read: convert them to canonical pairs",
        )
    winner = row.get("winner")
    if winner not in ("model_a", "model_b"):
        raise FieldError("winner", "must be model_a or model_b")
    trace = msgs[-1].get("content") if msgs[-1].get("role") == "assistant" else None
    q, a, b = found["q"], found["a"], found["b"]
    pid = str(row.get("id", _content_id(name, q, a, b)))
    meta = {"target": trace} if isinstance(trace, str) and trace.strip() else {}
    return PreferencePair(pid, (Message("user", q),), a, b, 1 if winner == "model_a" else 2, "rm-r1", "", meta)


FORMATS["rm-r1"] = _rm_r1
