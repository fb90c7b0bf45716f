"""`reflectrm serve`: the Serve app on a local Ray for one-line use (a cluster uses serve/config.yaml)."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any


def run(model: str, host: str = "127.0.0.1", port: int = 8000, num_cpus: int | None = None, **args: Any) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-user Ray
    import ray
    from ray import serve

    from serve.app import AppArgs, build_app

    app_args = AppArgs(model=model, **args)  # bad flags fail here, before Ray starts
    app_args.model_cfg()
    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(app_args.model_dump()), name="reflectrm", route_prefix="/")
    auth = f" (bearer token required: ${app_args.auth_token_env} is set)" if os.environ.get(app_args.auth_token_env) else ""
    print(f"reflectrm judge on http://{host}:{port}  model={model}{auth}\n  POST /v1/judge  /get_reward  /v1/chat/completions   GET /healthz  /docs\nCtrl-C stops it.", flush=True)
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # explicitly: a shell's background job starts with SIGINT ignored
    while not stop:
        time.sleep(0.5)
    print("stopping ...", flush=True)
    serve.shutdown()
    ray.shutdown()
