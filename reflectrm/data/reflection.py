"""Building ReflectRM's training mix (method.md §2), as pure steps the build_data job distributes.

1. `sample_and_grade`: the model samples N judgments per pair (temperature 1.0); each is graded
   against the gold label. One row per pair comes out (the per-batch work of a Ray Data actor).
2. `PartStore`: those rows are written as Parquet parts, atomically, as they arrive; a re-run
   reads the ids already written and skips them, so a crash loses at most one batch of work.
3. `build_sets`: drop easy items (all N correct); the preference set is the rest; the reflection
   set has ONE (correct, wrong) analysis pair per item with mixed outcomes, in random order;
   mix the two at the configured ratio (default 4:1).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from reflectrm.config import JudgeConfig, PromptConfig
from reflectrm.data.loaders import load_pairs, pair_from_row, pair_to_row
from reflectrm.engines.base import Engine, generate_each
from reflectrm.inference import Steps, derive_seed, to_judgment
from reflectrm.prompts import reflection_prompt, response_prompt
from reflectrm.records import Message, PreferencePair

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
                "pair": json.dumps(pair_to_row(pair)),
                "judgments": json.dumps(graded),
                "n_correct": sum(g["correct"] for g in graded),
                "n_valid": sum(g["valid"] for g in graded),
                "n": len(graded),
                "completion_tokens": sum(g["tokens"] for g in graded),
                "prompt_tokens": gen.prompt_tokens if gen is not None else 0,
                "too_long": reasons[i] or "",
            }
        )
    return rows


# --------------------------------------------------------------------------- 2. resumable parts


class SettingsMismatch(ValueError):
    """A resume into a folder whose rows were made with other settings (it would mix them)."""


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}.{k}" if prefix else str(k))
    return out


class PartStore:
    """A folder of Parquet parts with one row per id; written atomically, read back deduplicated.

    `settings` (reflectrm.config.result_settings): what made the rows. The folder records them in
    settings.json with their fingerprint; a later store over the same folder with other settings
    raises SettingsMismatch naming what differs, unless `fresh` (then the old parts go)."""

    def __init__(self, folder: str | Path, settings: dict[str, Any] | None = None, fresh: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if settings is not None:
            self._check(json.loads(json.dumps(settings)), fresh)

    def _check(self, settings: dict[str, Any], fresh: bool) -> None:
        record = self.folder / "settings.json"
        parts = self.parts()
        if fresh:
            for p in parts:
                p.unlink()
        elif parts:
            old = json.loads(record.read_text())["settings"] if record.is_file() else None
            if old is None:
                raise SettingsMismatch(
                    f"{self.folder} holds results with no record of their settings (made by an older version), "
                    "so a resume could mix settings: add --fresh (fresh=true) to start afresh, or choose another output"
                )
            was, now = _flat(old), _flat(settings)
            differ = [
                f"{k}: {was.get(k)!r} -> {now.get(k)!r}"
                for k in sorted(set(was) | set(now))
                if was.get(k) != now.get(k)
            ]
            if differ:
                raise SettingsMismatch(
                    f"{self.folder} holds {len(parts)} parts made with other settings ({'; '.join(differ)}); "
                    "resuming would mix them: add --fresh (fresh=true) to start afresh, or choose another output"
                )
        fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        record.write_text(json.dumps({"fingerprint": fingerprint, "settings": settings}, indent=2))

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet"))

    def done_ids(self) -> set[str]:
        import pyarrow.parquet as pq

        return {i for p in self.parts() for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()}

    def write(self, rows: list[dict[str, Any]]) -> Path | None:
        if not rows:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = f"part-{len(self.parts()):06d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.folder / f".{name}.tmp"
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, self.folder / name)  # a part is either whole or absent
        return self.folder / name

    def read_all(self) -> list[dict[str, Any]]:
        """Every row once (first part wins), in id order, so the result never depends on timing."""
        import pyarrow.parquet as pq

        seen: dict[str, dict[str, Any]] = {}
        for p in self.parts():
            for row in pq.read_table(p).to_pylist():
                seen.setdefault(row["id"], row)
        return [seen[k] for k in sorted(seen)]


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


def preference_row(pair_row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"pref:{pair_row['id']}",
        "task": "response",
        "label": pair_row["label"],
        "pair": json.dumps(pair_row),
        "critique_1": None,
        "critique_2": None,
    }


def build_sets(
    rows: Iterable[dict[str, Any]], ratio: str = "4:1", seed: int = 0
) -> tuple[list[dict], list[dict], list[dict], BuildCounts]:
    """(preference rows, reflection rows, mixed rows, counts) from graded rows (see sample_and_grade)."""
    a, b = parse_ratio(ratio)
    counts = BuildCounts()
    pref, refl = [], []
    for row in rows:
        counts.items += 1
        if row.get("too_long"):  # never sampled: its judge or reflection prompt is over the token limit
            counts.too_long += 1
            continue
        graded = json.loads(row["judgments"])
        counts.judgments += len(graded)
        counts.invalid_judgments += sum(not g["valid"] for g in graded)
        if all(g["correct"] for g in graded):
            counts.easy_dropped += 1
            continue
        pair_row = json.loads(row["pair"])
        pref.append(preference_row(pair_row))
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
            refl.append(
                {
                    "id": f"refl:{row['id']}",
                    "task": "critique",
                    "label": 1 if good_first else 2,
                    "pair": json.dumps(pair_row),
                    "critique_1": json.dumps({"analysis": c1["analysis"], "verdict": c1["verdict"]}),
                    "critique_2": json.dumps({"analysis": c2["analysis"], "verdict": c2["verdict"]}),
                }
            )
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


def training_messages(row: dict[str, Any], prompt_cfg: PromptConfig = PromptConfig()) -> tuple[Message, ...]:
    """The prompt of one mixed row, rendered by THE templates (the same as at inference)."""
    pair_row = json.loads(row["pair"]) if isinstance(row["pair"], str) else row["pair"]
    pair = pair_from_row(pair_row)
    if row["task"] == "response":
        return response_prompt(pair, prompt_cfg)
    c1, c2 = (json.loads(row[k]) for k in ("critique_1", "critique_2"))
    return reflection_prompt(pair, (c1["analysis"], c1["verdict"]), (c2["analysis"], c2["verdict"]), prompt_cfg)


def load_source(
    fmt: str, path: str, limit: int | None, on_bad_row: str, seed: int
) -> tuple[list[PreferencePair], dict[str, Any]]:
    """A job's input pairs: a loader format and path, or `synthetic` with `path` = the number of pairs."""
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
    pairs, stats = load_pairs(fmt, path, on_bad_row=on_bad_row, limit=limit, seed=seed)  # type: ignore[arg-type]
    return pairs, stats.to_dict()
