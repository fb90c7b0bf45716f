"""The main job's config (jobs/main_config.py): one judge budget for every stage."""

from __future__ import annotations

import pytest

from reflectrm.config import ConfigError, JudgeConfig


def test_main_job_uses_one_budget_everywhere():
    from jobs.main_config import BuildSection, GrpoSection, MainConfig

    cfg = MainConfig(max_new_tokens=48).budgets()
    assert cfg.judge.max_new_tokens == cfg.build.max_new_tokens == cfg.grpo.max_new_tokens == 48
    with pytest.raises(ConfigError, match="set max_new_tokens=N once"):
        MainConfig(build=BuildSection(max_new_tokens=96), grpo=GrpoSection(max_new_tokens=128))
    with pytest.raises(ConfigError, match="never evaluated below"):
        MainConfig(judge=JudgeConfig(max_new_tokens=64), build=BuildSection(max_new_tokens=96))
