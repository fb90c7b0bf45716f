"""The model a worker trains: build it (with LoRA adapters, gradient checkpointing and the KL reference)
and export it as a merged HF folder that the judge loads."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from reflectrm.engines.hf import HFEngine
from reflectrm.training.config import LoopConfig, LoraConfig


def with_lora(model: torch.nn.Module, lora: LoraConfig) -> torch.nn.Module:
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model

    return get_peft_model(
        model,
        PeftLora(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            task_type="CAUSAL_LM",
        ),
    )


def build_model(cfg: LoopConfig, device: str) -> tuple[HFEngine, torch.nn.Module, torch.nn.Module | None]:
    """(engine for generation, the model to train, the KL reference or None).

    Weights are fp32 for training on every device (master weights: a 1e-6 update is lost in bf16);
    on GPU the strategies compute in bf16 (autocast, FSDP2's mixed precision, DeepSpeed's bf16)."""
    t = cfg.trainer
    engine = HFEngine.from_config(dataclasses.replace(cfg.model, device=device, dtype="float32"))
    model = with_lora(engine.model, t.lora) if t.finetune == "lora" else engine.model
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.recipe == "critic_rm":  # the LM (LoRA or full) and a trainable reward head, as one module
        from reflectrm.models import resolve_model
        from reflectrm.training.critic import HEAD_FILE, CriticLM, load_reward_head

        folder = resolve_model(cfg.model.name)  # a Critic-RM export goes on with its own head
        head = load_reward_head(folder, model.config.hidden_size) if (folder / HEAD_FILE).is_file() else None
        model = CriticLM(model, head).to(device)
    model.train()
    ref = None
    if cfg.recipe in ("grpo", "rft") and cfg.grpo.kl_coef:
        # LoRA: the same model with its adapters disabled; full: a frozen copy, made before any sharding
        ref = model if t.finetune == "lora" else copy.deepcopy(model).eval().requires_grad_(False)
    return engine, model, ref


def export(cfg: LoopConfig, state: dict[str, torch.Tensor], folder: Path, summary: dict[str, Any]) -> Path:
    """A merged HF folder that `reflectrm judge model=FOLDER` loads (safetensors), plus `adapter/`
    for LoRA, and a README with the run's config and final metrics."""
    from reflectrm.models import load_model, load_tokenizer, resolve_model

    path = resolve_model(cfg.model.name)
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.recipe == "critic_rm":  # CriticLM's state: lm.* is the model, reward_head.* is saved beside it
        from reflectrm.training.critic import save_reward_head

        head = {k.removeprefix("reward_head."): v for k, v in state.items() if k.startswith("reward_head.")}
        state = {k.removeprefix("lm."): v for k, v in state.items() if k.startswith("lm.")}
        save_reward_head(head, folder, {"hidden_size": int(head["weight"].shape[1]), "reads": "critic-rm-prompts-v1"})
    model = load_model(path, state[next(iter(state))].dtype, "cpu", cfg.model.trust_remote_code)
    if cfg.trainer.finetune == "lora":
        model = with_lora(model, cfg.trainer.lora)
        model.load_state_dict(state)
        model.save_pretrained(folder / "adapter")
        model = model.merge_and_unload()
    else:
        model.load_state_dict(state)
    model.save_pretrained(folder, safe_serialization=True)
    load_tokenizer(path, cfg.model.trust_remote_code).save_pretrained(folder)
    budget = cfg.grpo.max_new_tokens if cfg.recipe in ("grpo", "rft") else None  # the judge budget of its rollouts
    method = "critic_rm" if cfg.recipe == "critic_rm" else cfg.method
    (folder / "training.json").write_text(
        json.dumps({"recipe": cfg.recipe, "method": method, "base": cfg.model.name, "max_new_tokens": budget}, indent=2)
    )
    lines = [
        "# reflectrm training export",
        "",
        f"Recipe `{cfg.recipe}` of the `{method}` judge method from `{cfg.model.name}` "
        f"({cfg.trainer.finetune}, {cfg.trainer.strategy}).",
        "",
        "    python -c \"from reflectrm.critic_judge import CriticJudge; CriticJudge.load('THIS_FOLDER', m=4)\""
        if method == "critic_rm"
        else f"    reflectrm judge model=THIS_FOLDER judge.method={method}"
        + (" judge.mode=greedy" if method != "reflectrm" else "")
        + " --prompt ... --response-1 ... --response-2 ...",
        "",
        "## Final metrics",
        "",
        "```json",
        json.dumps(summary, indent=2),
        "```",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(dataclasses.asdict(cfg), indent=2),
        "```",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))
    return folder
