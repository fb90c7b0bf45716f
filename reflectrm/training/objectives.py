"""The GRPO objective of ReflectRM's unified training (method.md §3), as small tensor functions.

reward      the verdict against the gold label: +1 right, -1 wrong, -1 invalid (configurable;
            optional bonus for a valid format). Reflection items: "right" = picked the correct critique.
advantages  group-normalised: A_i = (r_i - mean(r_group)) / (std(r_group) + eps)
loss        the clipped policy-gradient loss, averaged over all generated tokens of the batch
            (token-level), plus beta * KL(policy || reference) with the low-variance estimator
            k3 = exp(ref - logp) - (ref - logp) - 1.
"""

from __future__ import annotations

import torch

from reflectrm.methods import JudgeMethod, method_for
from reflectrm.parsing import parse_output
from reflectrm.prompts import Task
from reflectrm.rewards import Graded, RewardConfig

__all__ = ["Graded", "RewardConfig", "grade", "group_advantages", "grpo_loss", "kl_low_variance", "sft_labels"]


def grade(
    text: str, task: Task, label: int, cfg: RewardConfig = RewardConfig(), method: JudgeMethod | None = None
) -> Graded:
    """The verifiable reward of one rollout: the judge method's grade of a preference rollout (ReflectRM's:
    THE parser's verdict against the gold label; RM-R1's: its answer tag), THE parser's for a reflection one."""
    if task == "response":
        return (method or method_for("reflectrm")).grade(text, label, cfg)
    verdict = parse_output(text, task).verdict
    if verdict is None:
        return Graded(cfg.invalid, False, False)
    correct = verdict == label
    return Graded((cfg.correct if correct else cfg.wrong) + cfg.format_bonus, True, correct)


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """(r - mean) / (std + eps) within consecutive groups of `group_size` rollouts of one prompt.
    A group whose rewards are all equal gets zero advantages (it teaches nothing)."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.view(-1, group_size)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, unbiased=False, keepdim=True)  # population std, as in GRPO implementations
    return ((groups - mean) / (std + eps)).view(-1)


def kl_low_variance(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(policy || reference): exp(d) - d - 1 with d = ref - logp (>= 0)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The token-level clipped loss. Shapes: logp, old_logp, ref_logp, mask [B, T]; advantages [B].

    loss = sum over generated tokens of -min(ratio * A, clip(ratio, 1-e, 1+e) * A) [+ kl_coef * k3],
    divided by `normalizer` (default: the number of generated tokens in the batch; a trainer passes
    the token count of the whole step, over all micro-batches and ranks)."""
    mask = mask.to(logp.dtype)
    tokens = mask.sum().clamp(min=1)
    norm = tokens if normalizer is None else torch.tensor(float(normalizer), dtype=logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv)
    per_token = -surrogate
    kl = torch.zeros((), dtype=logp.dtype)
    if ref_logp is not None and kl_coef:
        k3 = kl_low_variance(logp, ref_logp)
        per_token = per_token + kl_coef * k3
        kl = (k3 * mask).sum() / tokens
    loss = (per_token * mask).sum() / norm
    clipped = ((ratio - 1).abs() > clip).to(logp.dtype)
    return loss, {"kl": float(kl.detach()), "clip_fraction": float((clipped * mask).sum() / tokens)}


def sft_labels(prompt_ids: list[int], target_ids: list[int], ignore_index: int = -100) -> tuple[list[int], list[int]]:
    """(input ids, labels) for supervised training on a target judgment: the prompt's tokens are
    masked with `ignore_index`, so the loss falls on the target tokens only."""
    return prompt_ids + target_ids, [ignore_index] * len(prompt_ids) + list(target_ids)
