"""TRL reward functions (GRPOTrainer / RLOOTrainer `reward_funcs=[...]`), sync and async.

    from reflectrm.integrations.trl import reward_func, async_reward_func
    GRPOTrainer(..., reward_funcs=[reward_func])            # or async_reward_func: TRL gathers it

TRL calls `f(prompts=..., completions=..., completion_ids=..., **every_dataset_column, trainer_state=...)`
with the whole generation batch, each prompt's completions side by side. Both of TRL's formats work:
standard (strings) and conversational (message lists; the prompt is kept whole, every turn).

- A row with a reference answer (the dataset column `reference`; `make_reward_func(column=...)` for
  another) is judged against it: reward = 2 * P(completion better) - 1.
- Rows without one are ranked against the other completions of the same prompt in the batch
  (/v1/rank, `scheme` circular or all_pairs): group-wise rewards with no reference. A prompt with a
  single completion in the batch gets None, except from a pointwise service (judge.method=critic_rm),
  which scores every completion alone.
- `mode` (None: the service's judge.mode) is sent with every request.
- Every other column (and TRL's `completion_ids`, `trainer_state`) is accepted and left alone.
- A row that fails (the service refuses it, or cannot be reached after its retries) gets None, which
  TRL turns into NaN and leaves out; it never fails the batch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from reflectrm.integrations.client import ajudge, arank, pointwise, reward_from, run_sync


def completion_text(completion: Any) -> str:
    """A completion in either of TRL's formats: a string, or [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else str(content)
    raise TypeError(f"completion must be a string or a message list, got {type(completion).__name__}")


def _plan(prompts: Sequence[Any], references: Sequence[Any]) -> tuple[list[int], dict[str, list[int]]]:
    """(rows judged against their reference, groups of rows without one keyed by their prompt)."""
    judged, groups = [], {}
    for i, (prompt, ref) in enumerate(zip(prompts, references)):
        if isinstance(ref, str) and ref.strip():
            judged.append(i)
        else:
            groups.setdefault(json.dumps(prompt, sort_keys=True, default=str), []).append(i)
    return judged, groups


def make_async_reward_func(
    column: str = "reference", url: str | None = None, mode: str | None = None, scheme: str = "circular"
) -> Callable[..., Any]:
    """A coroutine reward function (TRL gathers async reward functions): every row's request in flight at once."""

    async def reward_func(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        references = columns.get(column) or [None] * len(prompts)
        rewards: list[float | None] = [None] * len(prompts)
        judged, groups = _plan(prompts, references)

        async def one(i: int) -> None:
            try:
                result = await ajudge(prompts[i], completion_text(completions[i]), references[i], url=url, mode=mode)
                rewards[i] = reward_from(result)
            except Exception:  # noqa: BLE001
                pass

        async def group(members: list[int]) -> None:
            if len(members) < 2 and not await asyncio.to_thread(pointwise, url):  # a pairwise judge needs two
                return
            try:
                texts = [completion_text(completions[i]) for i in members]
                out = await arank(prompts[members[0]], texts, url=url, mode=mode, scheme=scheme)
                for i, r in zip(members, out["rewards"]):
                    rewards[i] = float(r)
            except Exception:  # noqa: BLE001
                pass

        await asyncio.gather(*(one(i) for i in judged), *(group(m) for m in groups.values()))
        return rewards

    reward_func.__name__ = f"reflectrm_{column}_async"
    return reward_func


def make_reward_func(
    column: str = "reference", url: str | None = None, mode: str | None = None, scheme: str = "circular"
) -> Callable[..., list[float | None]]:
    """A sync reward function: the async one on an event loop of its own thread (so it also works where the
    caller's thread already runs a loop); the batch's requests go out together, the service batches them."""
    afunc = make_async_reward_func(column, url, mode, scheme)

    def reward_func(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        return run_sync(afunc(prompts, completions, **columns))

    reward_func.__name__ = f"reflectrm_{column}"
    return reward_func


reward_func = make_reward_func()
async_reward_func = make_async_reward_func()
