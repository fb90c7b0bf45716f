"""Which order a training pair is shown in: position-balanced training data (`orders`).

    orient_pairs(pairs, "both", seed)     # every pair as given and swapped, side by side
    orient_pairs(pairs, "random", seed)   # a seeded coin per pair decides its order
    swapped_item(item)                    # a training item in the other order

A judge that answers by position earns a positive mean reward on data in one order whose labels lean
to one side. `both` shows every pair in both orders, so answering by position is right exactly half
the time. For a preference item the other order swaps the responses (its label flips); for a
reflection item it swaps the two critiques (their analyses name positions of the pair, so the pair
itself keeps its order). The swapped twin's id ends in TWIN.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Literal, Sequence, get_args

from reflectrm.data.items import TrainingItem
from reflectrm.records import PreferencePair
from reflectrm.seeds import derive_seed

Orders = Literal["given", "both", "random"]
ORDERS: tuple[str, ...] = get_args(Orders)
TWIN = "~swapped"


def check_orders(orders: str | None) -> None:
    if orders is not None and orders not in ORDERS:
        raise ValueError(f"data.orders={orders!r}: choose from {list(ORDERS)}")


def check_given(orders: str | None) -> None:
    """The score job judges each pair as given: its scores are keyed by the pair."""
    if orders not in (None, "given"):
        raise ValueError(
            f"data.orders={orders}: the score job judges each pair as given (its scores are keyed by the pair); "
            "to judge both orders, evaluate labelled data with jobs.evaluate (swap: true)"
        )


def flips(pair_id: str, seed: int) -> bool:
    """The seeded coin of `random`: True = show this pair swapped."""
    return random.Random(derive_seed(seed, pair_id, "order")).random() < 0.5


def swapped_pair(pair: PreferencePair) -> PreferencePair:
    return dataclasses.replace(pair.swapped(), id=pair.id + TWIN)


def orient_pairs(pairs: Sequence[PreferencePair], orders: str, seed: int) -> list[PreferencePair]:
    """The pairs in the orders asked for: `both` puts each pair's swapped twin right after it."""
    check_orders(orders)
    if orders == "given":
        return list(pairs)
    if orders == "random":
        return [p.swapped() if flips(p.id, seed) else p for p in pairs]
    return [q for p in pairs for q in (p, swapped_pair(p))]


def swapped_item(item: TrainingItem) -> TrainingItem:
    """The item in the other order: a preference item's responses, or a reflection item's critiques, swapped.
    An item with a fixed SFT target cannot be swapped (its text names positions): a ValueError says so."""
    if item.target is not None:
        raise ValueError(
            f"training item {item.id} has a fixed target text, which names positions: it cannot be swapped"
        )
    twin = item.id.removesuffix(TWIN) if item.id.endswith(TWIN) else item.id + TWIN
    if item.critiques is None:
        return dataclasses.replace(item, id=twin, pair=item.pair.swapped(), label=3 - item.label)
    c1, c2 = item.critiques
    return dataclasses.replace(item, id=twin, critiques=(c2, c1), label=3 - item.label)


def orient_items(items: Sequence[TrainingItem], orders: str, seed: int) -> list[TrainingItem]:
    """Training items in the orders asked for. Items already in both orders (an item and its TWIN, as
    build_data writes under `both`) are kept as they are; `random` flips the rest by a seeded coin per
    item; `both` adds each missing twin right after its item. Items with a fixed target stay as given."""
    check_orders(orders)
    if orders == "given":
        return list(items)
    ids = {it.id for it in items}
    out: list[TrainingItem] = []
    for it in items:
        base = it.id.removesuffix(TWIN)
        paired = it.target is not None or (it.id + TWIN in ids) or (it.id.endswith(TWIN) and base in ids)
        if paired:
            out.append(it)
        elif orders == "random":
            out.append(swapped_item(it) if flips(it.id, seed) else it)
        else:
            out += [it, swapped_item(it)]
    return out
