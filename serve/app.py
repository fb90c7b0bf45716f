"""The ReflectRM judge on Ray Serve: two engine stages that scale apart, and an HTTP ingress.

    serve run serve/config.yaml                      # or: reflectrm serve model=tiny-random
    serve deploy serve/config.yaml                   # onto a running cluster

    Stage1   the rollouts: N judgments with log-probs, batched across concurrent requests (serve/engine.py)
    Stage2   the reflection calls: the same engine code, its own replicas and GPUs
             (args.separate_stages=false: Stage1 runs both, one model copy for a single GPU or CPU box)
    Ingress  FastAPI routes, auth and the library's pure steps between the stages (serve/ingress.py)

The args (serve/schemas.py ServeArgs) embed the library's ModelConfig, JudgeConfig and PromptConfig
and are checked whole here, so a bad config fails at deploy time, not when a replica starts. Every
response carries Serve's X-Request-ID header; client mistakes get a 4xx JSON error body.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any

from ray import serve

from serve.engine import EngineStage
from serve.ingress import Ingress
from serve.schemas import ServeArgs


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """`import_path: serve.app:build_app`."""
    cfg = ServeArgs.parse(args)
    plain = dataclasses.asdict(cfg)
    model = plain["model"]
    token = os.environ.get(cfg.auth_token_env)
    token_sha256 = (
        hashlib.sha256(token.encode()).hexdigest() if token else None
    )  # the token itself never leaves this process
    if not cfg.separate_stages:  # one deployment serves both stages (name Stage1 in the config's `deployments:`)
        both = EngineStage.options(name="Stage1").bind("both", model, plain["stage1"])
        return Ingress.bind(both, both, plain, token_sha256)
    stage1 = EngineStage.options(name="Stage1").bind("stage1", model, plain["stage1"])
    stage2 = EngineStage.options(name="Stage2").bind("stage2", model, plain["stage2"])
    return Ingress.bind(stage1, stage2, plain, token_sha256)
