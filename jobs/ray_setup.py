"""Ray set-up shared by the jobs: where Ray runs (RayConfig), the shape of an engine actor pool
(PoolConfig), and where the logs go.

On the embedded local Ray the console shows only what the job prints (its config summary, one
progress bar per stage, its table). Everything the Ray workers print (Ray Data, Ray Train, vLLM's
start-up, C++ warnings) goes to OUTPUT/logs/workers.log, and Ray Data's driver log to
OUTPUT/logs/ray-data.log; `--verbose` (ray.verbose=true) shows them instead. On a cluster
(ray.address or $RAY_ADDRESS) nothing is redirected: `ray job logs` is where people look there.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

WORKER_LOG_ENV = "REFLECTRM_WORKER_LOG"  # set for the workers of an embedded Ray: where their output goes


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """Where the job runs."""

    address: str | None = None  # None: $RAY_ADDRESS (set by `ray job submit`) or a new embedded local Ray
    num_cpus: int | None = None  # logical CPUs of an embedded local Ray (None: all cores)
    verbose: bool = False  # show Ray's and vLLM's own logs on the console (else: OUTPUT/logs/); `--verbose`


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
            "batch_format": "pyarrow",  # typed columns in and out (rows_of; the library's Arrow tables)
            "compute": ray.data.ActorPoolStrategy(size=self.actors),
            "num_cpus": self.cpus,
            "num_gpus": self.gpus,
        }


def rows_of(batch: Any) -> list[dict[str, Any]]:
    """A Ray Data batch (an Arrow table, or column -> values) as rows of Python values."""
    if hasattr(batch, "to_pylist"):
        return batch.to_pylist()
    keys = list(batch)
    return [dict(zip(keys, values)) for values in zip(*(list(batch[k]) for k in keys))]


def dataset_of(table: Any, max_blocks: int = 200) -> Any:
    """A typed Arrow table as a Ray Data dataset of up to `max_blocks` blocks (as `from_items` splits rows),
    so an actor pool of several actors shares the work; the schema is the table's, in every block."""
    import ray

    size = max(1, -(-table.num_rows // max_blocks))
    return ray.data.from_arrow([table.slice(i, size) for i in range(0, table.num_rows, size)] or [table])


def set_threads(threads: int | None) -> None:
    """Inside an actor: use the configured CPU threads for torch (see PoolConfig.threads)."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)


def quiet_workers() -> None:
    """Runs first in every worker process of an embedded local Ray.

    - With $REFLECTRM_WORKER_LOG set, the process's stdout and stderr (file descriptors 1 and 2, so
      C++ logs and vLLM's engine-core subprocesses too) append to that file. Errors still reach the
      driver: Ray returns a task's exception with its traceback.
    - Ray Train's placement-group cleaner asks the state API (served by the dashboard, which the
      embedded Ray does not start) once a second whether the controller is alive and warns each
      time it cannot; that check only matters if the controller dies abruptly.
    """
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)
    path = os.environ.get(WORKER_LOG_ENV)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


def _route_driver_logs(log_dir: Path) -> None:
    """Ray Data's own driver log lines (execution plans, 'progress will be logged', ...) to a file."""
    handler = logging.FileHandler(log_dir / "ray-data.log")
    handler.setLevel(logging.INFO)  # Ray Data's logger runs at DEBUG: every scheduler loop otherwise
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("ray.data", "ray.train", "ray.tune"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if not isinstance(old, logging.FileHandler):
                logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False


def init_ray(cfg: RayConfig, output: Path | None = None) -> None:
    """Connect to the cluster, or start the embedded local Ray with its logs under `output`/logs."""
    import ray
    import ray.data  # its import configures the ray.data logger: route it only after that

    if not ray.is_initialized():
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            env_vars = {}
            if output is not None and not cfg.verbose:
                log_dir = Path(output).resolve() / "logs"
                log_dir.mkdir(parents=True, exist_ok=True)
                env_vars[WORKER_LOG_ENV] = str(log_dir / "workers.log")
                _route_driver_logs(log_dir)
            # No dashboard on the embedded Ray (2 cores); quiet_workers silences what needs one.
            ray.init(
                num_cpus=cfg.num_cpus,
                include_dashboard=False,
                logging_level=logging.WARNING,
                runtime_env={"worker_process_setup_hook": quiet_workers, "env_vars": env_vars},
            )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = cfg.verbose  # each job draws its own bar per stage (counts and ETA)
