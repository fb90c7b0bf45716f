"""The training item: one typed record of what a training run reads (method.md §2), and its Arrow row.

    TrainingItem.preference(pair)                       "which response is better?" (label: the pair's)
    TrainingItem.reflection(pair, first, second, label) "which of these two analyses is more reliable?"
    item.with_target(text)                              the same item with the judgment SFT learns

A row is plain nested values (`to_row`): the pair and the critiques are Arrow struct columns, never JSON
text, so Parquet files and Ray Data blocks carry them typed and a worker decodes each item once, when it
reads its batch (`from_row`). `item_schema()` is the one schema of every training-item table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from reflectrm.config import PromptConfig
from reflectrm.data.codec import pair_from_row, pair_to_row, pair_type
from reflectrm.data.files import write_rows
from reflectrm.methods import JudgeMethod, method_for
from reflectrm.prompts import Task, reflection_prompt
from reflectrm.records import Message, PreferencePair

COLUMNS = ("id", "task", "label", "pair", "critique_1", "critique_2", "target")


class ItemRowError(ValueError):
    """A row that is not a training item; the message names the row and the fix."""


@dataclass(frozen=True)
class Critique:
    """One analysis of a pair with the verdict it reached (a reflection item shows two)."""

    analysis: str
    verdict: int


@dataclass(frozen=True)
class TrainingItem:
    id: str
    # "response": judge the pair; "critique": pick the more reliable of two critiques; "critic" (Critic-RM): a
    # critique of each response with its 1-10 score (Critique.verdict holds the score), label = the better one
    task: Task | Literal["critic"]
    label: int  # the gold answer: the better response (1 or 2), or the more reliable critique
    pair: PreferencePair
    critiques: tuple[Critique, Critique] | None = None  # reflection items only
    target: str | None = None  # SFT: the judgment to learn

    def __post_init__(self) -> None:
        if self.label not in (1, 2):
            raise ValueError(f"training item {self.id}: label must be 1 or 2, got {self.label!r}")
        needs = self.task in ("critique", "critic")
        if needs != (self.critiques is not None):
            raise ValueError(f"training item {self.id}: a {self.task} item {'needs' if needs else 'has no'} critiques")

    @classmethod
    def preference(cls, pair: PreferencePair) -> TrainingItem:
        if pair.label not in (1, 2):
            raise ValueError(f"pair {pair.id} has no gold label: a training item needs one (1 or 2)")
        return cls(f"pref:{pair.id}", "response", int(pair.label), pair)

    @classmethod
    def reflection(cls, pair: PreferencePair, first: Critique, second: Critique, label: int) -> TrainingItem:
        """`label`: which critique (1 = first) is the reliable one."""
        return cls(f"refl:{pair.id}", "critique", label, pair, (first, second))

    @classmethod
    def critic(cls, pair: PreferencePair, first: Critique, second: Critique) -> TrainingItem:
        """Critic-RM: `first` critiques response 1 and `second` response 2 (each with its 1-10 score)."""
        if pair.label not in (1, 2):
            raise ValueError(f"pair {pair.id} has no gold label: a critic item needs one (1 or 2)")
        return cls(f"critic:{pair.id}", "critic", int(pair.label), pair, (first, second))

    def with_target(self, target: str) -> TrainingItem:
        return dataclasses.replace(self, target=target)

    def messages(
        self, prompt_cfg: PromptConfig = PromptConfig(), method: JudgeMethod | None = None
    ) -> tuple[Message, ...]:
        """The item's prompt, rendered by the judge method's templates (the same as at inference; ReflectRM's
        by default). A reflection item exists for ReflectRM only."""
        if self.critiques is None:
            return (method or method_for("reflectrm")).prompt(self.pair, prompt_cfg)
        if self.task == "critic":
            raise ValueError(f"training item {self.id} is a Critic-RM item: its two prompts are critique_prompt's")
        if method is not None and not method.reflection:
            raise ValueError(
                f"training item {self.id} is a reflection item, which judge method {method.name} has no task for: "
                "train it on preference items (pairs), or with method reflectrm"
            )
        c1, c2 = self.critiques
        return reflection_prompt(self.pair, (c1.analysis, c1.verdict), (c2.analysis, c2.verdict), prompt_cfg)

    def to_row(self) -> dict[str, Any]:
        c1, c2 = (dataclasses.asdict(c) for c in self.critiques) if self.critiques else (None, None)
        return {
            "id": self.id,
            "task": self.task,
            "label": self.label,
            "pair": pair_to_row(self.pair),
            "critique_1": c1,
            "critique_2": c2,
            "target": self.target,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TrainingItem:
        missing = [c for c in ("id", "task", "label", "pair") if c not in row]
        if missing:
            raise ItemRowError(f"not a training item (missing {missing}); jobs.build_data writes mix.parquet")
        if not isinstance(row["pair"], Mapping):
            raise ItemRowError(
                f"item {row['id']}: its pair is {type(row['pair']).__name__}, not a struct (a file written by an "
                "older version, with JSON text columns): rebuild it with `python -m jobs.build_data`"
            )
        c1, c2 = row.get("critique_1"), row.get("critique_2")
        critiques = None
        if c1 is not None and c2 is not None:
            critiques = (Critique(c1["analysis"], int(c1["verdict"])), Critique(c2["analysis"], int(c2["verdict"])))
        return cls(
            str(row["id"]),
            row["task"],
            int(row["label"]),
            pair_from_row(row["pair"]),
            critiques,
            row.get("target"),
        )


def item_schema() -> Any:
    import pyarrow as pa

    critique = pa.struct([("analysis", pa.string()), ("verdict", pa.int64())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("task", pa.string()),
            ("label", pa.int64()),
            ("pair", pair_type()),
            ("critique_1", critique),
            ("critique_2", critique),
            ("target", pa.string()),
        ]
    )


def items_table(items: Iterable[TrainingItem]) -> Any:
    """Items as one Arrow table of `item_schema()` (what Parquet files and Ray Data datasets hold)."""
    import pyarrow as pa

    return pa.Table.from_pylist([i.to_row() for i in items], schema=item_schema())


def write_items(items: Iterable[TrainingItem], path: str | Path) -> None:
    """Items to Parquet (`item_schema()`), written atomically."""
    if Path(path).suffix != ".parquet":
        raise ValueError(f"{path}: training items are written as .parquet")
    write_rows([], path, table=items_table(items))


def read_items(path: str | Path) -> list[TrainingItem]:
    import pyarrow.parquet as pq

    return [TrainingItem.from_row(r) for r in pq.read_table(path).to_pylist()]
