"""All the collectives of a training run, in one place: the loss and step code calls these and never sees
ranks (style.md §8). Each is a no-op in one process, so the same code runs without a process group."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_sum(values: list[float]) -> list[float]:
    """Sums of each value over all ranks (a no-op in one process)."""
    t = torch.tensor(values, dtype=torch.float64)
    if world()[1] > 1:
        dist.all_reduce(t)
    return t.tolist()


def all_max(value: int) -> int:
    """The largest of `value` over all ranks (a no-op in one process)."""
    t = torch.tensor([value], dtype=torch.int64)
    if world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_sum_named(values: dict[str, float]) -> dict[str, float]:
    """`all_sum` by name: every rank passes the same keys (sorted here, so the order always agrees)."""
    keys = sorted(values)
    return dict(zip(keys, all_sum([float(values[k]) for k in keys])))


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if world()[1] > 1:
        dist.barrier()
