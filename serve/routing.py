"""Prefix affinity: a pair's requests go to the same engine replica, so its stage-2 prompts (which
begin with the pair) and a repeated pair find their prefix in that replica's KV cache.

The ingress passes `affinity=<hash of the pair>` with each engine call; this Serve request router
ranks the replicas by rendezvous hashing on it (highest-random-weight: the same key picks the same
replica while it lives, and only the keys of a replica that goes away move). The first-ranked
replica is used unless it is full (max_ongoing_requests); then the next one. A call without a key is
routed to the least loaded replica, as Serve's default does.

    deployments: [{name: Stage1, request_router_config: {request_router_class: serve.routing:PairAffinityRouter}}]

(build_app sets it on both engine deployments.)
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from typing import Any, Sequence

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica

ROUTER = "serve.routing:PairAffinityRouter"
# The pair an ingress task is judging: its engine calls (both stages) carry it as `affinity`.
AFFINITY_KEY: contextvars.ContextVar[str] = contextvars.ContextVar("reflectrm_pair_key", default="")


def affinity_key(pair: Any) -> str:
    """The routing key of a PreferencePair: its conversation and its two responses, in either order."""
    parts = [[m.to_dict() for m in pair.context], sorted((pair.response_1, pair.response_2))]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def affinity_order(key: str, replica_ids: Sequence[str]) -> list[str]:
    """The replicas in the order `key` prefers them (rendezvous hashing): stable per key, spread over keys."""
    return sorted(replica_ids, key=lambda r: hashlib.sha256(f"{key}\0{r}".encode()).digest(), reverse=True)


class PairAffinityRouter(FIFOMixin, RequestRouter):
    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        key: Any = pending_request.kwargs.get("affinity") if pending_request is not None else None
        if not key or len(candidate_replicas) < 2:
            return [candidate_replicas]
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        return [[by_id[i]] for i in affinity_order(str(key), list(by_id))]
