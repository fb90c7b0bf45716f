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
