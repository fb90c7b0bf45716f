"""The shared-prefix GRPO update (reflectrm/training/packing.py): each prompt encoded once, the same loss
and gradients as one row per rollout, on tiny-random and on SmolLM2, with long prompts."""

from __future__ import annotations

import copy

import pytest
import torch

from reflectrm.config import ModelConfig
from reflectrm.data.items import Critique, TrainingItem
from reflectrm.data.synthetic import synthetic_pairs, target_analysis
from reflectrm.engines.hf import HFEngine
from reflectrm.training.config import GRPOConfig
from reflectrm.training.objectives import group_advantages
from reflectrm.training.packing import flatten_packs, packed_batch, packed_logprobs, prefix_packs
from reflectrm.training.policy import Rollouts, grpo_loss_on, policy_batch, token_logprobs


def long_rollouts(engine: HFEngine, groups: int, n: int, seed: int = 0, lengths: tuple = (30, 90)) -> Rollouts:
    """`groups` reflection prompts (the long ones: 2 analyses of a pair), n random completions each, of
    uneven lengths (30-90 tokens), with rewards that differ within each group."""
    g = torch.Generator().manual_seed(seed)
    prompts, completions = [], []
    for p in synthetic_pairs(groups, seed=seed + 3):
        a = target_analysis(p) * 3
        item = TrainingItem.reflection(p, Critique(a, int(p.label)), Critique(a, 3 - int(p.label)), 1)
        prompt = engine.encode(item.messages())
        for _ in range(n):
            m = int(torch.randint(*lengths, (1,), generator=g))
            prompts.append(prompt)
            completions.append(torch.randint(10, engine.model.config.vocab_size - 1, (m,), generator=g).tolist())
    rewards = torch.tensor([(-1.0) ** i * (1 + i % 3) for i in range(len(prompts))])
    k = len(prompts)
    return Rollouts(prompts, completions, rewards, [True] * k, [True] * k, ["critique"] * k)


def loss_and_grads(model, ro: Rollouts, cfg: GRPOConfig, pad: int, shared: bool, ref=None, budget: int = 0):
    model.zero_grad()
    adv = group_advantages(ro.rewards, cfg.n)
    chunks = (
        prefix_packs(ro.prompt_ids, ro.completion_ids, 8, budget)
        if shared
        else [[[i] for i in range(len(ro.prompt_ids))]]
    )
    tokens = sum(len(c) for c in ro.completion_ids)
    total = 0.0
    for packs in chunks:
        idx, local = flatten_packs(packs)
        loss, _ = grpo_loss_on(
            model, ro.select(idx), cfg, pad, ref_model=ref, advantages=adv[idx], normalizer=tokens,
            packs=local if shared else None,
        )  # fmt: skip
        loss.backward()
        total += float(loss.detach())  # ratio 1: the same value either way; the gradients tell
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return total, grads


def check_equal(model, ro, cfg, pad, ref=None, budget: int = 0, tol: float = 1e-5):
    plain_loss, plain = loss_and_grads(model, ro, cfg, pad, shared=False, ref=ref)
    shared_loss, shared = loss_and_grads(model, ro, cfg, pad, shared=True, ref=ref, budget=budget)
    assert shared_loss == pytest.approx(plain_loss, rel=tol)
    assert float((shared - plain).norm() / plain.norm()) < tol
    assert plain.abs().sum() > 0  # a real gradient, not two zeros


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return HFEngine.from_config(ModelConfig(name="tiny-random"))


def test_packs_group_a_prompts_rollouts_within_the_budgets():
    prompts = [[1] * 100] * 4 + [[2] * 50] * 4
    comps = [[5] * 10] * 8
    assert prefix_packs(prompts, comps, 4) == [[[0, 1, 2, 3]], [[4, 5, 6, 7]]]  # 4 completions a micro-batch
    assert prefix_packs(prompts, comps, 8) == [[[0, 1, 2, 3], [4, 5, 6, 7]]]
    assert prefix_packs(prompts, comps, 3) == [[[0, 1, 2]], [[3]], [[4, 5, 6]], [[7]]]
    assert prefix_packs(prompts, comps, 16, max_tokens=125) == [[[0, 1]], [[2, 3]], [[4, 5, 6, 7]]]
    assert flatten_packs([[4, 5], [9]]) == ([4, 5, 9], [[0, 1], [2]])


def test_shared_prefix_update_equals_the_plain_one_on_tiny_random(tiny):
    cfg = GRPOConfig(n=4)
    ro = long_rollouts(tiny, 3, 4)
    assert min(len(p) for p in ro.prompt_ids) > 300  # long prompts
    pad = tiny.tokenizer.pad_token_id
    with torch.no_grad():  # every completion token's log-prob, packed vs its own row
        plain = token_logprobs(tiny.model, policy_batch(ro.prompt_ids[:4], ro.completion_ids[:4], pad))
        packed = packed_logprobs(tiny.model, packed_batch([ro.prompt_ids[0]], [ro.completion_ids[:4]], pad))
    plen = len(ro.prompt_ids[0])
    for i, c in enumerate(ro.completion_ids[:4]):
        assert torch.allclose(packed[i, : len(c)], plain[i, plen - 1 : plen - 1 + len(c)], atol=1e-5)
    check_equal(tiny.model, ro, cfg, tiny.tokenizer.pad_token_id)
    check_equal(tiny.model, ro, cfg, tiny.tokenizer.pad_token_id, budget=600)  # groups split over packs
    # with the KL term (a frozen copy as reference) and at another temperature
    ref = copy.deepcopy(tiny.model).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.01 * torch.randn_like(p))
    check_equal(tiny.model, ro, GRPOConfig(n=4, kl_coef=0.05, temperature=0.7), tiny.tokenizer.pad_token_id, ref=ref)


def test_shared_prefix_update_equals_the_plain_one_with_lora(tiny):
    from reflectrm.training.config import LoraConfig
    from reflectrm.training.model import with_lora

    model = with_lora(copy.deepcopy(tiny.model), LoraConfig(rank=4, alpha=8))
    with torch.no_grad():  # non-zero adapters, so their gradients are not trivially alike
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    check_equal(model, long_rollouts(tiny, 2, 4), GRPOConfig(n=4, kl_coef=0.05), tiny.tokenizer.pad_token_id, ref=model)


@pytest.mark.slow
def test_shared_prefix_update_equals_the_plain_one_on_smollm2():
    engine = HFEngine.from_config(ModelConfig())  # SmolLM2-135M-Instruct, float32
    ro = long_rollouts(engine, 1, 3, lengths=(16, 28))
    assert len(ro.prompt_ids[0]) > 400
    check_equal(engine.model, ro, GRPOConfig(n=3), engine.tokenizer.pad_token_id)
