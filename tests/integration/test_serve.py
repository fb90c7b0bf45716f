"""The Serve app over real HTTP on tiny-random: every endpoint, the trainers' protocols, bad input, load, faults."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from reflectrm.models import load_tokenizer, render_chat, resolve_model
from reflectrm.records import Message
from tests.integration.conftest import SERVE_ARGS, deploy, serve_app

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
ARGS = SERVE_ARGS
JUDGE_FIELDS = {
    "id",
    "preferred",
    "mode",
    "score",
    "majority",
    "judgments",
    "anchor",
    "reflections",
    "stage2_skipped",
    "usage",
}
OK = {"prompt": "Say hi.", "response_1": "hi", "response_2": "HELLO THERE"}


@pytest.fixture(scope="module")
def url(ray_local):
    yield from serve_app(ray_local)


def post(url, path, body, **kw):
    return httpx.post(url + path, json=body, timeout=120, **kw)


# --------------------------------------------------------------------------- endpoints


def test_health_models_and_openapi(url):
    assert httpx.get(url + "/healthz").json() == {"status": "ok", "model": "tiny-random"}
    assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "tiny-random"
    paths = httpx.get(url + "/openapi.json").json()["paths"]
    assert {
        "/v1/judge", "/v1/rank", "/get_reward", "/v1/chat/completions", "/v1/completions", "/healthz", "/v1/models"
    } <= set(paths)  # fmt: skip


def test_judge_returns_the_cli_json_with_a_request_id(url):
    r = post(
        url,
        "/v1/judge",
        {**OK, "mode": "reflect", "n": 2, "max_new_tokens": 6, "seed": 7},
        headers={"X-Request-ID": "abc123"},
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc123"
    body = r.json()
    assert JUDGE_FIELDS <= set(body) and body["request_id"] == "abc123" and body["mode"] == "reflect"
    assert len(body["judgments"]) == 2 and all(j["completion_tokens"] <= 6 for j in body["judgments"])
    again = post(url, "/v1/judge", {**OK, "mode": "reflect", "n": 2, "max_new_tokens": 6, "seed": 7}).json()
    assert [j["text"] for j in again["judgments"]] == [j["text"] for j in body["judgments"]]  # seeded: reproducible
    greedy = post(url, "/v1/judge", {**OK, "mode": "greedy"}).json()
    assert len(greedy["judgments"]) == 1 and greedy["anchor"] is None and greedy["request_id"]


def test_judge_messages_and_swap(url):
    body = {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}],
        "response_1": "hi",
        "response_2": "bye",
        "mode": "majority",
        "swap": True,
    }
    out = post(url, "/v1/judge", body).json()
    assert JUDGE_FIELDS <= set(out["swapped"]) and isinstance(out["consistent"], bool)
    assert out["consistent"] == (out["preferred"] is not None and out["swapped"]["preferred"] == 3 - out["preferred"])


def openrlhf_query(prompt: str, response: str) -> tuple[str, str]:
    """What OpenRLHF 0.11 sends: the templated prompt, and prompt + response + end-of-turn token."""
    tok = load_tokenizer(resolve_model("tiny-random"))
    templated = render_chat(tok, (Message("user", prompt),))
    return templated, templated + response + tok.eos_token


def test_get_reward_openrlhf_protocol(url):
    prompt, query = openrlhf_query("What is 2 + 2?", "4")
    r = post(url, "/get_reward", {"query": [query], "prompts": [prompt], "labels": ["The answer is 4."]})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"rewards", "scores", "extra_logs"} and len(body["scores"]) == 1
    assert 0.0 <= body["scores"][0] <= 1.0 and body["rewards"][0] == pytest.approx(2 * body["scores"][0] - 1)
    assert all(isinstance(v, list) and len(v) == 1 for v in body["extra_logs"].values()) and body["extra_logs"][
        "no_reference"
    ] == [0.0]
    # several samples at once; labels as an object, missing, and a malformed sample: only those get 0.5 / 0.0 and a flag
    many = post(
        url,
        "/get_reward",
        {
            "query": [query, query, 42, query],
            "prompts": [prompt] * 4,
            "labels": [{"reference": "4"}, None, "4", {"other": 1}],
        },
    ).json()
    assert many["scores"][1:] == [0.5, 0.5, 0.5] and many["rewards"][1:] == [0.0, 0.0, 0.0]
    assert many["extra_logs"]["no_reference"] == [0.0, 1.0, 0.0, 1.0] and many["extra_logs"]["error"] == [
        0.0,
        0.0,
        1.0,
        0.0,
    ]
    assert post(url, "/get_reward", {"query": [], "prompts": [], "labels": []}).json() == {
        "rewards": [],
        "scores": [],
        "extra_logs": {},
    }


def test_get_reward_one_sample_per_request_many_at_once(url):
    prompt, query = openrlhf_query("Name a colour.", "Blue.")

    async def go():
        async with httpx.AsyncClient(timeout=120) as client:
            reqs = [
                client.post(url + "/get_reward", json={"query": [query], "prompts": [prompt], "labels": [f"Red {i}."]})
                for i in range(12)
            ]
            return await asyncio.gather(*reqs)

    responses = asyncio.run(go())
    assert [r.status_code for r in responses] == [200] * 12
    assert all(len(r.json()["rewards"]) == 1 for r in responses)


# --------------------------------------------------------------------------- bad input: 4xx with a JSON body, service alive

LONG = "word " * 2000
BAD = [
    ("judge", "not json", 400, "body"),
    ("judge", "[1, 2]", 422, "body"),
    ("judge", "null", 422, "body"),
    ("judge", {}, 422, "response_1"),
    ("judge", {"prompt": "q", "response_1": "a"}, 422, "response_2"),
    ("judge", {"response_1": "a", "response_2": "b"}, 422, "prompt"),
    ("judge", {**OK, "messages": [{"role": "user", "content": "q"}]}, 422, "prompt"),
    ("judge", {**OK, "prompt": ""}, 422, "prompt"),
    ("judge", {**OK, "prompt": "   "}, 422, "prompt"),
    ("judge", {**OK, "response_1": ""}, 422, "response_1"),
    ("judge", {**OK, "response_2": " "}, 422, "response_2"),
    ("judge", {**OK, "prompt": 5}, 422, "prompt"),
    ("judge", {**OK, "response_1": ["a"]}, 422, "response_1"),
    ("judge", {**OK, "mode": "best"}, 422, "mode"),
    ("judge", {**OK, "n": 0}, 422, "n"),
    ("judge", {**OK, "n": 99}, 422, "n"),
    ("judge", {**OK, "n": "4"}, 422, "n"),
    ("judge", {**OK, "n": 2.5}, 422, "n"),
    ("judge", {**OK, "max_new_tokens": 0}, 422, "max_new_tokens"),
    ("judge", {**OK, "max_new_tokens": 100000}, 422, "max_new_tokens"),
    ("judge", {**OK, "seed": "x"}, 422, "seed"),
    ("judge", {**OK, "swap": "yes"}, 422, "swap"),
    ("judge", {**OK, "extra": 1}, 422, "extra"),
    ("judge", {**OK, "prompt": LONG}, 413, "prompt"),
    ("judge", {"messages": [], "response_1": "a", "response_2": "b"}, 422, "messages"),
    ("judge", {"messages": [{"role": "user"}], "response_1": "a", "response_2": "b"}, 422, "messages.0.content"),
    (
        "judge",
        {"messages": [{"role": "robot", "content": "q"}], "response_1": "a", "response_2": "b"},
        422,
        "messages.0.role",
    ),
    (
        "judge",
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "response_1": "a",
            "response_2": "b",
        },
        422,
        "messages",
    ),
    (
        "judge",
        {
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            "response_1": "a",
            "response_2": "b",
        },
        422,
        "messages.0.content",
    ),
    ("reward", "{bad", 400, "body"),
    ("reward", {}, 422, "query"),
    ("reward", {"query": "text"}, 422, "query"),
    ("reward", {"query": ["a", "b"], "prompts": ["a"]}, 422, "prompts"),
    ("reward", {"query": ["a"], "labels": "x"}, 422, "labels"),
    ("reward", [1], 422, "body"),
    ("chat", {}, 422, "messages"),
    ("chat", {"messages": []}, 422, "messages"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, 422, "temperature"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "n": 50}, 422, "n"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 422, "max_tokens"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}, 422, "top_logprobs"),
    (
        "chat",
        {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 99},
        422,
        "top_logprobs",
    ),
    ("chat", {"messages": [{"role": "robot", "content": "hi"}]}, 422, "messages.0.role"),
    ("chat", {"messages": [{"role": "tool", "content": None}]}, 422, "messages.0.content"),
    ("chat", [], 422, "body"),
    ("completions", {}, 422, "prompt"),
    ("completions", {"prompt": []}, 422, "prompt"),
    ("completions", {"prompt": 7}, 422, "prompt"),
    ("completions", {"prompt": "hi", "echo": True, "logprobs": 1}, 422, "echo"),
    ("completions", {"prompt": "hi", "n": 9}, 422, "n"),
    ("completions", {"prompt": ["a", LONG]}, 413, "prompt.1"),
    ("rank", {"prompt": "q"}, 422, "responses"),
    ("rank", {"prompt": "q", "responses": ["only one"]}, 422, "responses"),
    ("rank", {"prompt": "q", "responses": ["a"] * 17}, 422, "responses"),
    ("rank", {"responses": ["a", "b"]}, 422, "prompt"),
    ("rank", {"prompt": "q", "responses": ["a", "b"], "scheme": "swiss"}, 422, "scheme"),
    ("rank", {"prompt": "q", "responses": ["a", "b"], "method": "elo"}, 422, "method"),
    ("rank", {"prompt": "q", "responses": ["a", 3]}, 422, "responses.1"),
    ("nowhere", {}, 404, "path"),
    ("chat", {"messages": [{"role": "user", "content": LONG}]}, 413, "messages"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, 422, "top_p"),
]
PATHS = {
    "judge": "/v1/judge",
    "reward": "/get_reward",
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "rank": "/v1/rank",
    "nowhere": "/v1/nowhere",
}


def test_bad_input_gets_4xx_json_naming_the_field_and_the_fix(url):
    assert len(BAD) >= 30
    failures = []
    for endpoint, body, status, field in BAD:
        content = body if isinstance(body, str) else json.dumps(body)
        r = httpx.post(url + PATHS[endpoint], content=content, headers={"Content-Type": "application/json"}, timeout=60)
        err = r.json().get("error", {}) if r.headers.get("content-type", "").startswith("application/json") else {}
        if (
            r.status_code != status
            or err.get("field") != field
            or not err.get("fix")
            or not err.get("message")
            or err.get("code") != status  # OpenAI's error shape too: message, type, param, code
            or not err.get("type")
            or err.get("param") != field
            or "request_id" not in r.json()
        ):
            failures.append((endpoint, str(body)[:60], r.status_code, r.text[:200]))
    assert failures == []
    too_long = httpx.post(url + "/v1/judge", json={**OK, "prompt": LONG}).json()["error"]
    assert too_long["limit"] == 600 and too_long["prompt_tokens"] > 600
    assert httpx.get(url + "/healthz").status_code == 200


# --------------------------------------------------------------------------- load and faults


def test_32_concurrent_requests_are_all_answered(url):
    async def go():
        async with httpx.AsyncClient(timeout=180) as client:
            return await asyncio.gather(
                *(client.post(url + "/v1/judge", json={**OK, "prompt": f"Say hi {i}."}) for i in range(32))
            )

    responses = asyncio.run(go())
    assert [r.status_code for r in responses] == [200] * 32
    assert len({r.json()["request_id"] for r in responses}) == 32


def test_a_killed_replica_is_replaced_and_later_requests_succeed(url, ray_local):
    import ray

    def stage1_replicas():
        return [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and "Stage1" in a["name"]
        ]

    victims = stage1_replicas()
    assert victims, "no Stage1 replica found"

    async def load():
        async with httpx.AsyncClient(timeout=180) as client:
            return await asyncio.gather(
                *(client.post(url + "/v1/judge", json={**OK, "prompt": f"Load {i}."}) for i in range(16)),
                return_exceptions=True,
            )

    async def kill_during_load():
        task = asyncio.create_task(load())
        await asyncio.sleep(0.5)
        ray.kill(ray.get_actor(victims[0], namespace="serve"), no_restart=True)
        return await task

    asyncio.run(kill_during_load())  # some of these may fail: the replica died under them
    deadline = time.time() + 180
    while time.time() < deadline:
        r = httpx.post(url + "/v1/judge", json=OK, timeout=60)
        if r.status_code == 200:
            break
        time.sleep(2)
    assert r.status_code == 200
    after = stage1_replicas()
    assert victims[0] not in after and after  # a new replica serves
    responses = [httpx.post(url + "/v1/judge", json=OK, timeout=60).status_code for _ in range(3)]
    assert responses == [200] * 3


def test_judge_stage2_field_lazy_gives_full_verdicts_over_http(url, ray_local):
    """`stage2` in a /v1/judge request, on tiny-judge (its sampled verdicts disagree, so stage 2 runs):
    lazy answers as full does with no more comparisons; a bad value is a 422 naming the field. It
    redeploys the app; the next test redeploys again."""
    from reflectrm.data.synthetic import synthetic_pairs

    deploy({**ARGS, "model": {"name": "tiny-judge", "max_prompt_tokens": 600}, "max_n": 8})
    bodies = [
        {"prompt": p.query, "response_1": p.response_1, "response_2": p.response_2} for p in synthetic_pairs(8, seed=21)
    ]
    common = {"mode": "reflect", "n": 6, "max_new_tokens": 64, "seed": 0}
    full = [post(url, "/v1/judge", {**b, **common, "stage2": "full"}).json() for b in bodies]
    lazy = [post(url, "/v1/judge", {**b, **common, "stage2": "lazy"}).json() for b in bodies]
    assert sum(bool(f["reflections"]) for f in full) >= 2, "stage 2 ran on too few pairs for the test to mean much"
    for f, lz in zip(full, lazy):
        assert (lz["preferred"], lz["score"], lz["anchor"]) == (f["preferred"], f["score"], f["anchor"])
        assert f["stage2_calls"] == len(f["reflections"]) and f["not_asked"] == []
        assert lz["stage2_calls"] == len(lz["reflections"]) <= f["stage2_calls"]
        assert {r["index"] for r in lz["reflections"]} | set(lz["not_asked"]) == {r["index"] for r in f["reflections"]}
    bad = post(url, "/v1/judge", {**bodies[0], "stage2": "eager"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "stage2"


def test_bearer_token_auth_and_reward_in_both_orders(url, ray_local, monkeypatch):
    """Last in the module (it leaves the app token-protected): redeploys with a token required and
    /get_reward judging both orders."""
    monkeypatch.setenv("REFLECTRM_API_TOKEN", "s3cret")
    deploy({**ARGS, "reward_both_orders": True})
    try:
        assert httpx.get(url + "/healthz").status_code == 200  # health stays open for load balancers
        r = post(url, "/v1/judge", OK)
        assert r.status_code == 401 and r.json()["error"]["field"] == "Authorization"
        assert post(url, "/v1/judge", OK, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert post(url, "/v1/judge", OK, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert post(url, "/get_reward", {"query": []}).status_code == 401
        prompt, query = openrlhf_query("What is 2 + 2?", "4")
        body = post(
            url,
            "/get_reward",
            {"query": [query, query], "prompts": [prompt] * 2, "labels": ["4", None]},
            headers={"Authorization": "Bearer s3cret"},
        ).json()
        assert (
            0.0 <= body["scores"][0] <= 1.0 and body["scores"][1] == 0.5 and body["extra_logs"]["error"] == [0.0, 0.0]
        )
    finally:
        monkeypatch.delenv("REFLECTRM_API_TOKEN")  # no redeploy: nothing after this test uses the app
