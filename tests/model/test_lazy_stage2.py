"""Lazy stage 2 on real models, where stage 2 runs: lazy gives full's verdicts, scores and anchors, and
each comparison it asks gives full's answer. Two judges whose sampled verdicts disagree:
- tiny-judge (valid about half the time, verdicts it cannot yet get right), on synthetic pairs;
- SmolLM2-135M-Instruct after a short SFT warm start (like benchmarks/stage2_cost.py's judge), on LLMBar pairs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.engines.hf import HFEngine
from reflectrm.inference import Judge

LLMBAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "llmbar" / "natural.json"


def assert_lazy_equals_full(engine, pairs, min_with_stage2: int, **judge) -> None:
    full = Judge(engine, JudgeConfig(**judge, stage2="full")).judge(pairs, "reflect")
    lazy = Judge(engine, JudgeConfig(**judge, stage2="lazy")).judge(pairs, "reflect")
    ran = [i for i, r in enumerate(full) if r.reflections]
    assert len(ran) >= min_with_stage2, f"stage 2 ran on {len(ran)} of {len(pairs)} pairs: the test needs more"
    for f, lz in zip(full, lazy):
        assert (lz.preferred, lz.score, lz.anchor, lz.majority) == (f.preferred, f.score, f.anchor, f.majority)
        assert {r.index for r in lz.reflections} | set(lz.not_asked) == {r.index for r in f.reflections}
        for r in lz.reflections:  # each comparison gives the same answer in whichever round it runs
            assert r == next(x for x in f.reflections if x.index == r.index)
    assert sum(len(r.reflections) for r in lazy) <= sum(len(r.reflections) for r in full)


def test_lazy_equals_full_where_stage2_runs():
    engine = HFEngine.from_config(ModelConfig(name="tiny-judge"))
    assert_lazy_equals_full(engine, synthetic_pairs(16, seed=21), 3, n=6, max_new_tokens=64, seed=0)


@pytest.mark.slow
@pytest.mark.skipif(not LLMBAR.is_file(), reason="../shared/data is not beside this checkout")
def test_lazy_equals_full_on_a_warm_started_smollm2(tmp_path):
    """~4 minutes: a 6-step warm start (valid about half the time, so verdicts disagree), then the vLLM
    engine where installed (the HF engine otherwise) judges 6 LLMBar pairs with both stage-2 settings."""
    from reflectrm.data.formats import load_pairs
    from reflectrm.engines import load_engine
    from reflectrm.engines.vllm import vllm_available
    from reflectrm.training.warm_start import warm_start

    model = warm_start("smollm2-135m-instruct", steps=6, out=tmp_path / "warm", lr=6e-5, critique=False)
    engine = load_engine(ModelConfig(name=str(model), engine="vllm" if vllm_available() else "hf"))
    pairs, _ = load_pairs("llmbar", LLMBAR, limit=6)
    try:
        assert_lazy_equals_full(engine, pairs, 2, n=6, max_new_tokens=128, seed=0)
    finally:
        if hasattr(engine, "close"):
            engine.close()
