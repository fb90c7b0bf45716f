"""A small HTTP client for the reflectrm service, shared by the trainer integrations."""

from __future__ import annotations

import os
from typing import Any

import httpx

from reflectrm.rewards import reward_from_score

DEFAULT_URL = "http://127.0.0.1:8000"


class ServiceError(RuntimeError):
    """The service answered with an error (its JSON error names the field and the fix)."""


def base_url(url: str | None = None) -> str:
    return (url or os.environ.get("REFLECTRM_URL") or DEFAULT_URL).rstrip("/")


def headers() -> dict[str, str]:
    token = os.environ.get("REFLECTRM_API_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def judge(
    prompt: str | list[dict[str, str]],
    response_1: str,
    response_2: str,
    url: str | None = None,
    timeout: float = 180.0,
    **fields: Any,
) -> dict[str, Any]:
    """POST /v1/judge; the result JSON (score = the share of final votes for response 1)."""
    key = "prompt" if isinstance(prompt, str) else "messages"
    body = {key: prompt, "response_1": response_1, "response_2": response_2, **fields}
    r = httpx.post(f"{base_url(url)}/v1/judge", json=body, headers=headers(), timeout=timeout)
    if r.status_code != 200:
        raise ServiceError(f"reflectrm service {r.status_code}: {r.text[:500]}")
    return r.json()


def reward_from(result: dict[str, Any]) -> float:
    """The RL signal of a /v1/judge result of (response, reference), in [-1, 1] (reflectrm.rewards)."""
    return reward_from_score(result["score"])
