"""jobs.train's config (TrainConfig = the library's LoopConfig + data, ray, output) and its rows (no model, no Ray)."""

from __future__ import annotations

import json

import pytest

from jobs.common import parse_job_config
from jobs.ray_training import TrainConfig, latest_checkpoint
from reflectrm.config import ConfigError
from reflectrm.records import Message
from reflectrm.training.config import LoopConfig, OptimConfig, TrainerConfig
from reflectrm.training.data import TrainingDataError, load_items
from tests.helpers import write_toy_mix


def cfg(*overrides: str) -> TrainConfig:
    return parse_job_config(TrainConfig, ["--config", "jobs/configs/grpo.yaml", *overrides], "")


def load_rows(c: TrainConfig):
    train, held, _ = load_items(c.recipe, c.data, c.seed)
    return train, held


def test_the_contract_command_parses():
    c = cfg(
        "model=tiny-random",
        "data.path=MIX.parquet",
        "trainer.num_workers=2",
        "trainer.strategy=deepspeed",
        "trainer.zero_stage=2",
        "max_steps=2",
        "output=DIR",
    )
    assert (
        c.model.name,
        c.data.path,
        c.trainer.num_workers,
        c.trainer.strategy,
        c.trainer.zero_stage,
        c.max_steps,
        c.output,
    ) == ("tiny-random", "MIX.parquet", 2, "deepspeed", 2, 2, "DIR")
    assert isinstance(c, LoopConfig)  # what the workers run: every training setting is LoopConfig's, declared once
    assert c.grpo.n == 8 and c.grpo.temperature == 1.0  # method.md §3 defaults
    assert c.recipe == "grpo" and cfg("--config", "jobs/configs/rft.yaml").recipe == "rft"


@pytest.mark.parametrize(
    "bad, word",
    [
        ("trainer.strategy=horovod", "strategy"),
        ("trainer.zero_stage=4", "zero_stage"),
        ("trainer.num_workers=0", "num_workers"),
        ("max_steps=0", "max_steps"),
    ],
)
def test_bad_settings_are_config_errors(bad, word, capsys):
    with pytest.raises(SystemExit) as exc:
        cfg(bad)
    assert exc.value.code == 2 and word in capsys.readouterr().err


def test_zero_settings_live_in_one_place(capsys):
    with pytest.raises(SystemExit):
        cfg("optim.zero_stage=3")  # once accepted and silently ignored; now an unknown key
    assert "unknown config key optim.zero_stage" in capsys.readouterr().err
    assert cfg("trainer.zero_stage=3", "trainer.offload_optimizer=true").trainer.zero_stage == 3


def test_grad_accum_and_warmup():
    assert (
        LoopConfig(trainer=TrainerConfig(prompts_per_worker=4, micro_batch=8)).grad_accum() == 4
    )  # 4 prompts x 8 rollouts / 8
    assert LoopConfig(recipe="sft", trainer=TrainerConfig(prompts_per_worker=4, micro_batch=3)).grad_accum() == 2
    o = OptimConfig(warmup_steps=4)
    assert [o.lr_lambda(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_rows_hold_out_preference_items_and_rft_drops_reflection(tmp_path):
    mix = write_toy_mix(tmp_path / "mix.parquet", 10)
    train, held = load_rows(cfg(f"data.path={mix}", "data.held_out=3"))
    assert len(held) == 3 and all(r.task == "response" for r in held)
    assert (
        not {r.id.removesuffix("~swapped") for r in train} & {r.id for r in held} and len(train) == 2 * 17
    )  # both orders
    assert {r.task for r in train} == {"response", "critique"}
    rft_train, _ = load_rows(cfg("--config", "jobs/configs/rft.yaml", f"data.path={mix}", "data.held_out=3"))
    assert {r.task for r in rft_train} == {"response"} and len(rft_train) == 2 * 7
    given, _ = load_rows(cfg(f"data.path={mix}", "data.held_out=3", "data.orders=given"))
    assert len(given) == 17 and not any(r.id.endswith("~swapped") for r in given)
    again, _ = load_rows(cfg(f"data.path={mix}", "data.held_out=3"))
    assert [r.id for r in again] == [r.id for r in train]  # the same order every run (resumption relies on it)


def test_sft_rows_carry_targets_and_bad_data_names_the_fix(tmp_path):
    train, _ = load_rows(
        parse_job_config(TrainConfig, ["--config", "jobs/configs/sft.yaml", "data.path=12", "data.held_out=2"], "")
    )
    assert len(train) == 20 and all(r.target.startswith("<Analysis>") and "<Result>" in r.target for r in train)
    with pytest.raises(TrainingDataError, match="no such file.*jobs.build_data"):
        load_rows(cfg("data.path=/nonexistent/mix.parquet"))
    mix = write_toy_mix(tmp_path / "mix.parquet", 4)
    with pytest.raises(TrainingDataError, match="`target` column"):
        load_rows(cfg("recipe=sft", f"data.path={mix}"))


def test_latest_checkpoint_skips_incomplete_ones(tmp_path):
    pytest.importorskip("ray")
    for step, complete in ((1, True), (2, True), (3, False)):
        d = tmp_path / "train" / f"step_{step:06d}"
        d.mkdir(parents=True)
        if complete:
            (d / "state.json").write_text(json.dumps({"step": step}))
    assert latest_checkpoint(tmp_path).path.endswith("step_000002")
    assert latest_checkpoint(tmp_path / "none") is None


def test_micro_batches_follow_the_token_budget():
    from reflectrm.training.policy import micro_batches

    assert micro_batches([10] * 5, 2) == [[0, 1], [2, 3], [4]]  # no budget: by count only
    assert micro_batches([100, 100, 900, 50, 50], 8, 1000) == [[0, 1], [2], [3, 4]]  # padded size <= 1000
    assert micro_batches([5000, 10], 8, 1000) == [[0], [1]]  # over the budget alone: goes alone
    assert micro_batches([], 4, 100) == []
    with pytest.raises(ValueError, match="micro_batch_tokens"):
        TrainerConfig(micro_batch_tokens=-1)


def test_the_rollout_engine_setting(monkeypatch):
    from reflectrm.engines import vllm as vllm_mod
    from reflectrm.training.rollout_engine import choose_rollout_engine

    c = cfg("trainer.rollout_engine=vllm", "trainer.vllm.kv_cache_gib=2", "trainer.vllm_sleep=false")
    assert c.trainer.rollout_engine == "vllm" and c.trainer.vllm.kv_cache_gib == 2 and not c.trainer.vllm_sleep
    assert cfg().trainer.rollout_engine == "auto" and cfg().trainer.vllm.gpu_memory_utilization == 0.3
    paper = parse_job_config(TrainConfig, ["--config", "jobs/configs/paper_qwen3_4b.yaml"], "")
    assert paper.trainer.rollout_engine == "vllm" and paper.trainer.vllm.max_new_tokens_limit == 1024
    with pytest.raises(ValueError, match="rollout_engine"):
        TrainerConfig(rollout_engine="sglang")
    monkeypatch.setattr(vllm_mod, "vllm_available", lambda: True)
    assert choose_rollout_engine("auto", "cpu") == "hf" and choose_rollout_engine("auto", "cuda") == "vllm"
    assert choose_rollout_engine("hf", "cuda") == "hf"
    monkeypatch.setattr(vllm_mod, "vllm_available", lambda: False)
    assert choose_rollout_engine("auto", "cuda") == "hf"
    with pytest.raises(ConfigError, match="needs the vllm package"):
        choose_rollout_engine("vllm", "cpu")


def test_qwen3_paper_config_and_the_thinking_switch():
    from jobs.common import parse_job_config
    from jobs.ray_training import TrainConfig
    from reflectrm.models import load_tokenizer, render_chat, resolve_model

    cfg = parse_job_config(TrainConfig, ["--config", "jobs/configs/paper_qwen3_4b.yaml"], "")
    assert cfg.model.enable_thinking is False and cfg.prompt.suffix == "/no_think"
    assert (cfg.grpo.n, cfg.grpo.max_new_tokens, cfg.grpo.kl_coef, cfg.grpo.clip, cfg.optim.lr, cfg.epochs) == (
        8,
        1024,
        0.001,
        0.2,
        1e-6,
        3,
    )
    assert cfg.trainer.num_workers * cfg.trainer.prompts_per_worker == 64
    tok = load_tokenizer(resolve_model("tiny-random"))
    tok.chat_template = (  # Qwen3's switch, reduced to what matters here
        "{% for m in messages %}{{ m.content }}{% endfor %}"
        "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
    )
    messages = (Message("user", "hi"),)
    assert render_chat(tok, messages, False).endswith("<think></think>")
    assert "<think>" not in render_chat(tok, messages)  # None: the template's own default
