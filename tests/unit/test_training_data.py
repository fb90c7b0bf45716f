"""The items a training run reads (reflectrm.training.data): the mix, RFT's items, the SFT warm start, the order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from reflectrm.data.items import write_items
from reflectrm.data.sources import DataConfig
from reflectrm.training.data import TrainingDataError, load_items

Item = lambda id, task: SimpleNamespace(id=id, task=task)  # noqa: E731


def test_train_on_an_empty_mix_says_the_file_is_empty(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "mix.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.string())}), path)
    with pytest.raises(TrainingDataError, match="is empty"):
        load_items("grpo", DataConfig(format="mix", path=str(path)), seed=0)


def test_rft_trains_on_the_mix_preference_items_only(tmp_path):
    from tests.helpers import write_toy_mix

    path = tmp_path / "mix.parquet"
    write_toy_mix(path, 6)
    grpo, _, _ = load_items("grpo", DataConfig(format="mix", path=str(path), held_out=0), seed=0)
    rft, _, notes = load_items("rft", DataConfig(format="mix", path=str(path), held_out=0), seed=0)
    assert {r.id for r in rft} == {r.id for r in grpo if r.task == "response"} and not notes
    pref = tmp_path / "pref.parquet"
    write_items([r for r in grpo if r.task == "response"], pref)
    _, _, notes = load_items("rft", DataConfig(format="mix", path=str(pref), held_out=0), seed=0)
    assert any("mix.parquet" in n for n in notes)


def test_synthetic_sft_rows_teach_both_tasks_4_to_1():
    from reflectrm.parsing import parse_output

    train, _, _ = load_items("sft", DataConfig(format="synthetic", path="20", held_out=0), seed=0)
    tasks = [r.task for r in train]
    assert tasks.count("critique") == 2 * 4 and tasks.count("response") == 2 * 16  # data.orders=both
    for r in train:
        parsed = parse_output(r.target, r.task)
        assert parsed.verdict == r.label  # every target is valid and right
        prompt = r.messages()[-1].content
        assert ("## Critiques for Judgment" in prompt) == (r.task == "critique")
    labels = [r.label for r in train if r.task == "critique"]
    assert set(labels) <= {1, 2}


def test_the_training_order_spreads_the_tasks_evenly():
    """The mix's ratio holds in every prefix of the training order (a short run, or one step of a long one,
    trains on both tasks as the mix says), each task in its own seeded random order."""
    from reflectrm.training.data import interleave

    rows = [Item(f"p{i}", "response") for i in range(16)] + [Item(f"c{i}", "critique") for i in range(4)]
    order = interleave(rows, seed=3)
    assert sorted(r.id for r in order) == sorted(r.id for r in rows)
    tasks = [r.task for r in order]
    for k in range(1, len(tasks) + 1):  # 4:1 -> after k rows, k/5 critique items, give or take one
        assert abs(tasks[:k].count("critique") - k / 5) <= 1, tasks
    assert "critique" in tasks[:5]  # the first five rows already hold one
    assert interleave(rows, seed=3) == order and [r.id for r in interleave(rows, seed=4)] != [r.id for r in order]
    only = [Item(str(i), "response") for i in range(5)]
    assert sorted(r.id for r in interleave(only, seed=0)) == [r.id for r in only]  # no critique items: RFT
