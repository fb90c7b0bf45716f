"""Ray set-up shared by the jobs: where Ray runs (RayConfig) and the shape of an engine actor pool (PoolConfig)."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """Where the job runs."""

    address: str | None = None  # None: $RAY_ADDRESS (set by `ray job submit`) or a new embedded local Ray
    num_cpus: int | None = None  # logical CPUs of an embedded local Ray (None: all cores)


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """A Ray Data actor pool whose actors each hold one engine (the model is loaded once per actor)."""

    actors: int = 1
    cpus: float = 1.0  # per actor; fractions let two pools share a 2-core machine
    gpus: float = 0.0  # per actor; e.g. 1 on a GPU cluster, 0.5 to pack two actors on a GPU
    batch_size: int = 8  # pairs per actor call (one engine call of batch_size x N sequences)
    threads: int | None = None  # torch CPU threads in each actor (None: all cores of its node;
    # Ray would otherwise pin OMP_NUM_THREADS to the actor's CPU count, e.g. 1)

    def __post_init__(self) -> None:
        if self.actors < 1 or self.batch_size < 1 or self.cpus < 0 or self.gpus < 0:
            raise ValueError(f"pool: actors and batch_size must be >= 1 and cpus/gpus >= 0, got {self}")

    def map_batches_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `Dataset.map_batches` for an actor class run on this pool."""
        import ray

        return {
            "batch_size": self.batch_size,
            "compute": ray.data.ActorPoolStrategy(size=self.actors),
            "num_cpus": self.cpus,
            "num_gpus": self.gpus,
        }


def rows_of(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A Ray Data batch (column -> values) as rows."""
    keys = list(batch)
    return [dict(zip(keys, values)) for values in zip(*(list(batch[k]) for k in keys))]


def batch_of(rows: list[dict[str, Any]]) -> dict[str, list]:
    """Rows as a Ray Data batch (column -> values)."""
    return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


def set_threads(threads: int | None) -> None:
    """Inside an actor: use the configured CPU threads for torch (see PoolConfig.threads)."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)


def quiet_workers() -> None:
    """Runs first in every worker of an embedded local Ray. Ray Train's placement-group cleaner asks the
    state API (served by the dashboard, which the embedded Ray does not start) once a second whether
    the training controller is alive, and logs a warning each time it cannot. That check only matters
    if the controller dies abruptly; a run that ends removes its placement group itself."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def init_ray(cfg: RayConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # No dashboard on the embedded Ray (2 cores); quiet_workers silences what needs one.
        ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env={"worker_process_setup_hook": quiet_workers})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = True
