"""The service's policies as plain logic (no Ray cluster, no model): prefix affinity, the engine
deployments' options, the batching choice, text checks before tokenizing, the engine Protocol's
async method, and the args that bound queues and deadlines."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import pytest

from reflectrm.config import ConfigError
from reflectrm.engines import GenerationRequest, SamplingParams
from reflectrm.engines.fake import FakeEngine
from reflectrm.records import Message, PreferencePair
from serve.app import build_app, stage_options
from serve.http import ApiError, check_text
from serve.routing import ROUTER, affinity_key, affinity_order
from serve.schemas import ServeArgs, StageArgs


def test_affinity_is_stable_per_key_spread_over_keys_and_moves_only_a_lost_replicas_keys():
    replicas = [f"replica-{i}" for i in range(4)]
    keys = [f"pair-{i}" for i in range(2000)]
    first = {k: affinity_order(k, replicas)[0] for k in keys}
    assert first == {k: affinity_order(k, list(reversed(replicas)))[0] for k in keys}  # order of candidates: no matter
    share = Counter(first.values())
    assert set(share) == set(replicas) and min(share.values()) > 2000 / 4 * 0.8  # spread evenly
    survivors = replicas[1:]  # replica-0 goes away: only its keys move, each to its second choice
    after = {k: affinity_order(k, survivors)[0] for k in keys}
    moved = [k for k in keys if after[k] != first[k]]
    assert set(moved) == {k for k in keys if first[k] == "replica-0"}
    assert all(after[k] == affinity_order(k, replicas)[1] for k in moved)


def test_a_pair_has_one_key_in_either_order_and_another_pair_another():
    pair = PreferencePair("x", (Message("user", "Say hi."),), "hi", "HELLO")
    assert affinity_key(pair) == affinity_key(pair.swapped())
    assert affinity_key(pair) != affinity_key(PreferencePair("x", (Message("user", "Say hi!"),), "hi", "HELLO"))


def test_engine_deployments_route_by_affinity_with_bounded_queues():
    stage = StageArgs(max_ongoing_requests=None, max_queued_requests=7)
    assert stage_options("Stage1", True, stage) == {
        "name": "Stage1",
        "max_ongoing_requests": 256,  # room for vLLM's scheduler
        "max_queued_requests": 7,
        "request_router_config": {"request_router_class": ROUTER},
    }
    assert stage_options("Stage2", False, stage)["max_ongoing_requests"] == 64
    three = dataclasses.replace(stage, max_ongoing_requests=3)
    assert stage_options("Stage2", False, three)["max_ongoing_requests"] == 3


def test_continuous_batching_needs_vllm_and_bad_service_args_fail_at_build(monkeypatch):
    with pytest.raises(ConfigError, match="batching=continuous needs the vLLM engine"):
        build_app({"model": {"name": "tiny-random", "engine": "hf"}, "batching": "continuous"})
    with pytest.raises(ConfigError, match="request_deadline_s must be > 0"):
        ServeArgs.parse({"request_deadline_s": 0})
    with pytest.raises(ConfigError, match="max_queued_requests"):
        ServeArgs.parse({"stage1": {"max_queued_requests": 0}})
    with pytest.raises(ConfigError, match="batching"):
        ServeArgs.parse({"batching": "dynamic"})
    assert ServeArgs.parse({}).request_deadline_s == 150  # under OpenRLHF's 180 s client timeout


def test_text_is_checked_before_any_tokenizer_sees_it():
    check_text(["\u202e\U0001f600 combining\u0301 \u0000"], 10, "prompt")  # odd but valid Unicode
    with pytest.raises(ApiError) as err:
        check_text(["fine", "\ud800"], 10, "messages")
    assert err.value.status == 422 and err.value.field == "messages" and "surrogate" in err.value.message
    with pytest.raises(ApiError) as err:
        check_text(["a" * 641], 10, "prompt")  # more characters than 10 tokens could ever hold
    assert err.value.status == 413 and err.value.extra == {"prompt_chars": 641, "limit": 10}


def test_agenerate_is_the_protocols_async_path_with_the_same_answers():
    engine = FakeEngine(lambda request, i: f"<Result>Response {1 + i % 2} is better</Result>")
    request = GenerationRequest((Message("user", "x"),), SamplingParams(n=3, seed=1))

    async def both() -> list:
        return list(await asyncio.gather(engine.agenerate(request), engine.agenerate(request)))

    one, two = asyncio.run(both())
    assert one == two == engine.generate([request])[0] and len(one.completions) == 3


def test_the_router_ranks_replicas_by_the_calls_affinity_key():
    from types import SimpleNamespace

    from serve.routing import PairAffinityRouter

    router = PairAffinityRouter.__new__(PairAffinityRouter)  # choose_replicas uses no router state
    replicas = [SimpleNamespace(replica_id=SimpleNamespace(unique_id=f"r{i}")) for i in range(3)]

    def ranks(kwargs: dict) -> list:
        return asyncio.run(router.choose_replicas(replicas, SimpleNamespace(kwargs=kwargs)))

    ranked = ranks({"affinity": "pair-1"})
    assert [[r.replica_id.unique_id for r in rank] for rank in ranked] == [
        [i] for i in affinity_order("pair-1", ["r0", "r1", "r2"])
    ]
    assert ranks({"affinity": "pair-1"}) == ranked  # the same pair, the same replica first
    assert ranks({}) == [replicas]  # no key: one rank, Serve picks the least loaded
