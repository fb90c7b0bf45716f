"""The ReflectRM judge on Ray Serve: two engine stages that scale apart, and an HTTP ingress.

    serve run serve/config.yaml                      # or: reflectrm serve model=tiny-random
    serve deploy serve/config.yaml                   # onto a running cluster

    Stage1   the rollouts: N judgments with log-probs; continuous batching on vLLM (each request joins the
             running batch on arrival), @serve.batch on HF (serve/engine.py); a pair's calls go to one
             replica (prefix affinity, serve/routing.py); bounded queues (503 + Retry-After when full)
    Stage2   the reflection calls: the same engine code, its own replicas and GPUs
             (args.separate_stages=false: Stage1 runs both, one model copy for a single GPU or CPU box)
    Ingress  FastAPI routes, auth and the library's pure steps between the stages (serve/ingress.py)
    Critic   judge.method=critic_rm: one deployment with the export and its reward head (serve/critic.py)
             in place of the stages; pointwise rewards on /get_reward, /v1/rank and /v1/judge

The args (serve/schemas.py ServeArgs) embed the library's ModelConfig, JudgeConfig and PromptConfig
and are parsed and checked whole here, once, so a bad config fails at deploy time, not when a replica
starts; the deployments are bound with the typed objects (as Ray's own LLM serving binds its configs). Every
response carries Serve's X-Request-ID header; client mistakes get a 4xx JSON error body.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from ray import serve

from reflectrm.critic_judge import needs_head
from serve.critic import CriticStage
from serve.engine import EngineStage
from serve.ingress import Ingress
from serve.routing import ROUTER
from serve.schemas import ServeArgs, StageArgs


def stage_options(name: str, continuous: bool, stage: StageArgs) -> dict[str, Any]:
    """An engine deployment's options (a config's `deployments:` entry overrides them): prefix affinity
    (serve/routing.py), a bounded queue (full: the ingress answers 503 + Retry-After), and room for vLLM's
    scheduler to batch continuously (static batching needs only max_batch_size ongoing)."""
    return {
        "name": name,
        "max_ongoing_requests": stage.max_ongoing_requests or (256 if continuous else 64),
        "max_queued_requests": stage.max_queued_requests,
        "request_router_config": {"request_router_class": ROUTER},
    }


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """`import_path: serve.app:build_app`."""
    from reflectrm.config import ConfigError
    from reflectrm.engines import resolve_engine

    cfg = ServeArgs.parse(args)
    token = os.environ.get(cfg.auth_token_env)
    token_sha256 = hashlib.sha256(token.encode()).hexdigest() if token else None  # the token never leaves here
    if needs_head(cfg.model.name, cfg.judge.method):  # Critic-RM: one deployment, the export and its head
        one = {"name": "Critic", "max_queued_requests": cfg.stage1.max_queued_requests}
        critic = CriticStage.options(**one).bind(cfg.model, cfg.judge, cfg.prompt, cfg.stage1.threads)
        return Ingress.bind(critic, critic, cfg, token_sha256)
    engine = resolve_engine(cfg.model.engine)
    if cfg.batching == "continuous" and engine != "vllm":
        raise ConfigError(
            f"batching=continuous needs the vLLM engine (model.engine resolves to {engine}): set model.engine=vllm "
            "with vllm installed, or batching=static"
        )
    continuous = engine == "vllm" and cfg.batching != "static"

    def stage(name: str, role: str, args: StageArgs) -> Any:
        return EngineStage.options(**stage_options(name, continuous, args)).bind(role, cfg.model, args, continuous)

    if not cfg.separate_stages:  # one deployment serves both stages (name Stage1 in the config's `deployments:`)
        both = stage("Stage1", "both", cfg.stage1)
        return Ingress.bind(both, both, cfg, token_sha256)
    return Ingress.bind(stage("Stage1", "stage1", cfg.stage1), stage("Stage2", "stage2", cfg.stage2), cfg, token_sha256)
