"""verl custom reward: point `custom_reward_function.path` at this file, `name: compute_score`.

The judge compares the policy's response with the reference answer (`ground_truth`, from the
dataset's `reward_model.ground_truth`). It also needs the prompt: put it in the dataset's
`extra_info` as `prompt` (a string or a message list) or `question`.
"""

from __future__ import annotations

from typing import Any

from reflectrm.integrations.client import judge, reward_from


def compute_score(
    data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    info = extra_info or {}
    prompt = info.get("prompt") or info.get("question")
    if not prompt:
        raise ValueError(
            "reflectrm compute_score needs the prompt: add extra_info.prompt (or extra_info.question) to the verl dataset"
        )
    reference = ground_truth.get("reference") if isinstance(ground_truth, dict) else ground_truth
    if not isinstance(reference, str) or not reference.strip():
        return {"score": 0.0, "prob_better": 0.5, "no_reference": 1.0}
    result = judge(prompt, solution_str, reference, url=kwargs.get("url"), mode=kwargs.get("mode", "reflect"))
    return {"score": reward_from(result), "prob_better": float(result["score"]), "no_reference": 0.0}
