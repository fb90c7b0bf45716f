"""Position-balanced training data (reflectrm.data.orders, data.orders): given, both, random."""

from __future__ import annotations

import pytest

from reflectrm.data.orders import TWIN, orient_pairs, swapped_item
from reflectrm.data.sources import DataConfig
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.training.data import TrainingDataError, check_step_orders, checkable_mix, load_items
from reflectrm.training.session import LocalSession


def test_both_puts_every_pair_in_both_orders_in_the_same_step(tmp_path):
    from reflectrm.data.items import write_items

    mix = tmp_path / "mix.parquet"
    write_items(checkable_mix(24), mix)  # 24 preference + 24 reflection items, in one order
    train, _, _ = load_items("grpo", DataConfig(format="mix", path=str(mix), orders="both"), seed=0)
    assert len(train) == 96
    ids = {r.id for r in train}
    assert all((r.id + TWIN in ids) != r.id.endswith(TWIN) for r in train)  # each item has its twin
    by_id = {r.id: r for r in train}
    for r in train:
        if not r.id.endswith(TWIN):
            t = by_id[r.id + TWIN]
            assert t.label == 3 - r.label
            if r.task == "response":  # the responses swap
                assert (t.pair.response_1, t.pair.response_2) == (r.pair.response_2, r.pair.response_1)
            else:  # the critiques swap; their pair keeps the order their analyses name
                assert t.critiques == r.critiques[::-1] and t.pair == r.pair
    for batch in LocalSession(train, 4, tmp_path).batches(0):  # every step holds an item and its twin
        units = [r.id.removesuffix(TWIN) for r in batch]
        assert all(units.count(u) == 2 for u in units)
    labels = [r.label for r in train]
    assert labels.count(1) == labels.count(2)  # a position-constant policy is right half the time


def test_random_balances_the_labels_with_a_seeded_coin():
    pairs = synthetic_pairs(1000, seed=5)
    flipped = orient_pairs(pairs, "random", seed=0)
    share = sum(p.label == 1 for p in flipped) / len(flipped)
    assert abs(share - 0.5) < 0.05  # a fair coin: the 99.9% band of Bin(1000, .5) is +-0.052
    assert [p.label for p in orient_pairs(pairs, "random", seed=0)] == [p.label for p in flipped]  # seeded
    assert orient_pairs(pairs, "given", seed=0) == pairs
    both = orient_pairs(pairs[:3], "both", seed=0)
    assert [p.id for p in both[:4]] == [pairs[0].id, pairs[0].id + TWIN, pairs[1].id, pairs[1].id + TWIN]


def test_orders_errors_name_the_fix():
    with pytest.raises(ValueError, match="choose from"):
        DataConfig(orders="shuffled")
    with pytest.raises(TrainingDataError, match="must be even"):
        check_step_orders("grpo", DataConfig(), 3)
    check_step_orders("grpo", DataConfig(orders="random"), 3)
    check_step_orders("sft", DataConfig(), 3)
    item = load_items("sft", DataConfig(format="synthetic", path="4"), seed=0)[0][0]
    with pytest.raises(ValueError, match="fixed target"):
        swapped_item(item)


def test_sft_targets_are_label_balanced_under_both():
    train, _, _ = load_items("sft", DataConfig(format="synthetic", path="32"), seed=0)
    assert len(train) == 64
    assert sum(r.label == 1 for r in train) == 32
    assert all(f"Response {r.label} is better" in r.target or r.task == "critique" for r in train)
