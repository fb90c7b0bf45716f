"""The policy's side of a step, on a live model in one process: rollouts, log-probs and losses.

rollout       G samples per item with the CURRENT policy through the library's engine; each
              graded by THE parser against the gold label (objectives.grade)
policy_batch  prompt + completion ids padded into tensors, with the mask of generated tokens
token_logprobs  log p(token) of every completion token under a model (with or without grad)
grpo_loss_on  advantages per group, the clipped token-level loss (+ KL), on a micro-batch
sft_loss_on   cross-entropy on the target judgment's tokens only (the prompt is masked)
micro_batches consecutive groups of sequences within a count and a padded-token budget
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from reflectrm.config import PromptConfig
from reflectrm.data.items import TrainingItem
from reflectrm.engines.base import GenerationRequest, SamplingParams, generate_each
from reflectrm.engines.hf import HFEngine
from reflectrm.methods import JudgeMethod
from reflectrm.training.config import GRPOConfig
from reflectrm.training.objectives import grade, group_advantages, grpo_loss, sft_labels
from reflectrm.training.packing import packed_batch, packed_logprobs
from reflectrm.training.rollout_engine import logprob_diff


@dataclass
class Rollouts:
    prompt_ids: list[list[int]]  # one per rollout (a prompt repeated G times)
    completion_ids: list[list[int]]
    rewards: torch.Tensor
    valid: list[bool]
    correct: list[bool]
    tasks: list[str]  # "response" (preference items) or "critique" (reflection items)
    too_long: int = 0  # rows skipped: their prompt is over the engine's token limit (no rollouts, no loss)
    engine_logprobs: list[tuple[float, ...]] = field(default_factory=list)  # the engine's, per sampled token

    def select(self, idx: Sequence[int]) -> Rollouts:
        """A micro-batch of these rollouts."""
        return Rollouts(
            [self.prompt_ids[i] for i in idx],
            [self.completion_ids[i] for i in idx],
            self.rewards[list(idx)],
            [self.valid[i] for i in idx],
            [self.correct[i] for i in idx],
            [self.tasks[i] for i in idx],
            engine_logprobs=[self.engine_logprobs[i] for i in idx] if self.engine_logprobs else [],
        )


def rollout(
    engine: HFEngine,
    rows: Sequence[TrainingItem],
    cfg: GRPOConfig,
    prompt_cfg: PromptConfig = PromptConfig(),
    seed: int | None = None,
    seeds: Sequence[int] | None = None,
    method: JudgeMethod | None = None,
) -> Rollouts:
    """G samples for each training item and their verifiable rewards, in the judge method's format
    (ReflectRM's by default). `seeds`: one per row (a trainer derives them from the row's id and the step,
    so a row's rollouts do not depend on which worker drew it); else `seed + i`."""
    messages = [r.messages(prompt_cfg, method) for r in rows]
    row_seeds = list(seeds) if seeds is not None else [None if seed is None else seed + i for i in range(len(rows))]
    params = [
        SamplingParams(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=s)
        for s in row_seeds
    ]
    gens, errors = generate_each(engine, [GenerationRequest(m, p) for m, p in zip(messages, params)])
    prompts, completions, graded, tasks, logprobs = [], [], [], [], []
    for row, msgs, gen in zip(rows, messages, gens):
        if gen is None:  # too long: skipped and counted, never a crash (whole groups go, so groups stay aligned)
            continue
        prompt = list(gen.prompt_ids) or engine.encode(msgs)  # the engine's own tokenisation of the prompt
        for c in gen.completions:
            prompts.append(prompt)
            completions.append(list(c.token_ids))
            logprobs.append(tuple(c.logprobs))
            graded.append(grade(c.text, row.task, row.label, cfg.reward, method))
            tasks.append(row.task)
    rewards = torch.tensor([g.reward for g in graded], dtype=torch.float32)
    too_long = sum(e is not None for e in errors)
    valid, correct = [g.valid for g in graded], [g.correct for g in graded]
    return Rollouts(prompts, completions, rewards, valid, correct, tasks, too_long, logprobs)


def policy_batch(
    prompt_ids: Sequence[list[int]], completion_ids: Sequence[list[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-padded [prompt + completion] ids, attention mask, and the mask of completion tokens
    aligned with the log-probs of positions 1..T (what `token_logprobs` returns)."""
    seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    gen = torch.zeros((len(seqs), width - 1), dtype=torch.float32)
    for i, (p, s) in enumerate(zip(prompt_ids, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        gen[i, len(p) - 1 : len(s) - 1] = 1  # log-prob at position t predicts token t + 1
    return {"input_ids": ids, "attention_mask": attn, "completion_mask": gen}


def token_logprobs(model: Any, batch: dict[str, torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """[B, T-1]: log p(token t+1 | tokens <= t) under `model` at `temperature` (the distribution the
    rollouts were sampled from: logits / temperature, as the samplers do).

    Judge prompts are long and answers short: with a `completion_mask`, the vocabulary projection
    and softmax run only from the first completion position on (`logits_to_keep`); earlier
    positions come back as 0 (the mask zeroes them anyway)."""
    device = next(model.parameters()).device
    ids, attn = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    width = ids.shape[1] - 1
    mask = batch.get("completion_mask")
    start = int(mask.any(dim=0).float().argmax()) if mask is not None and bool(mask.any()) else 0
    keep = torch.arange(start, width, device=device)
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False, logits_to_keep=keep).logits.float()
    if temperature not in (0.0, 1.0):  # 0: greedy, a point mass the loss cannot take: plain log-probs
        logits = logits / temperature
    logp = torch.gather(F.log_softmax(logits, dim=-1), 2, ids[:, start + 1 :].unsqueeze(-1)).squeeze(-1)
    return F.pad(logp, (start, 0)) if start else logp


def grpo_loss_on(
    model: Any,
    rollouts: Rollouts,
    cfg: GRPOConfig,
    pad_id: int,
    ref_model: Any = None,
    advantages: torch.Tensor | None = None,
    normalizer: float | None = None,
    packs: Sequence[Sequence[int]] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss of (a micro-batch of) rollouts; call .backward() on it.

    advantages  default: group-normalised from `rollouts.rewards` (pass them when `rollouts` is a
                micro-batch: groups are normalised over the whole step's rollouts)
    normalizer  default: this batch's token count (a trainer passes the whole step's)
    packs       rollout indices grouped by shared prompt (packing.prefix_packs): each prompt is encoded
                once, its completions packed after it; None: one [prompt, completion] row per rollout
    ref_model   the frozen reference of the KL term; for LoRA pass the peft model itself (its
                adapters are disabled for the reference pass)
    One update per rollout batch (as in the paper's GRPO), so the sampling policy IS the current
    one: old log-probs are the current ones detached (ratio 1, gradient A * grad log p).
    info's `logprob_diff_sum` / `logprob_diff_tokens`: |the engine's log-prob - the policy's| over the
    sampled tokens, the check that the rollout engine held the policy's weights."""
    adv = group_advantages(rollouts.rewards, cfg.n) if advantages is None else advantages
    if packs is None:
        batch = policy_batch(rollouts.prompt_ids, rollouts.completion_ids, pad_id)

        def logprobs(m: Any) -> torch.Tensor:
            return token_logprobs(m, batch, cfg.temperature)

        mask, starts = batch["completion_mask"], [len(p) for p in rollouts.prompt_ids]
    else:  # each prompt once, its completions packed after it (reflectrm/training/packing.py)
        packed = packed_batch(
            [rollouts.prompt_ids[p[0]] for p in packs], [[rollouts.completion_ids[i] for i in p] for p in packs], pad_id
        )

        def logprobs(m: Any) -> torch.Tensor:
            return packed_logprobs(m, packed, cfg.temperature)

        mask, starts = packed["mask"], [1] * len(rollouts.prompt_ids)  # completion tokens from column 0
    ref = None
    if cfg.kl_coef and ref_model is not None:
        with torch.no_grad():
            if hasattr(ref_model, "disable_adapter"):  # peft: the base model is the reference
                with ref_model.disable_adapter():
                    ref = logprobs(ref_model)
            else:
                ref = logprobs(ref_model)
    logp = logprobs(model)  # the sampling distribution's, at grpo.temperature
    mask = mask.to(logp.device)
    loss, info = grpo_loss(
        logp,
        logp.detach(),
        adv.to(logp.device),
        mask,
        cfg.clip,
        None if ref is None else ref.to(logp.device),
        cfg.kl_coef,
        normalizer,
    )
    diff, counted = logprob_diff(logp, mask, starts, rollouts.engine_logprobs or [()] * len(rollouts.prompt_ids))
    return loss, {**info, "tokens": float(mask.sum()), "logprob_diff_sum": diff, "logprob_diff_tokens": counted}


def sft_loss_on(
    model: Any,
    prompt_ids: Sequence[list[int]],
    target_ids: Sequence[list[int]],
    pad_id: int,
    normalizer: float | None = None,
) -> torch.Tensor:
    """Cross-entropy over the target tokens only: their mean, or their sum / `normalizer` (a trainer
    passes the whole step's target-token count)."""
    pairs = [sft_labels(list(p), list(t)) for p, t in zip(prompt_ids, target_ids)]
    width = max(len(i) for i, _ in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    attn = torch.zeros((len(pairs), width), dtype=torch.long)
    for k, (i, lab) in enumerate(pairs):
        ids[k, : len(i)], labels[k, : len(lab)], attn[k, : len(i)] = torch.tensor(i), torch.tensor(lab), 1
    device = next(model.parameters()).device
    start = max(0, min(len(p) for p in prompt_ids) - 1)  # the loss starts at the first target token
    keep = torch.arange(start, width - 1, device=device)
    logits = model(
        input_ids=ids.to(device), attention_mask=attn.to(device), use_cache=False, logits_to_keep=keep
    ).logits.float()
    labels = labels[:, start + 1 :]
    reduction = "mean" if normalizer is None else "sum"
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1).to(device), ignore_index=-100, reduction=reduction
    )
    return loss if normalizer is None else loss / normalizer


def micro_batches(lengths: Sequence[int], micro_batch: int, max_tokens: int = 0) -> list[list[int]]:
    """Consecutive index groups of at most `micro_batch` sequences whose padded size (count x the longest
    length) stays within `max_tokens` (0: no limit); a sequence longer than the budget goes alone."""
    out: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        if cur and (len(cur) == micro_batch or (max_tokens and (len(cur) + 1) * max(longest, n) > max_tokens)):
            out.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    return out + ([cur] if cur else [])


def zero_loss(model: torch.nn.Module) -> torch.Tensor:
    return sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)  # type: ignore[return-value]
