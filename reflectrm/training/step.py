"""One GRPO step and one SFT step of a worker, and the greedy check of held-out items.

A GRPO step, on every worker: the worker's rollout engine (reflectrm/training/worker.py) -> G rollouts per
item with the current policy (seeded by the item's id and the step, so an item's rollouts do not depend on
the worker that drew it) -> rewards from THE parser -> group-normalised advantages -> micro-batches of the
token-level clipped loss (+ KL), normalised by the step's token count over all workers -> optimizer step.

The metrics: each worker counts what it did (`rollout_counts`), the counts are summed over workers
(one collective), and `step_metrics` turns the sums into rates and means: a pure function, tested without
a model.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

from reflectrm.data.items import TrainingItem
from reflectrm.engines.hf import HFEngine
from reflectrm.methods import method_for
from reflectrm.seeds import derive_seed
from reflectrm.training.config import LoopConfig
from reflectrm.training.dist import all_max, all_sum, all_sum_named, world
from reflectrm.training.objectives import group_advantages
from reflectrm.training.packing import flatten_packs, prefix_packs
from reflectrm.training.policy import Rollouts, grpo_loss_on, micro_batches, rollout, sft_loss_on, zero_loss
from reflectrm.training.worker import Worker

TASKS = {"response": "pref", "critique": "refl"}  # task -> its metrics prefix


def rollout_counts(ro: Rollouts, n: int) -> dict[str, float]:
    """What one worker's rollouts of a step hold, as sums (summed again over workers)."""
    local: dict[str, float] = {
        "too_long": ro.too_long,
        # groups whose rollouts' rewards differ: only they have non-zero advantages (a learning signal)
        "groups": len(ro.rewards) // n,
        "signal_groups": int((ro.rewards.view(-1, n).std(dim=1) > 0).sum()) if len(ro.rewards) else 0,
    }
    for task, name in TASKS.items():
        pick = [i for i, t in enumerate(ro.tasks) if t == task]
        local |= {
            f"{name}_rollouts": len(pick),
            f"{name}_reward": float(ro.rewards[pick].sum()) if pick else 0.0,
            f"{name}_valid": sum(ro.valid[i] for i in pick),
            f"{name}_correct": sum(ro.correct[i] for i in pick),
        }
    return local


def step_metrics(tot: dict[str, float], size: int, grad_norm: float, lr: float) -> dict[str, float]:
    """A GRPO step's metrics from the counts summed over `size` workers (seconds are averaged over them)."""
    m: dict[str, float] = {
        "loss": tot["loss"] / size,
        "kl": tot["kl"] / max(tot["tokens"], 1),
        "grad_norm": grad_norm,
        "lr": lr,
        "gen_seconds": tot["gen_s"] / size,
        "sync_seconds": tot["sync_s"] / size,  # the rollout engine's weight sync before this step (vllm)
        "update_seconds": tot["update_s"] / size,
        "completion_tokens": tot["tokens"],
        "gen_tokens_per_s": tot["tokens"] / max(tot["gen_s"] / size, 1e-9),
        "update_tokens_per_s": tot["seq_tokens"] / max(tot["update_s"] / size, 1e-9),
    }
    if tot["diff_tokens"]:  # mean |engine log-prob - policy log-prob| of the sampled tokens: jumps on stale weights
        m["rollout_logprob_diff"] = tot["diff_sum"] / tot["diff_tokens"]
    for name in TASKS.values():
        c = tot[f"{name}_rollouts"]
        m[f"{name}_rollouts"] = c
        if c:
            m |= {
                f"{name}_reward_mean": tot[f"{name}_reward"] / c,
                f"{name}_valid_rate": tot[f"{name}_valid"] / c,
                f"{name}_accuracy": tot[f"{name}_correct"] / c,
            }
    m["too_long"] = tot["too_long"]  # prompts skipped this step (over the token limit)
    m["signal_group_rate"] = tot["signal_groups"] / tot["groups"] if tot["groups"] else 0.0
    count = sum(tot[f"{name}_rollouts"] for name in TASKS.values())
    if not count:  # every prompt of the step was too long: nothing was learnt, nothing to average
        return m
    m.update(
        reward_mean=sum(tot[f"{name}_reward"] for name in TASKS.values()) / count,
        valid_rate=sum(tot[f"{name}_valid"] for name in TASKS.values()) / count,
        accuracy=sum(tot[f"{name}_correct"] for name in TASKS.values()) / count,
    )
    return m


def update_chunks(ro: Rollouts, cfg: LoopConfig) -> list[list[list[int]]]:
    """The update's micro-batches, each a list of packs of rollout indices: with trainer.shared_prefix the
    rollouts of one prompt share a pack (one encoding of the prompt), else every rollout is its own."""
    t = cfg.trainer
    if t.shared_prefix:
        return prefix_packs(ro.prompt_ids, ro.completion_ids, t.micro_batch, t.micro_batch_tokens)
    lengths = [len(p) + len(c) for p, c in zip(ro.prompt_ids, ro.completion_ids)]
    return [[[i] for i in chunk] for chunk in micro_batches(lengths, t.micro_batch, t.micro_batch_tokens)]


def grpo_step(worker: Worker, rows: list[TrainingItem], step: int) -> dict[str, float]:
    """One GRPO step on this worker's items (every worker calls it: the loss and metrics are collectives)."""
    cfg, strategy = worker.cfg, worker.strategy
    _, size = world()
    policy = worker.policy(step)
    t0 = time.perf_counter()
    seeds = [derive_seed(cfg.seed, r.id, step) for r in rows]
    ro = rollout(policy, rows, cfg.grpo, cfg.prompt, seeds=seeds, method=method_for(cfg.method))
    worker.after_rollout()
    gen_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    adv = group_advantages(ro.rewards, cfg.grpo.n) if len(ro.rewards) else ro.rewards  # none: all too long
    local_tokens = sum(len(c) for c in ro.completion_ids)
    (all_tokens,) = all_sum([local_tokens])
    normalizer = max(all_tokens, 1.0) / size  # gradients are averaged over workers: the sum / all tokens
    strategy.module.train()
    pad = worker.engine.tokenizer.pad_token_id
    loss_sum = kl_sum = diff_sum = diff_tokens = 0.0
    chunks = update_chunks(ro, cfg)
    count = all_max(max(len(chunks), 1 if cfg.trainer.shared_prefix else cfg.grad_accum()))  # equal on every worker
    for k in range(count):
        packs = chunks[k] if k < len(chunks) else []
        idx, local = flatten_packs(packs)
        if not idx:  # fewer rollouts here (prompts too long): a zero loss keeps the collectives in step
            strategy.backward(zero_loss(strategy.module), last=k == count - 1)
            continue
        with strategy.autocast():
            loss, info = grpo_loss_on(
                strategy.forward_model(),
                ro.select(idx),
                cfg.grpo,
                pad,
                ref_model=worker.ref,
                advantages=adv[idx],
                normalizer=normalizer,
                packs=local if cfg.trainer.shared_prefix else None,
            )
        strategy.backward(loss, last=k == count - 1)
        loss_sum += float(loss.detach())
        kl_sum += info["kl"] * info["tokens"]
        diff_sum += info["logprob_diff_sum"]
        diff_tokens += info["logprob_diff_tokens"]
    grad_norm = strategy.step()
    local = {
        "loss": loss_sum,
        "kl": kl_sum,
        "tokens": local_tokens,
        "gen_s": gen_s,
        "sync_s": worker.sync_seconds,
        "update_s": time.perf_counter() - t0,
        "diff_sum": diff_sum,
        "diff_tokens": diff_tokens,
        "seq_tokens": local_tokens + sum(len(p) for p in ro.prompt_ids),
        **rollout_counts(ro, cfg.grpo.n),
    }
    return step_metrics(all_sum_named(local), size, grad_norm, strategy.lr())


def sft_step(worker: Worker, rows: list[TrainingItem]) -> dict[str, float]:
    """One SFT step: cross-entropy on the target judgments' tokens, normalised over all workers' tokens."""
    cfg, strategy, engine = worker.cfg, worker.strategy, worker.engine
    _, size = world()
    t0 = time.perf_counter()
    tok = engine.tokenizer
    method = method_for(cfg.method)
    prompts = [engine.encode(r.messages(cfg.prompt, method)) for r in rows]
    targets = [tok(r.target or "", add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in rows]
    local_tokens = sum(len(t) for t in targets)
    (all_tokens,) = all_sum([local_tokens])
    normalizer = max(all_tokens, 1.0) / size
    strategy.module.train()
    loss_sum = 0.0
    lengths = [len(p) + len(t) for p, t in zip(prompts, targets)]
    chunks = micro_batches(lengths, cfg.trainer.micro_batch, cfg.trainer.micro_batch_tokens)
    count = all_max(max(len(chunks), cfg.grad_accum()))  # the same count on every worker (collectives)
    for k in range(count):
        idx = chunks[k] if k < len(chunks) else []
        p, t = [prompts[i] for i in idx], [targets[i] for i in idx]
        if not p:  # keep the micro-batch count equal on every worker (collectives)
            p, t = prompts[:1], [[]]
        with strategy.autocast():
            loss = (
                sft_loss_on(strategy.forward_model(), p, t, tok.pad_token_id, normalizer=normalizer)
                if any(t)
                else zero_loss(strategy.module)
            )
        strategy.backward(loss, last=k == count - 1)
        loss_sum += float(loss.detach())
    grad_norm = strategy.step()
    loss_all, tokens, secs = all_sum([loss_sum, local_tokens, time.perf_counter() - t0])
    return {
        "loss": loss_all / size,
        "grad_norm": grad_norm,
        "lr": strategy.lr(),
        "target_tokens": tokens,
        "update_seconds": secs / size,
        "gen_seconds": 0.0,
    }


def greedy_check(cfg: LoopConfig, engine: HFEngine, rows: Sequence[TrainingItem]) -> dict[str, Any]:
    """Greedy judgments of held-out items: accuracy and valid-format rate (run on one worker)."""
    if not rows:
        return {}
    g = dataclasses.replace(cfg.grpo, n=1, temperature=0.0, max_new_tokens=cfg.eval_max_new_tokens)
    ro = rollout(engine, rows, g, cfg.prompt, seeds=[0] * len(rows), method=method_for(cfg.method))
    return {"eval_accuracy": sum(ro.correct) / len(rows), "eval_valid_rate": sum(ro.valid) / len(rows)}
