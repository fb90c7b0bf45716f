"""OpenRLHF's reward-function mode: `--reward.remote_url /path/to/reflectrm/integrations/openrlhf.py`
(older releases: `--remote_rm_url`). OpenRLHF imports `reward_func(queries, prompts, labels)` from this
file and calls it in a thread, one sample per call, many at once; it reads `rewards`, `scores` and
`extra_logs` from the returned dict, exactly as from the service's /get_reward answer.

What this file adds over the plain URL mode (`--reward.remote_url http://HOST:8000/get_reward`, which
sends no headers and so only works with auth off):
- the bearer token from $REFLECTRM_API_TOKEN (the service's address: $REFLECTRM_URL);
- batching: the calls that arrive within $REFLECTRM_BATCH_WAIT_S (default 0.05 s), up to
  $REFLECTRM_BATCH_MAX samples (default 64), go out as ONE POST /get_reward;
- retries ($REFLECTRM_TRIES, default 3), then failing soft: every sample of a failed batch gets the
  neutral score 0.5 (reward 0.0) and `error` 1 in extra_logs, never an exception (OpenRLHF would
  otherwise leave the reward at None).
Labels are the reference answers; a sample with no label is ranked against the other responses to
its prompt when the service runs with `reward_groups.size` set (the README's OpenRLHF section).

The trainer's environment needs `reflectrm` importable (`pip install --no-deps -e .` of this
repository is enough: this file only needs httpx).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from reflectrm.integrations.client import post
from reflectrm.rewards import NEUTRAL_SCORE, reward_from_score


class _Call:
    """One reward_func call waiting for its batch. (No @dataclass here: OpenRLHF loads this file without
    putting it in sys.modules, where dataclasses look up string annotations.)"""

    def __init__(self, queries: list[Any], prompts: list[Any], labels: list[Any]):
        self.queries, self.prompts, self.labels = queries, prompts, labels
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None


class Batcher:
    """Concurrent calls gathered into one request: the first call of a batch starts a timer; the batch
    goes when the timer fires or when it holds `max_items` samples."""

    def __init__(self, wait_s: float, max_items: int):
        self.wait_s, self.max_items = wait_s, max_items
        self.lock = threading.Lock()
        self.pending: list[_Call] = []
        self.timer: threading.Timer | None = None
        self.posts = 0  # requests sent (for tests and logs)

    def submit(self, queries: list[Any], prompts: list[Any], labels: list[Any]) -> dict[str, Any]:
        call = _Call(list(queries), list(prompts), list(labels))
        send = None
        with self.lock:
            self.pending.append(call)
            if sum(len(c.queries) for c in self.pending) >= self.max_items:
                send = self._take()
            elif self.timer is None:
                self.timer = threading.Timer(self.wait_s, self._flush)
                self.timer.daemon = True
                self.timer.start()
        if send:
            self._send(send)
        call.done.wait()
        return call.result  # type: ignore[return-value]

    def _take(self) -> list[_Call]:
        batch, self.pending = self.pending, []
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return batch

    def _flush(self) -> None:
        with self.lock:
            batch = self._take()
        if batch:
            self._send(batch)

    def _send(self, batch: list[_Call]) -> None:
        body = {
            "query": [q for c in batch for q in c.queries],
            "prompts": [p for c in batch for p in c.prompts],
            "labels": [lab for c in batch for lab in c.labels],
        }
        self.posts += 1
        try:
            answer = post("/get_reward", body)
        except Exception as err:  # noqa: BLE001 (fail soft: a failed batch gets neutral rewards, flagged)
            print(f"reflectrm reward_func: {len(body['query'])} samples got the neutral reward: {err}", flush=True)
            answer = failed(len(body["query"]))
        at = 0
        for c in batch:
            n = len(c.queries)
            c.result = {
                "rewards": answer["rewards"][at : at + n],
                "scores": answer["scores"][at : at + n],
                "extra_logs": {k: v[at : at + n] for k, v in answer.get("extra_logs", {}).items()},
            }
            at += n
            c.done.set()


def failed(n: int) -> dict[str, Any]:
    """The answer for samples the service could not score: neutral, with the error flag."""
    return {
        "rewards": [reward_from_score(NEUTRAL_SCORE)] * n,
        "scores": [NEUTRAL_SCORE] * n,
        "extra_logs": {"error": [1.0] * n},
    }


BATCHER = Batcher(
    float(os.environ.get("REFLECTRM_BATCH_WAIT_S", "0.05")), int(os.environ.get("REFLECTRM_BATCH_MAX", "64"))
)


def reward_func(queries: list[Any], prompts: list[Any], labels: list[Any]) -> dict[str, Any]:
    """OpenRLHF's reward function: {rewards, scores, extra_logs}, one entry per query. Never raises."""
    n = len(queries)
    if not n:
        return {"rewards": [], "scores": [], "extra_logs": {}}
    prompts = list(prompts) if prompts is not None else [None] * n
    labels = list(labels) if labels is not None else [None] * n
    if len(prompts) != n or len(labels) != n:
        return failed(n)
    return BATCHER.submit(list(queries), prompts, labels)
