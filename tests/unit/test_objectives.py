"""GRPO pieces against hand-computed values (method.md §3)."""

from __future__ import annotations

import math

import pytest
import torch

from reflectrm.prompts import render_judgment
from reflectrm.training.objectives import (
    Graded,
    RewardConfig,
    grade,
    group_advantages,
    grpo_loss,
    kl_low_variance,
    sft_labels,
)


def test_rewards_from_the_parser_against_the_gold_label():
    right, wrong = render_judgment("ok", 1), render_judgment("ok", 2)
    assert grade(right, "response", 1) == Graded(1.0, True, True)
    assert grade(wrong, "response", 1) == Graded(-1.0, True, False)
    assert grade("Response 1 is better", "response", 1) == Graded(-1.0, False, False)  # invalid format
    assert grade(render_judgment("ok", 2, "critique"), "critique", 2) == Graded(1.0, True, True)
    assert grade(render_judgment("ok", 2, "response"), "critique", 2).valid is False  # wrong nouns for the task
    cfg = RewardConfig(correct=1.0, wrong=0.0, invalid=-0.5, format_bonus=0.1)
    assert grade(right, "response", 1, cfg).reward == pytest.approx(1.1) and grade(
        wrong, "response", 1, cfg
    ).reward == pytest.approx(0.1)
    assert grade("junk", "response", 1, cfg).reward == -0.5


def test_group_normalised_advantages():
    r = torch.tensor([1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0])
    a = group_advantages(r, 4, eps=0.0 + 1e-12)
    # group 1: mean -0.5, population std sqrt(0.75)
    s = math.sqrt(0.75)
    assert a[:4].tolist() == pytest.approx([1.5 / s, -0.5 / s, -0.5 / s, -0.5 / s])
    assert a[4:].tolist() == [0.0] * 4  # all equal: no signal
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(r, 3)


def test_kl_low_variance_estimator():
    logp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.0, -1.0, -1.5])
    expected = [math.exp(d) - d - 1 for d in (0.0, 1.0, -1.0)]
    assert kl_low_variance(logp, ref).tolist() == pytest.approx(expected)
    assert (kl_low_variance(torch.randn(100), torch.randn(100)) >= 0).all()


def test_clipped_token_level_loss_hand_computed():
    # two rollouts: A = +1 (2 tokens) and A = -1 (1 token + 1 padding)
    old = torch.zeros(2, 2)
    logp = torch.tensor([[math.log(1.5), math.log(0.9)], [math.log(0.7), 5.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    adv = torch.tensor([1.0, -1.0])
    loss, info = grpo_loss(logp, old, adv, mask, clip=0.2)
    # token 1: ratio 1.5, A=+1 -> min(1.5, 1.2) = 1.2;  token 2: ratio .9 -> .9;  token 3: ratio .7, A=-1 -> min(-.7, -.8) = -.8
    assert float(loss) == pytest.approx(-(1.2 + 0.9 - 0.8) / 3)
    assert info["clip_fraction"] == pytest.approx(2 / 3) and info["kl"] == 0.0
    ref = torch.zeros(2, 2)
    loss_kl, info = grpo_loss(logp, old, adv, mask, clip=0.2, ref_logp=ref, kl_coef=0.1)
    k3 = [math.exp(-x) + x - 1 for x in (math.log(1.5), math.log(0.9), math.log(0.7))]
    assert info["kl"] == pytest.approx(sum(k3) / 3)
    assert float(loss_kl) == pytest.approx(float(loss) + 0.1 * sum(k3) / 3)


def test_loss_gradient_flows_only_through_unclipped_tokens():
    logp = torch.tensor([[math.log(1.5), math.log(1.1)]], requires_grad=True)
    loss, _ = grpo_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), clip=0.2)
    loss.backward()
    assert logp.grad[0, 0] == 0.0 and logp.grad[0, 1] == pytest.approx(-1.1 / 2)  # d(-ratio/2)/dlogp = -ratio/2


def test_sft_masks_the_prompt_tokens():
    ids, labels = sft_labels([5, 6, 7], [8, 9])
    assert ids == [5, 6, 7, 8, 9] and labels == [-100, -100, -100, 8, 9]
