"""TRL reward function (GRPOTrainer / RLOOTrainer `reward_funcs=[reward_func]`).

Each completion is judged against the dataset's reference answer (column `reference` by default;
`make_reward_func(column=...)` for another). A row without one gets None, which TRL ignores.
Rewards are 2 * P(completion better than the reference) - 1. The samples of a batch are sent at
once; the service batches them across requests.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from reflectrm.integrations.client import judge, reward_from


def _text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if (
        isinstance(completion, list) and completion and isinstance(completion[-1], dict)
    ):  # conversational: [{"role": "assistant", ...}]
        return str(completion[-1].get("content", ""))
    raise TypeError(f"completion must be a string or a message list, got {type(completion).__name__}")


def make_reward_func(
    column: str = "reference", url: str | None = None, mode: str = "reflect", max_workers: int = 32
) -> Callable[..., list[float | None]]:
    def reward_func(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        references = columns.get(column) or [None] * len(prompts)

        def one(args: tuple[Any, Any, Any]) -> float | None:
            prompt, completion, reference = args
            if not isinstance(reference, str) or not reference.strip():
                return None
            return reward_from(judge(prompt, _text(completion), reference, url=url, mode=mode))

        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            return list(pool.map(one, zip(prompts, completions, references)))

    reward_func.__name__ = f"reflectrm_{column}"
    return reward_func


reward_func = make_reward_func()
