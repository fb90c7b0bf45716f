"""verl custom reward: `reward.custom_reward_function.path` = this file (verl 0.9; older verl: the top-level
`custom_reward_function.path`), and `name` one of

    compute_score         sync, one sample (verl 0.9's reward loop: naive, dapo, rate_limited, remote; older
                          verl's naive and prime)
    compute_score_async   the same, awaitable (verl 0.9's reward loop awaits coroutine functions)
    compute_score_batch   lists in, a list of floats out (older verl's `batch` manager; verl 0.9 has none)

The judge compares the policy's response with the reference answer (`ground_truth`, from the dataset's
`reward_model.ground_truth`): reward = 2 * P(response better) - 1, in [-1, 1]. With no reference, the
batch form ranks the responses to the same prompt against each other (/v1/rank: the GRPO group), and
the one-sample forms give 0.0 with `no_reference`. A pointwise service (judge.method=critic_rm, its
/healthz says so) needs no reference and no group: a sample without one gets its own reward (2 sigmoid(r) - 1).

The prompt: `extra_info.prompt` / `messages` / `raw_prompt` (a string, or a message list kept whole,
every turn) or `question` / `problem`. verl's own math preprocessing stores only `{split, index}`
there: then the prompt is read from the dataset's parquet files (their `prompt` column, matched by
`extra_info.split` and `index`), named in $REFLECTRM_VERL_DATA (comma-separated; the same files as
verl's `data.train_files` / `val_files`).

Nothing here raises: a sample that cannot be scored gets 0.0 and an `error` key with the reason (the
batch form: 0.0). The result is a dict (`score` plus flags, which verl logs) that also reads as a
float and as `result[0]`, so every manager, old and new, takes it. Service address and token:
$REFLECTRM_URL, $REFLECTRM_API_TOKEN; $REFLECTRM_GROUP_SCHEME (circular | all_pairs) for the groups.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reflectrm.integrations.client import Reward, ajudge, arank, pointwise, rank, reward_from, run_sync

PROMPT_KEYS = ("messages", "prompt", "raw_prompt", "question", "problem", "query")


class NoPrompt(LookupError):
    pass


@functools.lru_cache(maxsize=4)
def _dataset_prompts(files: str) -> dict[tuple[Any, Any], Any]:
    """(split, index) and (None, index) -> the row's prompt, from verl parquet files."""
    import pyarrow.parquet as pq

    out: dict[tuple[Any, Any], Any] = {}
    for path in (p.strip() for p in files.split(",") if p.strip()):
        table = pq.read_table(path, columns=["prompt", "extra_info"]).to_pylist()
        for row in table:
            info = row.get("extra_info") or {}
            if "index" in info:
                out[(info.get("split"), info["index"])] = row["prompt"]
                out.setdefault((None, info["index"]), row["prompt"])
    return out


def _as_prompt(value: Any) -> str | list[dict[str, Any]] | None:
    if isinstance(value, str) and value.strip():
        return value
    if hasattr(value, "tolist"):  # numpy arrays, as verl's non-tensor batches hold them
        value = value.tolist()
    if isinstance(value, (list, tuple)) and value and all(isinstance(m, dict) for m in value):
        return [{"role": str(m.get("role")), "content": m.get("content")} for m in value]
    return None


def find_prompt(extra_info: Any) -> str | list[dict[str, Any]]:
    """The conversation a response answers, from extra_info or from the dataset files."""
    info = extra_info if isinstance(extra_info, dict) else {}
    for key in PROMPT_KEYS:
        prompt = _as_prompt(info.get(key))
        if prompt is not None:
            return prompt
    files = os.environ.get("REFLECTRM_VERL_DATA", "")
    if files and "index" in info:
        rows = _dataset_prompts(files)
        prompt = _as_prompt(rows.get((info.get("split"), info["index"])) or rows.get((None, info["index"])))
        if prompt is not None:
            return prompt
        raise NoPrompt(f"no row with split={info.get('split')!r}, index={info['index']!r} in $REFLECTRM_VERL_DATA")
    raise NoPrompt(
        "no prompt: put it in the dataset's extra_info (prompt or question), or set REFLECTRM_VERL_DATA to "
        "the dataset's parquet files so it is read from their prompt column by extra_info.index"
    )


def _reference(ground_truth: Any) -> str | None:
    ref = ground_truth.get("reference") if isinstance(ground_truth, dict) else ground_truth
    if ref is not None and not isinstance(ref, str):
        ref = str(ref)  # math answers come as numbers too
    return ref if ref and ref.strip() else None


def _scored(result: dict[str, Any]) -> Reward:
    return Reward(score=reward_from(result), prob_better=float(result["score"]), no_reference=0.0, error="")


def _failed(err: Exception) -> Reward:
    return Reward(score=0.0, prob_better=0.5, no_reference=0.0, error=f"{type(err).__name__}: {err}"[:300])


async def compute_score_async(
    data_source: Any = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Reward:
    """One sample: 2 * P(solution better than the reference) - 1. Never raises. verl's reward loop awaits
    it (many samples in flight, no threads)."""
    reference = _reference(ground_truth)
    url = kwargs.get("url")
    if reference is None and not await asyncio.to_thread(pointwise, url):
        return Reward(score=0.0, prob_better=0.5, no_reference=1.0, error="")
    try:
        if reference is None:  # a pointwise judge (Critic-RM): the response's own reward
            out = await arank(find_prompt(extra_info), [solution_str], url=url)
            return Reward(
                score=float(out["rewards"][0]), prob_better=float(out["scores"][0]), no_reference=1.0, error=""
            )
        return _scored(await ajudge(find_prompt(extra_info), solution_str, reference, url=url))
    except Exception as err:  # noqa: BLE001 (a reward function must not stop training)
        return _failed(err)


def compute_score(
    data_source: Any = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Reward:
    """compute_score_async, for the managers that call a plain function (naive, prime, the batch form)."""
    return run_sync(compute_score_async(data_source, solution_str, ground_truth, extra_info, **kwargs))


def compute_score_batch(
    data_sources: Any = None,
    solution_strs: Any = (),
    ground_truths: Any = None,
    extra_infos: Any = None,
    **kwargs: Any,
) -> list[float]:
    """verl's legacy `batch` manager: one float per sample. Samples with a reference are judged against
    it; those without are ranked within their prompt's group (the GRPO group: the same prompt)."""
    solutions = list(solution_strs)
    n = len(solutions)
    truths = list(ground_truths) if ground_truths is not None else [None] * n
    infos = list(extra_infos) if extra_infos is not None else [None] * n
    scores = [0.0] * n
    groups: dict[str, list[int]] = {}
    prompts: dict[int, Any] = {}
    with_reference = []
    for i in range(n):
        try:
            prompts[i] = find_prompt(infos[i])
        except NoPrompt:
            continue
        if _reference(truths[i]) is None:
            groups.setdefault(json.dumps(prompts[i], sort_keys=True), []).append(i)
        else:
            with_reference.append(i)

    def one(i: int) -> None:
        scores[i] = float(compute_score(None, solutions[i], truths[i], infos[i], **kwargs))

    def group(members: list[int]) -> None:
        if len(members) < 2 and not pointwise(kwargs.get("url")):  # a pairwise judge needs two to compare
            return
        try:
            out = rank(prompts[members[0]], [solutions[i] for i in members], url=kwargs.get("url"), scheme=_scheme())
        except Exception:  # noqa: BLE001 (the group keeps 0.0)
            return
        for i, r in zip(members, out["rewards"]):
            scores[i] = float(r)

    with ThreadPoolExecutor(max_workers=int(os.environ.get("REFLECTRM_MAX_WORKERS", "32"))) as pool:
        list(pool.map(one, with_reference))
        list(pool.map(group, list(groups.values())))
    return scores


async def compute_score_batch_async(
    data_sources: Any = None,
    solution_strs: Any = (),
    ground_truths: Any = None,
    extra_infos: Any = None,
    **kwargs: Any,
) -> list[float]:
    """compute_score_batch, awaitable."""
    return await asyncio.to_thread(
        compute_score_batch, data_sources, solution_strs, ground_truths, extra_infos, **kwargs
    )


def _scheme() -> str:
    return os.environ.get("REFLECTRM_GROUP_SCHEME", "circular")


__all__ = ["compute_score", "compute_score_async", "compute_score_batch", "compute_score_batch_async"]
