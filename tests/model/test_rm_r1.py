"""RM-R1 end to end on the tiny random model, in one plain process: its SFT (distillation) on RM-R1-format
targets read from RM-R1's own row format, its GRPO with RM-R1's reward, and judging with the result."""

from __future__ import annotations

import json
import math

from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.files import write_rows
from reflectrm.data.sources import DataConfig
from reflectrm.data.synthetic import synthetic_pairs, target_analysis
from reflectrm.engines.hf import HFEngine
from reflectrm.inference import Judge
from reflectrm.methods import method_for
from reflectrm.training.config import GRPOConfig, LoopConfig, LoraConfig, OptimConfig, TrainerConfig
from reflectrm.training.data import load_items
from reflectrm.training.session import LocalSession
from reflectrm.training.trainer import train_worker

LORA = LoraConfig(rank=4, alpha=8, target_modules=("q_proj", "v_proj"))
R1 = method_for("rm_r1")


def rm_r1_rows(pairs):
    """Pairs as RM-R1's own rows: the judge prompt in context_messages, winner, the trace last."""
    rows = []
    for p in pairs:
        prompt = (
            f"[Client Question]\n{p.query}\n\n[The Start of Chatbot A's Response]\n{p.response_1}\n"
            f"[The End of Chatbot A's Response]\n\n[The Start of Chatbot B's Response]\n{p.response_2}\n"
            "[The End of Chatbot B's Response]"
        )
        trace = R1.render(target_analysis(p), p.label)
        msgs = [{"role": "system", "content": "judge"}, {"role": "user", "content": prompt}]
        rows.append(
            {
                "context_messages": [*msgs, {"role": "assistant", "content": trace}],
                "winner": f"model_{'ab'[p.label - 1]}",
            }
        )
    return rows


def test_rm_r1_sft_then_grpo_then_judge(tmp_path):
    pairs = synthetic_pairs(8, seed=5)
    path = tmp_path / "rm_r1.jsonl"
    write_rows(rm_r1_rows(pairs), path)
    sft_rows, _, _ = load_items("sft", DataConfig(format="rm-r1", path=str(path), held_out=0), 0, R1)
    assert all(R1.parse(r.target).verdict == r.label for r in sft_rows)
    # a fixed trace names a position, so its item keeps the row's order (orders=both does not swap it)
    assert {(r.pair.response_1, r.label) for r in sft_rows} == {(p.response_1, p.label) for p in pairs}
    trainer = TrainerConfig(strategy="none", finetune="lora", lora=LORA, prompts_per_worker=2, micro_batch=4)
    sft = LoopConfig(
        recipe="sft", method="rm_r1", model=ModelConfig(name="tiny-random"), optim=OptimConfig(lr=5e-2),
        trainer=trainer, max_steps=3, checkpoint_every=0, eval_every=0, eval_max_new_tokens=4,
    )  # fmt: skip
    out = tmp_path / "sft"
    export = train_worker(sft, LocalSession(sft_rows, 2, out), steps_per_epoch=8, held_out=[])["export"]
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]

    grpo_rows, held, _ = load_items("grpo", DataConfig(format="rm-r1", path=str(path), held_out=2), 0, R1)
    grpo = LoopConfig(
        recipe="grpo", method="rm_r1", model=ModelConfig(name=export), grpo=GRPOConfig(n=3, max_new_tokens=8),
        optim=OptimConfig(lr=1e-3), trainer=trainer, max_steps=1, checkpoint_every=0, eval_every=1, eval_max_new_tokens=8,
    )  # fmt: skip
    out = tmp_path / "grpo"
    final = train_worker(grpo, LocalSession(grpo_rows, 2, out), steps_per_epoch=4, held_out=held)["export"]
    (m,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(m["loss"]) and -1 <= m["reward_mean"] <= 1 and "eval_accuracy" in m
    assert json.loads((out / "final" / "training.json").read_text())["method"] == "rm_r1"
    assert "judge.method=rm_r1 judge.mode=greedy" in (out / "final" / "README.md").read_text()

    judge = Judge(
        HFEngine.from_config(ModelConfig(name=final)),
        JudgeConfig(method="rm_r1", mode="majority", n=3, max_new_tokens=8),
    )
    result = judge.judge_one(pairs[0])
    assert result.method == "rm_r1" and len(result.judgments) == 3
    assert all(j.error is None or "answer" in j.error for j in result.judgments)  # RM-R1's parser read them
