"""Lazy stage 2 on a real model (tiny-judge: it writes valid judgments about half the time, so the
sampled verdicts disagree and stage 2 runs): lazy gives full's verdicts and scores, with fewer calls."""

from __future__ import annotations

from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.engines.hf import HFEngine
from reflectrm.inference import Judge


def test_lazy_equals_full_where_stage2_runs():
    engine = HFEngine.from_config(ModelConfig(name="tiny-judge"))
    pairs = synthetic_pairs(12, seed=21)
    base = dict(n=6, max_new_tokens=64, seed=0)
    full = Judge(engine, JudgeConfig(**base, stage2="full")).judge(pairs, "reflect")
    lazy = Judge(engine, JudgeConfig(**base, stage2="lazy")).judge(pairs, "reflect")
    ran = [i for i, r in enumerate(full) if r.reflections]
    assert len(ran) >= 3, f"stage 2 ran on only {len(ran)} of {len(pairs)} pairs: the test needs disagreeing verdicts"
    for f, lz in zip(full, lazy):
        assert (lz.preferred, lz.score, lz.anchor, lz.majority) == (f.preferred, f.score, f.anchor, f.majority)
        assert {r.index for r in lz.reflections} | set(lz.not_asked) == {r.index for r in f.reflections}
        for r in lz.reflections:  # each comparison gives the same answer in whichever round it runs
            assert r == next(x for x in f.reflections if x.index == r.index)
    assert sum(len(r.reflections) for r in lazy) <= sum(len(r.reflections) for r in full)
