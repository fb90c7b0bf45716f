"""Ray set-up shared by the jobs: join a cluster when one is given, else start an embedded one."""

from __future__ import annotations

import dataclasses
import logging
import os


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """Where the job runs and how its Ray Data actor pool is shaped."""

    address: str | None = None  # None: $RAY_ADDRESS (set by `ray job submit`) or a new embedded local Ray
    num_cpus: int | None = None  # logical CPUs of an embedded local Ray (None: all cores)
    actors: int = 1  # engine actors in the pool (each loads the model once)
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    batch_size: int = 8  # pairs per actor call (one engine call of batch_size x N sequences)
    threads_per_actor: int | None = None  # torch CPU threads in each actor (None: all cores of its node;
    # Ray would otherwise pin OMP_NUM_THREADS to the actor's CPU count, e.g. 1)


def set_threads(threads: int | None) -> None:
    """Inside an actor: use the configured CPU threads for torch (see RayConfig.threads_per_actor)."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)


def init_ray(cfg: RayConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = True
