"""The GRPO step's metrics (reflectrm/training/step.py step_metrics) from summed counts, with no model:
rates are over rollouts of all workers, seconds are averaged over workers."""

from __future__ import annotations

import pytest

from reflectrm.training.step import step_metrics


def sums(**changes: float) -> dict[str, float]:
    """Counts summed over 2 workers: 12 preference and 4 reflection rollouts."""
    base = {
        "loss": 0.5,
        "kl": 2.0,
        "tokens": 400,
        "gen_s": 10.0,
        "sync_s": 1.0,
        "update_s": 30.0,
        "diff_sum": 0.02,
        "diff_tokens": 400,
        "seq_tokens": 2000,
        "too_long": 1,
        "groups": 4,
        "signal_groups": 3,
        "pref_rollouts": 12,
        "pref_reward": 6.0,
        "pref_valid": 10,
        "pref_correct": 9,
        "refl_rollouts": 4,
        "refl_reward": -2.0,
        "refl_valid": 2,
        "refl_correct": 1,
    }
    return base | changes


def test_rates_are_over_all_rollouts_and_seconds_over_workers():
    m = step_metrics(sums(), size=2, grad_norm=1.5, lr=1e-4)
    assert m["loss"] == 0.25 and m["gen_seconds"] == 5.0 and m["update_seconds"] == 15.0 and m["sync_seconds"] == 0.5
    assert m["kl"] == pytest.approx(2.0 / 400) and m["rollout_logprob_diff"] == pytest.approx(0.02 / 400)
    assert m["gen_tokens_per_s"] == pytest.approx(400 / 5.0) and m["update_tokens_per_s"] == pytest.approx(2000 / 15)
    assert (m["pref_reward_mean"], m["pref_valid_rate"], m["pref_accuracy"]) == (0.5, 10 / 12, 9 / 12)
    assert (m["refl_reward_mean"], m["refl_valid_rate"], m["refl_accuracy"]) == (-0.5, 0.5, 0.25)
    assert m["reward_mean"] == pytest.approx(4.0 / 16) and m["valid_rate"] == 0.75 and m["accuracy"] == 10 / 16
    assert m["signal_group_rate"] == 0.75 and m["too_long"] == 1 and (m["grad_norm"], m["lr"]) == (1.5, 1e-4)


def test_a_step_with_every_prompt_too_long_has_no_means():
    empty = sums(pref_rollouts=0, refl_rollouts=0, groups=0, signal_groups=0, diff_tokens=0, tokens=0)
    m = step_metrics(empty, size=1, grad_norm=0.0, lr=1e-4)
    assert m["pref_rollouts"] == m["refl_rollouts"] == 0 and m["signal_group_rate"] == 0.0
    assert not {"reward_mean", "valid_rate", "accuracy", "rollout_logprob_diff", "pref_reward_mean"} & set(m)


def test_the_loss_takes_log_probs_at_the_sampling_temperature():
    import torch
    import torch.nn.functional as F

    from reflectrm.training.policy import token_logprobs

    logits = torch.randn(1, 5, 7, generator=torch.Generator().manual_seed(0))

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask, use_cache, logits_to_keep):
            return type("Out", (), {"logits": logits[:, logits_to_keep]})

    ids = torch.tensor([[1, 2, 3, 4, 5]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    for t in (1.0, 0.7, 2.0):
        want = torch.gather(F.log_softmax(logits[:, :4] / t, -1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(token_logprobs(Fixed(), batch, t), want)


def test_grpo_refuses_a_nucleus_and_a_resume_under_another_learning_rate(tmp_path):
    import dataclasses

    from reflectrm.training.config import GRPOConfig, LoopConfig, OptimConfig
    from reflectrm.training.trainer import check_resume, resume_settings

    with pytest.raises(ValueError, match="grpo.top_p=0.9.*use grpo.top_p=1.0"):
        GRPOConfig(top_p=0.9)
    cfg = LoopConfig(optim=OptimConfig(lr=1e-5))
    state = {"step": 4, "settings": resume_settings(cfg)}
    check_resume(cfg, state, tmp_path)  # the same settings resume
    check_resume(dataclasses.replace(cfg, eval_every=3), state, tmp_path)  # execution-only settings may change
    with pytest.raises(ValueError, match=r"optim.lr=1e-05 there, 3e-05 now"):
        check_resume(dataclasses.replace(cfg, optim=OptimConfig(lr=3e-5)), state, tmp_path)
