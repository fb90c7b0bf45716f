"""A small HTTP client for the reflectrm service, shared by the trainer integrations: sync and async,
the bearer token from the environment, and retries.

    post("/v1/judge", body)          await apost("/v1/rank", body)

$REFLECTRM_URL (default http://127.0.0.1:8000) is the service; $REFLECTRM_API_TOKEN, when set, goes
out as `Authorization: Bearer ...`. A connection error, a timeout or a 429/5xx answer is retried
($REFLECTRM_TRIES tries in all, default 3, with a growing pause); a 4xx answer is the caller's
mistake and raises ServiceError at once with the service's JSON error (it names the field and the fix).
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from reflectrm.rewards import reward_from_score

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUS = {429, 500, 502, 503, 504}


class ServiceError(RuntimeError):
    """The service answered with an error, or could not be reached after every try."""


def base_url(url: str | None = None) -> str:
    return (url or os.environ.get("REFLECTRM_URL") or DEFAULT_URL).rstrip("/")


def headers() -> dict[str, str]:
    token = os.environ.get("REFLECTRM_API_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def tries() -> int:
    return max(1, int(os.environ.get("REFLECTRM_TRIES", "3")))


def _read(r: httpx.Response) -> dict[str, Any]:
    if r.status_code != 200:
        raise ServiceError(f"reflectrm service {r.status_code}: {r.text[:500]}")
    return r.json()


def post(path: str, body: Any, url: str | None = None, timeout: float = 180.0) -> dict[str, Any]:
    """POST a JSON body; the answer's JSON. Retries what a retry can fix."""
    last: Exception | None = None
    for attempt in range(tries()):
        try:
            r = httpx.post(f"{base_url(url)}{path}", json=body, headers=headers(), timeout=timeout)
            if r.status_code not in RETRY_STATUS:
                return _read(r)
            last = ServiceError(f"reflectrm service {r.status_code}: {r.text[:500]}")
        except httpx.HTTPError as err:
            last = err
        time.sleep(min(0.5 * 2**attempt, 8.0))
    raise ServiceError(f"reflectrm service at {base_url(url)}: no answer after {tries()} tries ({last})") from last


async def apost(path: str, body: Any, url: str | None = None, timeout: float = 180.0) -> dict[str, Any]:
    """The async form of `post` (for trainers that await their reward functions)."""
    last: Exception | None = None
    async with httpx.AsyncClient(timeout=timeout) as client:
        for attempt in range(tries()):
            try:
                r = await client.post(f"{base_url(url)}{path}", json=body, headers=headers())
                if r.status_code not in RETRY_STATUS:
                    return _read(r)
                last = ServiceError(f"reflectrm service {r.status_code}: {r.text[:500]}")
            except httpx.HTTPError as err:
                last = err
            await asyncio.sleep(min(0.5 * 2**attempt, 8.0))
    raise ServiceError(f"reflectrm service at {base_url(url)}: no answer after {tries()} tries ({last})") from last


_POINTWISE: dict[str, bool] = {}


def pointwise(url: str | None = None) -> bool:
    """Whether the service scores a response alone (judge.method=critic_rm): its /healthz, read once per address.
    Unreachable or an older service: False (pairwise), and asked again next time."""
    u = base_url(url)
    if u not in _POINTWISE:
        try:
            _POINTWISE[u] = bool(httpx.get(f"{u}/healthz", headers=headers(), timeout=10).json().get("pointwise"))
        except (httpx.HTTPError, ValueError):
            return False
    return _POINTWISE[u]


def run_sync(coro: Any) -> Any:
    """Run a coroutine to its end from sync code, on an event loop of a thread of its own (so it also works
    where the calling thread already runs a loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def conversation(prompt: str | list[dict[str, Any]]) -> dict[str, Any]:
    """The request field for a prompt: `prompt` for a string, `messages` for a whole (multi-turn) conversation."""
    return {"prompt": prompt} if isinstance(prompt, str) else {"messages": list(prompt)}


def judge_body(prompt: str | list[dict[str, Any]], response_1: str, response_2: str, **fields: Any) -> dict[str, Any]:
    return {**conversation(prompt), "response_1": response_1, "response_2": response_2, **fields}


def judge(
    prompt: str | list[dict[str, Any]], response_1: str, response_2: str, url: str | None = None, **fields: Any
) -> dict[str, Any]:
    """POST /v1/judge; the result JSON (score = the share of final votes for response 1)."""
    return post("/v1/judge", judge_body(prompt, response_1, response_2, **fields), url)


async def ajudge(
    prompt: str | list[dict[str, Any]], response_1: str, response_2: str, url: str | None = None, **fields: Any
) -> dict[str, Any]:
    return await apost("/v1/judge", judge_body(prompt, response_1, response_2, **fields), url)


def rank(prompt: str | list[dict[str, Any]], responses: list[str], url: str | None = None, **fields: Any) -> dict:
    """POST /v1/rank: the responses to one prompt judged against each other; `scores`, `rewards`, traces."""
    return post("/v1/rank", {**conversation(prompt), "responses": list(responses), **fields}, url)


async def arank(
    prompt: str | list[dict[str, Any]], responses: list[str], url: str | None = None, **fields: Any
) -> dict:
    return await apost("/v1/rank", {**conversation(prompt), "responses": list(responses), **fields}, url)


def reward_from(result: dict[str, Any]) -> float:
    """The RL signal of a /v1/judge result of (response, reference), in [-1, 1] (reflectrm.rewards)."""
    return reward_from_score(result["score"])


class Reward(dict):
    """A reward result that is a dict (`score` and its flags, for managers that log them) and also reads
    as the score where a manager wants a number: float(r), and r[0] (verl's legacy `prime` manager does
    `float(result[0])`). The key 0 is not stored, so iterating the dict gives the flags only."""

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__("score") if key == 0 else super().__getitem__(key)

    def __float__(self) -> float:
        return float(self["score"])
