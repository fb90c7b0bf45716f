"""Critic-RM's training on the tiny random model, in one plain process: the joint loss learns, the reward head
survives export and load with the same scores, LoRA keeps the head trainable, and a run exports the head."""

from __future__ import annotations

import json

import torch

from reflectrm.config import ModelConfig
from reflectrm.data.items import Critique, TrainingItem
from reflectrm.data.synthetic import synthetic_pairs, target_analysis
from reflectrm.engines.hf import HFEngine
from reflectrm.methods.critic_rm import critique_prompt, render_critique
from reflectrm.training.config import CriticConfig, LoopConfig, LoraConfig, OptimConfig, TrainerConfig
from reflectrm.training.critic import HEAD_FILE, CriticLM, critic_step, load_reward_head, pack
from reflectrm.training.model import export
from reflectrm.training.session import LocalSession
from reflectrm.training.trainer import train_worker
from reflectrm.training.worker import Worker

LORA = LoraConfig(rank=4, alpha=8, target_modules=("q_proj", "v_proj"))


def items(n: int) -> list[TrainingItem]:
    out = []
    for p in synthetic_pairs(n, seed=9):
        good, bad = Critique(target_analysis(p), 8), Critique("It misses the instruction.", 3)
        out.append(TrainingItem.critic(p, *((good, bad) if p.label == 1 else (bad, good))))
    return out


def config(finetune: str = "full", **kw) -> LoopConfig:
    trainer = TrainerConfig(strategy="none", finetune=finetune, lora=LORA, prompts_per_worker=2, micro_batch=4)
    return LoopConfig(
        recipe="critic_rm", model=ModelConfig(name="tiny-random"), optim=OptimConfig(lr=2e-3), trainer=trainer,
        critic=CriticConfig(lambda_start=0.5, lambda_end=0.5, schedule="constant"), **kw,
    )  # fmt: skip


def rewards(model: torch.nn.Module, engine: HFEngine, rows: list[TrainingItem]) -> torch.Tensor:
    tok = engine.tokenizer
    seqs = []
    for r in rows:
        for c, response in zip(r.critiques, (r.pair.response_1, r.pair.response_2)):
            target = tok(render_critique(c.analysis, c.verdict), add_special_tokens=False)["input_ids"]
            seqs.append((engine.encode(critique_prompt(r.pair.context, response)), target + [tok.eos_token_id]))
    b = pack(seqs, tok.pad_token_id)
    with torch.no_grad():
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], reward_index=b["last"]).rewards


def test_joint_loss_learns_and_the_head_survives_export_and_load(tmp_path):
    cfg = config()
    worker = Worker.build(cfg)
    assert isinstance(worker.strategy.module, CriticLM) and worker.ref is None
    rows = items(2)
    metrics = [critic_step(worker, rows, step, 6) for step in range(6)]
    assert metrics[-1]["bt_loss"] < metrics[0]["bt_loss"] and metrics[-1]["lm_loss"] < metrics[0]["lm_loss"]
    assert metrics[-1]["reward_accuracy"] == 1.0 and metrics[-1]["reward_margin"] > metrics[0]["reward_margin"]
    assert all(m["lambda"] == 0.5 and m["target_tokens"] > 0 for m in metrics)
    live = rewards(worker.strategy.module.eval(), worker.engine, rows)

    folder = export(cfg, worker.strategy.full_state_dict(), tmp_path / "final", {})
    assert (folder / HEAD_FILE).is_file() and json.loads((folder / "training.json").read_text())[
        "method"
    ] == "critic_rm"
    engine = HFEngine.from_config(ModelConfig(name=str(folder)))  # the LM loads as any judge does
    loaded = CriticLM(engine.model, load_reward_head(folder, engine.model.config.hidden_size)).eval()
    assert torch.allclose(rewards(loaded, engine, rows), live, atol=1e-6, rtol=0)


def test_lora_trains_the_head_and_the_adapters_only(tmp_path):
    worker = Worker.build(config("lora"))
    module = worker.strategy.module
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert {"reward_head.weight", "reward_head.bias"} <= trainable
    assert all("lora_" in n or n.startswith("reward_head.") for n in trainable)
    before = module.reward_head.weight.detach().clone()
    critic_step(worker, items(2), 0, 1)
    assert not torch.equal(before, module.reward_head.weight)


def test_a_critic_run_exports_the_model_and_its_head(tmp_path):
    cfg = config("lora", max_steps=2, checkpoint_every=1, eval_every=1)
    rows = items(4)
    last = train_worker(cfg, LocalSession(rows, 2, tmp_path / "run"), steps_per_epoch=2, held_out=[])
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all("bt_loss" in m and "eval_accuracy" not in m for m in metrics)
    final = tmp_path / "run" / "final"
    assert last["export"] == str(final) and (final / HEAD_FILE).is_file() and (final / "adapter").is_dir()
    # vLLM loads every top-level *.safetensors as model weights: the head must not be one of them
    assert [p.name for p in final.glob("*.safetensors")] == ["model.safetensors"]
    hidden = json.loads((final / "config.json").read_text())["hidden_size"]
    assert load_reward_head(final, hidden).weight.shape == (1, hidden)


def test_critic_judge_scores_responses_pointwise_and_pairs_by_the_mean_reward(tmp_path):
    import math

    import pytest

    from reflectrm.critic_judge import CriticJudge

    cfg = config(max_steps=2, checkpoint_every=0, eval_every=0)
    train_worker(cfg, LocalSession(items(4), 2, tmp_path / "run"), steps_per_epoch=2, held_out=[])
    one = CriticJudge.load(tmp_path / "run" / "final", m=1, max_new_tokens=12)
    pair = items(1)[0].pair
    (r,) = one.judge([pair])
    s1, s2 = r.responses
    assert len(s1.critiques) == len(s2.critiques) == 1 and r.m == 1
    assert r.score == pytest.approx(1 / (1 + math.exp(-(s1.reward - s2.reward))))
    assert r.preferred == (1 if s1.reward > s2.reward else 2)
    # pointwise: a response's reward does not depend on the other response or on its position
    alone = one.reward(pair.context, [pair.response_2], key=pair.id)[0]
    assert alone.reward == pytest.approx(s2.reward, abs=1e-5)
    assert one.judge([pair.swapped()])[0].responses[0].reward == pytest.approx(s2.reward, abs=1e-5)
    four = CriticJudge.load(tmp_path / "run" / "final", m=4, max_new_tokens=12, seed=3)
    scored = four.reward(pair.context, [pair.response_1], key=pair.id)[0]
    assert len(scored.critiques) == 4 and scored.reward == pytest.approx(sum(c["reward"] for c in scored.critiques) / 4)
    d = four.judge([pair])[0].to_dict()
    assert d["method"] == "critic_rm" and d["mode"] == "critic@4" and len(d["critiques"][0]) == 4
    assert d["usage"]["completion_tokens"] == sum(c["completion_tokens"] for side in d["critiques"] for c in side)
    with pytest.raises(FileNotFoundError, match="no reward head"):
        CriticJudge.load("tiny-random")


def test_reflectrm_judge_runs_critic_rm_and_build_data_refuses_it(tmp_path, capfd):
    import pytest

    from jobs.ray_building import BuildDataConfig
    from jobs.ray_scoring import ScoreConfig
    from reflectrm.cli import main
    from reflectrm.config import ConfigError, JudgeConfig

    cfg = config(max_steps=1, checkpoint_every=0, eval_every=0)
    train_worker(cfg, LocalSession(items(2), 2, tmp_path / "run"), steps_per_epoch=1, held_out=[])
    model = str(tmp_path / "run" / "final")
    argv = ["judge", f"model={model}", "judge.method=critic_rm", "judge.mode=majority", "judge.n=2"]
    capfd.readouterr()  # the training's output
    assert (
        main([*argv, "judge.max_new_tokens=8", "--prompt", "2+2?", "--response-1", "4", "--response-2", "5", "--json"])
        == 0
    )
    out = json.loads(capfd.readouterr().out)
    assert out["method"] == "critic_rm" and out["mode"] == "critic@2" and [len(c) for c in out["critiques"]] == [2, 2]
    assert out["preferred"] in (1, 2) and 0 < out["score"] < 1
    ScoreConfig(judge=JudgeConfig(method="critic_rm", mode="greedy"))  # the scoring jobs host it (integration)
    with pytest.raises(ConfigError, match="Critic-RM's data is its generate-and-filter"):
        BuildDataConfig(judge=JudgeConfig(method="critic_rm", mode="greedy"))


def test_a_critic_run_from_a_critic_export_goes_on_with_its_head(tmp_path):
    import dataclasses

    from reflectrm.config import ModelConfig

    cfg = config(max_steps=1, checkpoint_every=0, eval_every=0)
    train_worker(cfg, LocalSession(items(2), 2, tmp_path / "run"), steps_per_epoch=1, held_out=[])
    final = tmp_path / "run" / "final"
    saved = load_reward_head(final, json.loads((final / "config.json").read_text())["hidden_size"])
    worker = Worker.build(dataclasses.replace(cfg, model=ModelConfig(name=str(final))))
    assert torch.equal(worker.strategy.module.reward_head.weight.detach(), saved.weight)
    fresh = Worker.build(cfg)  # a plain model starts with a new head
    assert not torch.equal(fresh.strategy.module.reward_head.weight.detach(), saved.weight)
