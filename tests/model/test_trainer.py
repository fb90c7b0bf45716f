"""The training loop in one plain process (LocalSession, no Ray) on the tiny random model: GRPO with
LoRA and the KL term to the adapter-disabled reference, SFT with a LoRA export that merges and reloads."""

from __future__ import annotations

import json
import math

import pytest
import torch

from reflectrm.config import ModelConfig
from reflectrm.engines.hf import HFEngine
from reflectrm.training.config import GRPOConfig, LoopConfig, LoraConfig, OptimConfig, TrainerConfig
from reflectrm.training.session import LocalSession
from reflectrm.training.trainer import train_worker
from tests.helpers import write_toy_mix

LORA = LoraConfig(rank=4, alpha=8, target_modules=("q_proj", "v_proj"))


def rows(tmp_path, n):
    from reflectrm.data.items import read_items

    return read_items(write_toy_mix(tmp_path / "mix.parquet", n))


def test_grpo_lora_with_kl_runs_and_logs_each_step(tmp_path):
    data = rows(tmp_path, 6)
    cfg = LoopConfig(
        recipe="grpo",
        model=ModelConfig(name="tiny-random"),
        grpo=GRPOConfig(n=2, max_new_tokens=8, kl_coef=0.05),
        optim=OptimConfig(lr=1e-3),
        trainer=TrainerConfig(strategy="none", finetune="lora", lora=LORA, prompts_per_worker=2, micro_batch=3),
        max_steps=2,
        checkpoint_every=1,
        eval_every=1,
        eval_max_new_tokens=4,
    )
    assert cfg.grad_accum() == 2  # 2 prompts x 2 rollouts in micro-batches of 3
    out = tmp_path / "run"
    last = train_worker(cfg, LocalSession(data, 2, out), steps_per_epoch=len(data) // 2, held_out=data[:2])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert (
            math.isfinite(m["loss"]) and 0 <= m["valid_rate"] <= 1 and m["reward_mean"] == -1.0
        )  # the untrained model: invalid
        assert m["completion_tokens"] > 0 and "eval_accuracy" in m and m["kl"] >= 0
    assert (out / "checkpoints" / "step_000002" / "state.json").exists()
    assert (out / "final" / "adapter" / "adapter_config.json").exists() and last["export"] == str(out / "final")


def test_sft_lora_export_merges_and_reloads_with_equal_outputs(tmp_path):
    data = [
        r.with_target("<Analysis>\nok\n</Analysis>\n<Result>Response 1 is better than Response 2</Result>")
        for r in rows(tmp_path, 4)
        if r.task == "response"
    ]
    cfg = LoopConfig(
        recipe="sft",
        model=ModelConfig(name="tiny-random"),
        optim=OptimConfig(lr=5e-2),
        trainer=TrainerConfig(strategy="none", finetune="lora", lora=LORA, prompts_per_worker=2, micro_batch=2),
        max_steps=2,
        checkpoint_every=0,
        eval_every=0,
        eval_max_new_tokens=4,
    )
    out = tmp_path / "run"
    train_worker(cfg, LocalSession(data, 2, out), steps_per_epoch=2, held_out=[])
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[1] < losses[0]  # the adapter learns the target

    from peft import PeftModel

    merged = HFEngine.from_config(ModelConfig(name=str(out / "final")))  # what `reflectrm judge model=DIR` loads
    base = HFEngine.from_config(ModelConfig(name="tiny-random"))
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        plain = base.model(input_ids=ids).logits
        with_adapter = (
            PeftModel.from_pretrained(base.model, str(out / "final" / "adapter")).eval()(input_ids=ids).logits
        )
        merged_logits = merged.model(input_ids=ids).logits
    assert not torch.allclose(plain, merged_logits, atol=1e-4)  # training changed the model
    assert torch.allclose(with_adapter, merged_logits, atol=1e-4)  # merge == base + adapter
    assert "Recipe `sft`" in (out / "final" / "README.md").read_text()


def test_resume_in_one_process_continues_from_the_checkpoint(tmp_path):
    data = [
        r.with_target("<Analysis>\nok\n</Analysis>\n<Result>Response 2 is better than Response 1</Result>")
        for r in rows(tmp_path, 6)
        if r.task == "response"
    ]
    base = dict(
        recipe="sft",
        model=ModelConfig(name="tiny-random"),
        optim=OptimConfig(lr=1e-2),
        trainer=TrainerConfig(strategy="none", prompts_per_worker=2, micro_batch=2),
        checkpoint_every=1,
        eval_every=0,
    )
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_worker(LoopConfig(**base, max_steps=3), LocalSession(data, 2, straight), 3, [])
    with pytest.raises(RuntimeError, match="injected failure at step 2"):
        train_worker(LoopConfig(**base, max_steps=3, fail_at_step=2), LocalSession(data, 2, split), 3, [])
    train_worker(
        LoopConfig(**base, max_steps=3, fail_at_step=2), LocalSession(data, 2, split), 3, []
    )  # the re-run resumes
    read = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [m["step"] for m in read(split)] == [1, 2, 3]
    assert [m["loss"] for m in read(split)] == pytest.approx([m["loss"] for m in read(straight)], rel=1e-5)
    starts = [
        json.loads(line)["resumed_from"]
        for line in (split / "events.jsonl").read_text().splitlines()
        if '"start"' in line
    ]
    assert starts == [0, 1]


def test_grpo_skips_and_counts_prompts_over_the_limit(tmp_path):
    """One over-long prompt never kills a GRPO run (it used to raise, and a restart failed again on the same
    batch): its rows are skipped and counted as `too_long`; a step whose every prompt is too long still runs."""
    import dataclasses

    from reflectrm.records import Message
    from reflectrm.training.run_log import summarize_metrics

    data = rows(tmp_path, 4)
    pair = data[0].pair
    long = pair.context[:-1] + (Message("user", pair.context[-1].content + " and more" * 400),)
    data[0] = dataclasses.replace(data[0], pair=dataclasses.replace(pair, context=long))
    engine = HFEngine.from_config(ModelConfig(name="tiny-random"))
    lengths = [engine.count_tokens(r.messages()) for r in data]
    limit = max(lengths[1:]) + 1
    assert lengths[0] > limit
    order = [data[0], data[1], data[0], data[2]]  # steps 1 and 2: one prompt of two too long
    order += [data[0], data[0]]  # step 3: all too long
    cfg = LoopConfig(
        recipe="grpo",
        model=ModelConfig(name="tiny-random", max_prompt_tokens=limit),
        grpo=GRPOConfig(n=2, max_new_tokens=4),
        trainer=TrainerConfig(strategy="none", prompts_per_worker=2, micro_batch=2),
        max_steps=3,
        checkpoint_every=0,
        eval_every=0,
    )
    out = tmp_path / "run"
    train_worker(cfg, LocalSession(order, 2, out), steps_per_epoch=3, held_out=[])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["too_long"] for m in metrics] == [1, 1, 2]
    assert [m["pref_rollouts"] + m["refl_rollouts"] for m in metrics] == [2, 2, 0]
    assert summarize_metrics(metrics)["too_long"] == 4


def test_a_token_budget_splits_micro_batches_with_the_same_gradients(tmp_path):
    """trainer.micro_batch_tokens: memory follows sequence length. Splitting an SFT step's micro-batch to one
    sequence at a time (a budget of 1 token) gives the same loss and gradient norm as one micro-batch."""
    data = [
        r.with_target("<Analysis>\nok\n</Analysis>\n<Result>Response 1 is better</Result>") for r in rows(tmp_path, 4)
    ]
    runs = {}
    for budget in (0, 1):
        cfg = LoopConfig(
            recipe="sft",
            model=ModelConfig(name="tiny-random"),
            optim=OptimConfig(lr=1e-3),
            trainer=TrainerConfig(strategy="none", prompts_per_worker=4, micro_batch=4, micro_batch_tokens=budget),
            max_steps=1,
            checkpoint_every=0,
            eval_every=0,
        )
        out = tmp_path / f"run{budget}"
        torch.manual_seed(0)
        train_worker(cfg, LocalSession(data, 4, out), steps_per_epoch=1, held_out=[])
        runs[budget] = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert runs[0]["loss"] > 0 and runs[0]["grad_norm"] > 0
    assert runs[1]["loss"] == pytest.approx(runs[0]["loss"], rel=1e-5)
    assert runs[1]["grad_norm"] == pytest.approx(runs[0]["grad_norm"], rel=1e-4)
