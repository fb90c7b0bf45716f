"""The GRPO and SFT steps on the tiny random model (one process, no Ray)."""

from __future__ import annotations

import pytest
import torch

from reflectrm.config import ModelConfig
from reflectrm.data.items import TrainingItem
from reflectrm.engines.hf import HFEngine
from reflectrm.prompts import render_judgment
from reflectrm.training.config import GRPOConfig
from reflectrm.training.policy import (
    Rollouts,
    grpo_loss_on,
    policy_batch,
    rollout,
    sft_loss_on,
    token_logprobs,
)
from tests.helpers import PAIR


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    return HFEngine.from_config(ModelConfig(name="tiny-random"))


def row():
    return TrainingItem.preference(PAIR)


def test_a_rollout_tokenises_each_prompt_once_and_on_the_given_model(engine, monkeypatch):
    calls = []
    encode = engine.encode
    monkeypatch.setattr(engine, "encode", lambda m: calls.append(1) or encode(m))
    copy = torch.nn.Linear(1, 1)
    policy = engine.with_model(engine.model)
    assert engine.with_model(copy).model is copy and engine.model is not copy  # the engine itself is left as it was
    r = rollout(policy, [row(), row()], GRPOConfig(n=2, max_new_tokens=4), seed=1)
    assert len(calls) == 2  # one tokenisation per prompt (inside generate); the loss reuses Generation.prompt_ids
    assert r.prompt_ids[0] == encode(row().messages())


def test_rollouts_are_graded_by_the_parser(engine):
    cfg = GRPOConfig(n=3, max_new_tokens=6)
    r = rollout(engine, [row(), row()], cfg, seed=1)
    assert len(r.completion_ids) == 6 and r.rewards.shape == (6,) and r.tasks == ["response"] * 6
    assert all(len(c) <= 6 for c in r.completion_ids)
    assert r.valid == [False] * 6 and r.rewards.tolist() == [-1.0] * 6  # the untrained model never follows the format


def test_policy_batch_masks_only_completion_tokens():
    b = policy_batch([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]], pad_id=0)
    assert b["input_ids"].tolist() == [[1, 2, 3, 5, 6], [4, 7, 8, 9, 0]]
    assert b["completion_mask"].tolist() == [[0, 0, 1, 1], [1, 1, 1, 0]]


def test_a_grpo_step_raises_the_advantaged_completion(engine):
    """Two rollouts of one prompt, one rewarded +1 and one -1: after one optimizer step the rewarded
    completion gains on the other (they share most tokens, so only the gap is a clean signal)."""
    model = engine.model
    tok = engine.tokenizer
    prompt = engine.encode(row().messages())
    good = tok(render_judgment("fine", 1), add_special_tokens=False)["input_ids"]
    bad = tok(render_judgment("poor", 2), add_special_tokens=False)["input_ids"]
    rollouts = Rollouts(
        [prompt, prompt], [good, bad], torch.tensor([1.0, -1.0]), [True, True], [True, False], ["response"] * 2
    )
    cfg = GRPOConfig(n=2)
    batch = policy_batch(rollouts.prompt_ids, rollouts.completion_ids, tok.pad_token_id)
    before = sequence_logp(model, batch)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, info = grpo_loss_on(model, rollouts, cfg, tok.pad_token_id, ref_model=model)
    assert torch.isfinite(loss) and info["tokens"] == len(good) + len(bad) and info["clip_fraction"] == 0.0
    loss.backward()
    opt.step()
    after = sequence_logp(model, batch)
    model.load_state_dict(state)  # leave the shared engine as it was
    assert after[0] - after[1] > before[0] - before[1] and after[0] > before[0]


def sequence_logp(model, batch):
    with torch.no_grad():
        return (token_logprobs(model, batch) * batch["completion_mask"]).sum(dim=1)


def test_kl_term_with_a_frozen_reference(engine):
    tok = engine.tokenizer
    prompt = engine.encode(row().messages())
    comp = tok(render_judgment("x", 1), add_special_tokens=False)["input_ids"]
    rollouts = Rollouts(
        [prompt, prompt], [comp, comp[:5]], torch.tensor([1.0, -1.0]), [True, False], [True, False], ["response"] * 2
    )
    _, info = grpo_loss_on(
        engine.model, rollouts, GRPOConfig(n=2, kl_coef=0.1), tok.pad_token_id, ref_model=engine.model
    )
    assert info["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy IS the reference: KL 0


def test_sft_loss_falls_on_target_tokens_only(engine):
    tok = engine.tokenizer
    prompt = engine.encode(row().messages())
    target = tok(render_judgment("ok", 1), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    loss = sft_loss_on(engine.model, [prompt], [target], tok.pad_token_id)
    # the same loss by hand: mean NLL of the target tokens given everything before them
    batch = policy_batch([prompt], [target], tok.pad_token_id)
    with torch.no_grad():
        lp = token_logprobs(engine.model, batch)
    by_hand = -(lp * batch["completion_mask"]).sum() / batch["completion_mask"].sum()
    assert float(loss.detach()) == pytest.approx(float(by_hand), rel=1e-4)


def test_logprobs_only_from_the_first_completion_position_match_the_full_pass(engine):
    b = policy_batch([[5, 6, 7, 8, 9], [4, 5, 6]], [[10, 11], [12, 13, 14]], pad_id=engine.tokenizer.pad_token_id)
    with torch.no_grad():
        fast = token_logprobs(engine.model, b)
        full = torch.log_softmax(
            engine.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float(), -1
        )
        full = full.gather(2, b["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    m = b["completion_mask"]
    assert fast.shape == full.shape and torch.allclose(fast * m, full * m, atol=1e-5)
    assert fast[:, :2].abs().sum() == 0  # before the first completion position nothing is computed


def test_sft_loss_equals_the_full_pass_cross_entropy(engine):
    import torch.nn.functional as F

    prompts, targets = [[5, 6, 7, 8], [4, 5, 6, 7, 8, 9]], [[10, 11, 12], [13]]
    with torch.no_grad():
        fast = sft_loss_on(engine.model, prompts, targets, engine.tokenizer.pad_token_id)
        total, count = 0.0, 0
        for p, t in zip(prompts, targets):
            ids = torch.tensor([p + t])
            lp = F.log_softmax(engine.model(input_ids=ids).logits[0, :-1].float(), -1)
            total += -sum(float(lp[len(p) - 1 + k, tok]) for k, tok in enumerate(t))
            count += len(t)
    assert float(fast) == pytest.approx(total / count, rel=1e-5)
