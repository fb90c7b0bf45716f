"""The Serve app over real HTTP on tiny-random: every endpoint, the trainers' protocols, bad input, load, faults."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from reflectrm.models import load_tokenizer, render_chat, resolve_model
from reflectrm.records import Message
from tests.integration.conftest import SERVE_ARGS, serve_app, variant

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
ARGS = SERVE_ARGS
JUDGE_FIELDS = {
    "id",
    "preferred",
    "method",
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
    health = {"status": "ok", "model": "tiny-random", "method": "reflectrm", "pointwise": False}
    assert httpx.get(url + "/healthz").json() == health
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
    from ray import serve  # the counts behind the per-stage Prometheus gauges (HF: static batching)

    stats = serve.get_deployment_handle("Stage1", "reflectrm").metrics_now.remote().result()
    assert stats["batching"] == "static" and stats["generated_tokens"] > 0 and stats["queue"] == 0


ENDPOINTS = ("/v1/judge", "/v1/rank", "/get_reward", "/v1/chat/completions", "/v1/completions")
# Malformed or hostile bodies: every endpoint must answer 4xx with our JSON body, never 500 or {"detail"}.
FIELDS = (
    '"prompt":%s,"response_1":%s,"response_2":"b","responses":[%s,"b"],"messages":[{"role":"user","content":%s}],'
    '"query":[%s],"prompts":[%s],"labels":[%s]'
)
FUZZ = {
    "bytes that are not UTF-8": b"\xff\xfe\x00{",
    "a list nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "an object nested 50,000 deep": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "a 30 MB body": b'{"prompt": "' + b"a" * (30 * 2**20) + b'", "messages": [], "responses": []}',
    "an empty body": b"",
    "a JSON array": b"[1, 2]",
    "a JSON string": b'"x"',
    "JSON null": b"null",
    "lone surrogates": ("{" + FIELDS % (('"\\ud800"',) * 7) + "}").encode(),
    "NaN and infinity": b'{"prompt":"hi","response_1":"a","response_2":"b","n":NaN,"max_tokens":1e999,"temperature":NaN,'
    b'"responses":["a","b"],"messages":[{"role":"user","content":"x"}],"prompt_ids":NaN}',
    "wrong types everywhere": b'{"prompt":{"a":1},"response_1":[1],"response_2":null,"responses":"ab","messages":{"x":1},'
    b'"query":5,"prompts":{"x":1},"labels":7,"model":5,"stream":"yes"}',
    "numbers past 64 bits": b'{"prompt":"hi","response_1":"a","response_2":"b","n":100000000000000000000000000000,'
    b'"max_tokens":-1e30,"responses":["a","b"],"messages":[{"role":"user","content":"x"}],"query":"x"}',
    "content parts of the wrong shapes": b'{"messages":[{"role":"user","content":[{"type":"image_url"},{"text":5},7]}],'
    b'"response_1":"a","response_2":"b","responses":["a","b"],"prompt":[[[]]],"query":[[1]]}',
}


def test_fuzzed_bad_input_never_gets_a_500_or_the_framework_body(url):
    """Issue 18: bad input of every kind on every endpoint is a 4xx with our JSON error body. /get_reward
    scores each sample apart (OpenRLHF): a sample it cannot read gets the neutral score and `error`, in a 200."""
    wrong = []
    for name, body in FUZZ.items():
        for path in ENDPOINTS:
            try:
                r = httpx.post(url + path, content=body, headers={"Content-Type": "application/json"}, timeout=120)
            except httpx.HTTPError as err:
                wrong.append((name, path, type(err).__name__))
                continue
            try:
                got = r.json()
            except ValueError:
                got = {}
            ours = isinstance(got, dict) and {"message", "field", "fix"} <= set(got.get("error", {}))
            soft = path == "/get_reward" and r.status_code == 200 and set(got["extra_logs"]["error"]) == {1.0}
            if not ((400 <= r.status_code < 500 and ours) or soft):
                wrong.append((name, path, r.status_code, r.text[:160]))
    assert wrong == []
    odd_but_fine = {**OK, "prompt": "\u202e\U0001f600\u0301 \u0000 \u200b"}  # RTL, emoji, combining, NUL: valid text
    assert post(url, "/v1/judge", odd_but_fine).status_code == 200


def test_a_replica_process_killed_under_load_loses_no_request(url, ray_local):
    """Issue 18: SIGKILL a stage-1 replica's process during a burst. Every in-flight request gets an answer
    (200, retried once on the restarted replica, or a 5xx with our JSON body), none hangs, and the service
    answers again once Serve has replaced the replica."""
    import os
    import signal

    import ray

    def stage1_replicas():
        return [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and "Stage1" in a["name"]
        ]

    victims = stage1_replicas()
    assert victims, "no Stage1 replica found"
    pid = ray.get(ray.get_actor(victims[0], namespace="serve").__ray_call__.remote(lambda self: os.getpid()))

    async def load():
        async with httpx.AsyncClient(timeout=240) as client:
            return await asyncio.gather(
                *(client.post(url + "/v1/judge", json={**OK, "prompt": f"Load {i}."}) for i in range(16)),
                return_exceptions=True,
            )

    async def kill_during_load():
        task = asyncio.create_task(load())
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        return await task

    answers = asyncio.run(kill_during_load())
    hung = [type(a).__name__ for a in answers if isinstance(a, BaseException)]
    assert hung == []  # every request was answered within the client's timeout
    statuses = [a.status_code for a in answers]
    assert all(a.status_code == 200 or (a.status_code >= 500 and a.json()["error"]["fix"]) for a in answers), statuses
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


# --------------------------------------------------------------------------- app variants: one fixture each


@pytest.fixture
def deadline_url(url):
    with variant(url, "deadline", {**ARGS, "request_deadline_s": 0.01}) as u:
        yield u


@pytest.fixture
def short_deadline_url(url):
    args = {**ARGS, "request_deadline_s": 2.0, "max_n": 16, "max_new_tokens_cap": 1024}
    with variant(url, "short", args) as u:
        yield u


@pytest.fixture
def full_queue_url(url):
    stage1 = {**ARGS["stage1"], "max_ongoing_requests": 1, "max_queued_requests": 1}
    with variant(url, "full", {**ARGS, "max_concurrent_requests": 12, "stage1": stage1}) as u:
        yield u


@pytest.fixture
def tiny_judge_url(url):
    with variant(url, "judge", {**ARGS, "model": {"name": "tiny-judge", "max_prompt_tokens": 600}, "max_n": 8}) as u:
        yield u


@pytest.fixture
def rm_r1_url(url):
    judge = {**ARGS["judge"], "method": "rm_r1", "mode": "majority", "max_new_tokens": 48}
    with variant(
        url, "rm_r1", {**ARGS, "model": {"name": "tiny-judge", "max_prompt_tokens": 1024}, "judge": judge}
    ) as u:
        yield u


@pytest.fixture
def token_url(url, monkeypatch):
    monkeypatch.setenv("REFLECTRM_API_TOKEN", "s3cret")  # read where the app is built
    judge = {**ARGS["judge"], "max_new_tokens": 48}  # tiny-judge writes verdicts: the scores are not all 0.5
    args = {**ARGS, "model": {"name": "tiny-judge", "max_prompt_tokens": 600}, "judge": judge}
    with variant(url, "token", {**args, "reward_both_orders": True}) as u:
        yield u


def test_deadline_gives_504_on_judge_and_a_timeout_flag_on_get_reward(deadline_url):
    """request_deadline_s: a judgment past it is a 504 with our JSON body; /get_reward answers 200 with the
    neutral score and `timeout` for the samples it could not finish."""
    url = deadline_url
    r = post(url, "/v1/judge", OK)
    assert r.status_code == 504 and r.json()["error"]["field"] == "request_deadline_s", r.text
    assert r.json()["error"]["deadline_s"] == 0.01
    samples = {"query": ["Say hi.hi", "Say hi.yo"], "labels": ["hello", "hey"], "prompts": ["Say hi.", "Say hi."]}
    reward = post(url, "/get_reward", samples)
    assert reward.status_code == 200, reward.text
    assert reward.json()["scores"] == [0.5, 0.5] and reward.json()["extra_logs"]["timeout"] == [1.0, 1.0]
    chat = post(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 504, chat.text


def test_a_request_past_its_deadline_stops_costing_on_the_hf_engine(short_deadline_url):
    """The HF engine drops a timed-out request's rows from its running batch (HFEngine.cancel), so the next
    request is answered within its own deadline instead of waiting behind abandoned work."""
    url = short_deadline_url
    t0 = time.perf_counter()
    heavy = post(url, "/v1/judge", {**OK, "mode": "reflect", "n": 16, "max_new_tokens": 1024})
    assert heavy.status_code == 504, heavy.text
    waited = time.perf_counter() - t0
    light = post(url, "/v1/judge", {**OK, "mode": "greedy", "max_new_tokens": 1})
    assert light.status_code == 200, f"{light.status_code} after a 504 at {waited:.1f} s: {light.text}"


def test_full_queues_answer_503_with_retry_after(full_queue_url):
    """Back-pressure: a stage whose bounded queue is full (Serve's max_queued_requests) and an ingress over
    max_concurrent_requests both answer 503 + Retry-After with our JSON body; the rest are served."""
    url = full_queue_url

    async def burst():
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(
                *(client.post(url + "/v1/judge", json={**OK, "prompt": f"Burst {i}."}) for i in range(24))
            )

    answers = asyncio.run(burst())
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    refused = [r for r in answers if r.status_code == 503]
    assert all(int(r.headers["retry-after"]) >= 1 and r.json()["error"]["fix"] for r in refused)


def test_judge_stage2_field_lazy_gives_full_verdicts_over_http(tiny_judge_url):
    """`stage2` in a /v1/judge request, on tiny-judge (its sampled verdicts disagree, so stage 2 runs):
    lazy answers as full does with no more comparisons; a bad value is a 422 naming the field."""
    from reflectrm.data.synthetic import synthetic_pairs

    url = tiny_judge_url
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


def test_bearer_token_auth_and_reward_in_both_orders(token_url, url):
    """A token-protected app whose /get_reward judges both orders: 401 without the token; with it, the reward
    of (response, reference) is reflectrm.rewards' both-orders score of the two judgments, which /v1/judge
    with swap=true returns on the same seeds."""
    from reflectrm.rewards import both_orders_score

    auth = {"Authorization": "Bearer s3cret"}
    assert httpx.get(token_url + "/healthz").status_code == 200  # health stays open for load balancers
    r = post(token_url, "/v1/judge", OK)
    assert r.status_code == 401 and r.json()["error"]["field"] == "Authorization"
    assert post(token_url, "/v1/judge", OK, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert post(token_url, "/v1/judge", OK, headers=auth).status_code == 200
    assert post(token_url, "/get_reward", {"query": []}).status_code == 401
    assert post(url, "/v1/judge", OK).status_code == 200  # the module's own app is untouched
    prompt, query = openrlhf_query("What is 2 + 2?", "4")
    samples = {"query": [query, query], "prompts": [prompt] * 2, "labels": ["5", None]}
    body = post(token_url, "/get_reward", samples, headers=auth).json()
    assert body["scores"][1] == 0.5 and body["extra_logs"]["error"] == [0.0, 0.0]
    pair = {"prompt": "What is 2 + 2?", "response_1": "4", "response_2": "5", "mode": "reflect", "swap": True}
    both = post(token_url, "/v1/judge", pair, headers=auth).json()
    assert body["scores"][0] == pytest.approx(both_orders_score(both["score"], both["swapped"]["score"]))


def test_rm_r1_is_served_on_judge_and_get_reward(rm_r1_url):
    """judge.method=rm_r1: /v1/judge answers in RM-R1's terms (its parser's errors, no stage 2) with the
    server's mode by default, refuses reflect with a 422 naming the field, and /get_reward scores a reference."""
    url = rm_r1_url
    r = post(url, "/v1/judge", {**OK, "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "rm_r1" and body["mode"] == "majority" and len(body["judgments"]) == 2
    assert body["reflections"] == [] and all(j["valid"] or "answer" in j["error"] for j in body["judgments"])
    refused = post(url, "/v1/judge", {**OK, "mode": "reflect"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "mode", refused.text
    assert "greedy, majority" in refused.json()["error"]["fix"]
    prompt, query = openrlhf_query("What is 2 + 2?", "4")
    r = post(url, "/get_reward", {"query": [query], "prompts": [prompt], "labels": ["The answer is 4."]}).json()
    assert 0.0 <= r["scores"][0] <= 1.0 and r["extra_logs"]["error"] == [0.0]


@pytest.fixture
def critic_url(url, tmp_path_factory):
    """A tiny Critic-RM export (one training step, its reward head beside it), served with judge.method=critic_rm."""
    from reflectrm.training.session import LocalSession
    from reflectrm.training.trainer import train_worker
    from tests.model.test_critic_rm import config, items

    run = tmp_path_factory.mktemp("critic") / "run"
    train_worker(config(max_steps=1, checkpoint_every=0, eval_every=0), LocalSession(items(2), 2, run), 1, [])
    judge = {**ARGS["judge"], "method": "critic_rm", "mode": "greedy"}
    with variant(
        url, "critic", {**ARGS, "model": {"name": str(run / "final"), "max_prompt_tokens": 600}, "judge": judge}
    ) as u:
        yield u, str(run / "final")


def test_critic_rm_is_served_pointwise_on_judge_get_reward_rank_and_the_clients(critic_url, monkeypatch):
    """judge.method=critic_rm over real HTTP: /v1/judge gives each response's critiques and head reward (the
    library's, to 1e-4), /get_reward and /v1/rank score a response alone (no reference, no group), and verl's and
    TRL's reward functions use that where there is no reference; a pairwise mode is a 422."""
    import math

    from reflectrm.critic_judge import CriticJudge
    from reflectrm.integrations import trl, verl
    from reflectrm.records import Message

    url, model = critic_url
    health = httpx.get(url + "/healthz").json()
    assert health["method"] == "critic_rm" and health["pointwise"] is True
    r = post(url, "/v1/judge", {**OK, "swap": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["method"] == "critic_rm" and body["mode"] == "critic@1" and [len(c) for c in body["critiques"]] == [1, 1]
    )
    lib = CriticJudge.load(model, m=1, max_new_tokens=ARGS["judge"]["max_new_tokens"])
    context = (Message("user", OK["prompt"]),)
    expected = [s.reward for s in lib.reward(context, [OK["response_1"], OK["response_2"]])]
    assert body["rewards"] == pytest.approx(expected, abs=1e-4)
    assert body["score"] == pytest.approx(1 / (1 + math.exp(expected[1] - expected[0])), abs=1e-4)
    assert body["swapped"]["rewards"] == body["rewards"][::-1] and body["consistent"] is True
    assert body["usage"]["completion_tokens"] > 0 and "request_id" in body
    four = post(url, "/v1/judge", {**OK, "mode": "majority", "n": 2}).json()
    assert four["mode"] == "critic@2" and [len(c) for c in four["critiques"]] == [2, 2]
    refused = post(url, "/v1/judge", {**OK, "mode": "reflect"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "mode"

    prompt, query = openrlhf_query(OK["prompt"], OK["response_2"])
    got = post(url, "/get_reward", {"query": [query], "prompts": [prompt], "labels": [None]}).json()
    assert got["scores"][0] == pytest.approx(1 / (1 + math.exp(-expected[1])), abs=1e-4)  # no reference needed
    assert got["extra_logs"]["no_reference"] == [0.0] and got["extra_logs"]["error"] == [0.0]
    ranked = post(url, "/v1/rank", {"prompt": OK["prompt"], "responses": [OK["response_2"]]}).json()
    assert ranked["scheme"] == "pointwise" and ranked["head_rewards"] == pytest.approx([expected[1]], abs=1e-4)

    monkeypatch.setenv("REFLECTRM_URL", url)
    one = verl.compute_score("x", OK["response_2"], None, {"prompt": OK["prompt"]})
    assert (
        one["no_reference"] == 1.0 and not one["error"] and float(one) == pytest.approx(ranked["rewards"][0], abs=1e-4)
    )
    rewards = trl.reward_func(prompts=[OK["prompt"]], completions=[OK["response_2"]])
    assert rewards[0] == pytest.approx(ranked["rewards"][0], abs=1e-4)  # one completion, no reference: pointwise


def test_a_critic_app_on_a_model_with_no_head_fails_at_deploy_with_the_fix():
    from serve.app import build_app

    with pytest.raises(FileNotFoundError, match="no reward head .* recipe=critic_rm"):
        build_app({**ARGS, "judge": {"method": "critic_rm", "mode": "greedy"}})
