"""One local Ray instance for all integration tests (each ray.init costs seconds; see environment.md)."""

from __future__ import annotations

import logging
import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from jobs.ray_setup import quiet_workers

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"worker_process_setup_hook": quiet_workers},
    )  # as the jobs' embedded Ray does
    yield ray
    ray.shutdown()
