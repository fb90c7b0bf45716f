"""One local Ray instance for all integration tests (each ray.init costs seconds; see environment.md), shut down
after the last of them: a driver left connected streams Ray's own log lines (a Serve controller's retries) into
the stdout of the tests that follow, such as `reflectrm judge --json`'s."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="package")
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


# The Serve app on tiny-random, as the HTTP tests deploy it (test_serve.py, test_clients.py).
SERVE_ARGS = {
    "model": {"name": "tiny-random", "max_prompt_tokens": 600},
    "judge": {"n": 3, "max_new_tokens": 8, "seed": 0},
    "max_n": 4,
    "max_new_tokens_cap": 64,
    "stage1": {"max_batch_size": 16, "threads": 1},
    "stage2": {"max_batch_size": 16, "threads": 1},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deploy(args: dict = SERVE_ARGS) -> None:
    """(Re)deploy the app: the same name and route, so the running proxy serves the new version."""
    from ray import serve

    from serve.app import build_app

    serve.run(build_app(args), name="reflectrm", route_prefix="/")


@contextlib.contextmanager
def variant(url: str, name: str, args: dict) -> Iterator[str]:
    """A second app with other args beside the module's (which stays as it is), under /NAME; deleted after.
    Each test that needs a variant gets its own, so no test depends on what an earlier one deployed."""
    from ray import serve

    from serve.app import build_app

    serve.run(build_app(args), name=name, route_prefix=f"/{name}")
    try:
        yield f"{url}/{name}"
    finally:
        serve.delete(name)  # its replicas give their CPUs back


def serve_app(ray_local):
    """A module fixture's body: Serve on a free port of 127.0.0.1 with the app; shut down after the module
    (replicas hold CPUs that the Ray job tests need on 2 cores)."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy()
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
