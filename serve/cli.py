"""The `reflectrm` console script: the library's commands (reflectrm/cli.py) plus `reflectrm serve`,
the Serve app on a local Ray for one-line use (a cluster uses serve/config.yaml). The app layer
imports the library here, never the other way round.

    reflectrm serve model=smollm2-135m-instruct [judge.n=8 model.engine=vllm ...] [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import time
from typing import Any, Sequence

from reflectrm import cli as library_cli
from reflectrm.config import ConfigError, load_config


def main(argv: Sequence[str] | None = None) -> int:
    parser, sub = library_cli.build_parser()
    s = sub.add_parser("serve", help="the HTTP judge service on a local Ray (serve/app.py); Ctrl-C stops it")
    s.add_argument(
        "overrides",
        nargs="*",
        help="the app's args as dotted settings (serve/schemas.py ServeArgs), e.g. model=tiny-random judge.n=4",
    )
    s.add_argument("--config", help="a YAML file of the app's args (the `args:` of serve/config.yaml)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    s.add_argument("--port", type=library_cli._positive_int, default=8000)  # noqa: SLF001 (one parser, one int check)
    s.add_argument("--num-cpus", type=library_cli._positive_int, default=None, help="logical CPUs of the local Ray")
    deadline = "past it a judgment answers 504 and /get_reward gives the rest 0.5 with a timeout flag (default 150)"
    s.add_argument("--request-deadline-s", type=float, default=None, help=deadline)
    s.add_argument("--batching", choices=("auto", "static", "continuous"), default=None, help="(default auto)")
    args = parser.parse_args(argv)
    if args.command != "serve":
        return library_cli.run(args)
    from serve.schemas import ServeArgs

    try:
        flags = [
            f"{k}={v}"
            for k, v in (("request_deadline_s", args.request_deadline_s), ("batching", args.batching))
            if v is not None
        ]
        app_args = load_config(
            ServeArgs, args.config, [*args.overrides, *flags]
        )  # bad settings fail here, before Ray starts
    except ConfigError as err:
        print(f"reflectrm serve: error: {err}", file=sys.stderr)
        return 2
    run(app_args, args.host, args.port, args.num_cpus)
    return 0


def run(app_args: Any, host: str = "127.0.0.1", port: int = 8000, num_cpus: int | None = None) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-user Ray
    import ray
    from ray import serve

    from serve.app import build_app

    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(dataclasses.asdict(app_args)), name="reflectrm", route_prefix="/")
    auth = (
        f" (bearer token required: ${app_args.auth_token_env} is set)"
        if os.environ.get(app_args.auth_token_env)
        else ""
    )
    print(
        f"reflectrm judge on http://{host}:{port}  model={app_args.model.name}{auth}\n"
        "  POST /v1/judge  /get_reward  /v1/chat/completions   GET /healthz  /docs\nCtrl-C stops it.",
        flush=True,
    )
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


if __name__ == "__main__":
    raise SystemExit(main())
