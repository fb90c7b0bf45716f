"""The training loop of one worker: GRPO (unified or RFT) or SFT, over any `Session`.

    session   where the rows come from and where metrics and checkpoints go: Ray Train in
              jobs/train.py (a shard of a Ray Data stream, `ray.train.report`), or `LocalSession`
              here (one plain process: the baseline of the Ray Train overhead benchmark)
    strategy  how the model is wrapped (reflectrm.training.strategies)

A GRPO step, on every worker: refresh the rollout model -> G rollouts per prompt with the current
policy (seeded by the row's id and the step, so a row's rollouts do not depend on the worker that
drew it) -> rewards from THE parser -> group-normalised advantages -> micro-batches of the
token-level clipped loss (+ KL), normalised by the step's token count over all workers ->
optimizer step. Metrics are summed over workers before they are reported.

Resumption: a checkpoint holds the model, optimizer and scheduler (each strategy's own format) and
`state.json` (the step). The data position is the step: an epoch's first `step - epoch * steps`
batches are skipped. Randomness is derived from (seed, row id, step), so nothing else is needed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Protocol, Sequence

import torch

from reflectrm.config import ModelConfig, PromptConfig
from reflectrm.data.reflection import training_messages
from reflectrm.engines.hf import HFEngine
from reflectrm.inference import derive_seed
from reflectrm.training.objectives import group_advantages
from reflectrm.training.step import GRPOConfig, grpo_loss_on, rollout, sft_loss_on
from reflectrm.training.strategies import OptimConfig, Strategy, all_sum, make_strategy, world

Recipe = Literal["grpo", "rft", "sft"]
TASKS = ("response", "critique")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """What one worker needs to train (the job adds data, Ray and output settings around it)."""

    recipe: Recipe = "grpo"
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    grpo: GRPOConfig = GRPOConfig()
    optim: OptimConfig = OptimConfig()
    strategy: str = "ddp"  # ddp | fsdp2 | deepspeed (zero stage in optim)
    finetune: Literal["full", "lora"] = "full"
    lora: LoraConfig = LoraConfig()
    gradient_checkpointing: bool = False
    prompts_per_worker: int = 4  # prompts per worker per step (x group_size rollouts)
    micro_batch: int = 8  # sequences per forward/backward; the rest is gradient accumulation
    epochs: int = 1
    max_steps: int | None = None  # None: epochs x steps per epoch
    checkpoint_every: int = 10  # steps; 0: only at the end
    eval_every: int = 10  # steps; greedy accuracy on the held-out rows; 0: only at the end
    eval_max_new_tokens: int = 128
    seed: int = 0
    fail_at_step: int | None = None  # testing only: the last worker raises ONCE at this step

    def __post_init__(self) -> None:
        if self.prompts_per_worker < 1 or self.micro_batch < 1 or self.epochs < 1:
            raise ValueError("trainer: prompts_per_worker, micro_batch and epochs must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (or null for whole epochs), got {self.max_steps}")
        if self.finetune not in ("full", "lora"):
            raise ValueError(f"trainer.finetune must be full or lora, got {self.finetune!r}")

    def grad_accum(self) -> int:
        seqs = self.prompts_per_worker * (1 if self.recipe == "sft" else self.grpo.group_size)
        return math.ceil(seqs / self.micro_batch)


class Session(Protocol):
    """Where a worker's rows come from and where its results go."""

    output: Path  # metrics.jsonl, events.jsonl, final/ (on shared storage when there are several nodes)

    def batches(self, epoch: int) -> Iterable[list[dict[str, Any]]]: ...
    def checkpoint_dir(self) -> Path | None: ...  # the latest checkpoint to resume from
    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None: ...
    def progress(self, total: int, initial: int) -> Any: ...  # an object with update(n) and set_description(s)


# ---------------------------------------------------------------------------------------- model


def with_lora(model: torch.nn.Module, lora: LoraConfig) -> torch.nn.Module:
    from peft import LoraConfig as PeftLora, get_peft_model

    return get_peft_model(model, PeftLora(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                          target_modules=list(lora.target_modules), task_type="CAUSAL_LM"))


def build_model(cfg: LoopConfig, device: str) -> tuple[HFEngine, torch.nn.Module, torch.nn.Module | None]:
    """(engine for generation, the model to train, the KL reference or None).

    Weights are fp32 for training on every device (master weights: a 1e-6 update is lost in bf16);
    on GPU the strategies compute in bf16 (autocast, FSDP2's mixed precision, DeepSpeed's bf16)."""
    engine = HFEngine.from_config(dataclasses.replace(cfg.model, device=device, dtype="float32"))
    model = with_lora(engine.model, cfg.lora) if cfg.finetune == "lora" else engine.model
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ref = None
    if cfg.recipe != "sft" and cfg.grpo.kl_coef:
        # LoRA: the same model with its adapters disabled; full: a frozen copy, made before any sharding
        ref = model if cfg.finetune == "lora" else copy.deepcopy(model).eval().requires_grad_(False)
    return engine, model, ref


def export(cfg: LoopConfig, state: dict[str, torch.Tensor], folder: Path, summary: dict[str, Any]) -> Path:
    """A merged HF folder that `reflectrm judge --model FOLDER` loads (safetensors), plus `adapter/`
    for LoRA, and a README with the run's config and final metrics."""
    from reflectrm.models import load_model, load_tokenizer, resolve_model

    path = resolve_model(cfg.model.name)
    model = load_model(path, state[next(iter(state))].dtype, "cpu", cfg.model.trust_remote_code)
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.finetune == "lora":
        model = with_lora(model, cfg.lora)
        model.load_state_dict(state)
        model.save_pretrained(folder / "adapter")
        model = model.merge_and_unload()
    else:
        model.load_state_dict(state)
    model.save_pretrained(folder, safe_serialization=True)
    load_tokenizer(path, cfg.model.trust_remote_code).save_pretrained(folder)
    lines = ["# reflectrm training export", "", f"Recipe `{cfg.recipe}` from `{cfg.model.name}` ({cfg.finetune}, {cfg.strategy}).",
             "", "    reflectrm judge --model THIS_FOLDER --prompt ... --response-1 ... --response-2 ...", "",
             "## Final metrics", "", "```json", json.dumps(summary, indent=2), "```", "", "## Config", "", "```json",
             json.dumps(dataclasses.asdict(cfg), indent=2), "```", ""]
    (folder / "README.md").write_text("\n".join(lines))
    return folder


# ---------------------------------------------------------------------------------------- steps


def grpo_step(cfg: LoopConfig, engine: HFEngine, strategy: Strategy, ref: torch.nn.Module | None, rows: list[dict[str, Any]], step: int) -> dict[str, float]:
    rank, size = world()
    t0 = time.perf_counter()
    engine.model = strategy.rollout_model().eval()
    seeds = [derive_seed(cfg.seed, r["id"], step) for r in rows]
    ro = rollout(engine, rows, cfg.grpo, cfg.prompt, seeds=seeds)
    gen_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    adv = group_advantages(ro.rewards, cfg.grpo.group_size)
    local_tokens = sum(len(c) for c in ro.completion_ids)
    seq_tokens = local_tokens + sum(len(p) for p in ro.prompt_ids)  # what the update runs over
    (all_tokens,) = all_sum([local_tokens])
    normalizer = max(all_tokens, 1.0) / size  # gradients are averaged over workers: the sum / all tokens
    strategy.module.train()
    pad = engine.tokenizer.pad_token_id
    loss_sum = kl_sum = 0.0
    n = len(ro.completion_ids)
    for start in range(0, cfg.grad_accum() * cfg.micro_batch, cfg.micro_batch):  # same count on every worker
        idx = list(range(start, min(start + cfg.micro_batch, n)))
        with strategy.autocast():
            loss, info = grpo_loss_on(strategy.forward_model(), ro.select(idx), cfg.grpo, pad, ref_model=ref, advantages=adv[idx], normalizer=normalizer)
        strategy.backward(loss)
        loss_sum += float(loss.detach())
        kl_sum += info["kl"] * info["tokens"]
    grad_norm = strategy.step()
    update_s = time.perf_counter() - t0

    sums = [loss_sum, kl_sum, local_tokens, gen_s, update_s, seq_tokens]
    for task in TASKS:
        pick = [i for i, t in enumerate(ro.tasks) if t == task]
        sums += [len(pick), float(ro.rewards[pick].sum()) if pick else 0.0, sum(ro.valid[i] for i in pick), sum(ro.correct[i] for i in pick)]
    tot = all_sum(sums)
    loss_all, kl_all, tokens, gen_all, upd_all, seq_all = tot[:6]
    m: dict[str, float] = {"loss": loss_all / size, "kl": kl_all / max(tokens, 1), "grad_norm": grad_norm, "lr": strategy.lr(),
                           "gen_seconds": gen_all / size, "update_seconds": upd_all / size, "completion_tokens": tokens,
                           "gen_tokens_per_s": tokens / max(gen_all / size, 1e-9), "update_tokens_per_s": seq_all / max(upd_all / size, 1e-9)}
    count = reward = valid = correct = 0.0
    for k, task in enumerate(TASKS):
        c, r, v, a = tot[6 + 4 * k : 10 + 4 * k]
        count, reward, valid, correct = count + c, reward + r, valid + v, correct + a
        name = "pref" if task == "response" else "refl"
        m[f"{name}_rollouts"] = c
        if c:
            m[f"{name}_reward_mean"], m[f"{name}_valid_rate"], m[f"{name}_accuracy"] = r / c, v / c, a / c
    m.update(reward_mean=reward / count, valid_rate=valid / count, accuracy=correct / count)
    return m


def sft_step(cfg: LoopConfig, engine: HFEngine, strategy: Strategy, rows: list[dict[str, Any]]) -> dict[str, float]:
    _, size = world()
    t0 = time.perf_counter()
    tok = engine.tokenizer
    prompts = [engine.encode(training_messages(r, cfg.prompt)) for r in rows]
    targets = [tok(r["target"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in rows]
    local_tokens = sum(len(t) for t in targets)
    (all_tokens,) = all_sum([local_tokens])
    normalizer = max(all_tokens, 1.0) / size
    strategy.module.train()
    loss_sum = 0.0
    for start in range(0, cfg.grad_accum() * cfg.micro_batch, cfg.micro_batch):
        p, t = prompts[start : start + cfg.micro_batch], targets[start : start + cfg.micro_batch]
        if not p:  # keep the micro-batch count equal on every worker (collectives)
            p, t = prompts[:1], [[]]
        with strategy.autocast():
            loss = sft_loss_on(strategy.forward_model(), p, t, tok.pad_token_id, normalizer=normalizer) if any(t) else _zero_loss(strategy)
        strategy.backward(loss)
        loss_sum += float(loss.detach())
    grad_norm = strategy.step()
    loss_all, tokens, secs = all_sum([loss_sum, local_tokens, time.perf_counter() - t0])
    return {"loss": loss_all / size, "grad_norm": grad_norm, "lr": strategy.lr(), "target_tokens": tokens,
            "update_seconds": secs / size, "gen_seconds": 0.0}


def _zero_loss(strategy: Strategy) -> torch.Tensor:
    return sum(p.sum() * 0.0 for p in strategy.module.parameters() if p.requires_grad)  # type: ignore[return-value]


def greedy_check(cfg: LoopConfig, engine: HFEngine, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Greedy judgments of held-out rows: accuracy and valid-format rate (run on one worker)."""
    if not rows:
        return {}
    g = dataclasses.replace(cfg.grpo, group_size=1, temperature=0.0, max_new_tokens=cfg.eval_max_new_tokens)
    ro = rollout(engine, rows, g, cfg.prompt, seeds=[0] * len(rows))
    return {"eval_accuracy": sum(ro.correct) / len(rows), "eval_valid_rate": sum(ro.valid) / len(rows)}


# ---------------------------------------------------------------------------------------- loop


def train_worker(cfg: LoopConfig, session: Session, steps_per_epoch: int, held_out: Sequence[dict[str, Any]], device: str = "cpu") -> dict[str, Any]:
    """The whole run on one worker; returns the last metrics (with the export path on rank 0)."""
    import torch.distributed as dist

    rank, size = world()
    torch.manual_seed(cfg.seed)
    engine, model, ref = build_model(cfg, device)
    strategy = make_strategy(model, cfg.optim, cfg.strategy, cfg.grad_accum(), bf16=device.startswith("cuda"))
    if steps_per_epoch < 1:
        raise ValueError(f"not one step of data: each step needs {size} worker(s) x {cfg.prompts_per_worker} prompts")
    total = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps_per_epoch)

    step = 0
    resume = session.checkpoint_dir()
    if resume is not None:
        strategy.load(resume)
        step = json.loads((resume / "state.json").read_text())["step"]
    metrics_file, events_file = session.output / "metrics.jsonl", session.output / "events.jsonl"
    if rank == 0:
        session.output.mkdir(parents=True, exist_ok=True)
        _truncate_metrics(metrics_file, step)
        _append(events_file, {"event": "start", "resumed_from": step, "total_steps": total, "workers": size, "time": time.time()})
    bar = session.progress(total, step) if rank == 0 else None

    last: dict[str, Any] = {}
    while step < total:
        epoch = step // steps_per_epoch
        skip = step - epoch * steps_per_epoch
        for i, rows in enumerate(session.batches(epoch)):
            if i < skip:
                continue  # consumed before the checkpoint we resumed from
            if step >= total or i >= steps_per_epoch:
                break
            t0 = time.perf_counter()
            m = sft_step(cfg, engine, strategy, rows) if cfg.recipe == "sft" else grpo_step(cfg, engine, strategy, ref, rows, step)
            step += 1
            if cfg.fail_at_step == step and rank == size - 1:
                marker = session.output / f".failed_once_at_{step}"
                if not marker.exists():
                    marker.touch()
                    raise RuntimeError(f"injected failure at step {step} (fail_at_step; testing only)")
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == total:
                rollout_model = strategy.rollout_model().eval()  # collective under FSDP2 / ZeRO-3
                if rank == 0:
                    engine.model = rollout_model
                    m.update(greedy_check(cfg, engine, held_out))
                if size > 1:
                    dist.barrier()
            m.update(step=step, epoch=epoch, step_seconds=time.perf_counter() - t0)
            ckpt = None
            if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == total:
                ckpt = Path(session.output / ".staging" / f"rank{rank}_step{step}")
                ckpt.mkdir(parents=True, exist_ok=True)
                strategy.save(ckpt)
                if rank == 0:
                    (ckpt / "state.json").write_text(json.dumps({"step": step, "epoch": epoch}))
            session.report(m, ckpt)
            if rank == 0:
                _append(metrics_file, m)
                _append(events_file, {"event": "step", "step": step})
                bar.set_description(_short(m))
                bar.update(1)
            last = m
        else:
            continue
        if step >= total:
            break

    state = strategy.full_state_dict()  # collective
    if rank == 0:
        bar.close()
        final = export(cfg, state, session.output / "final", {k: v for k, v in last.items() if isinstance(v, (int, float))})
        _append(events_file, {"event": "end", "step": step, "time": time.time()})
        last = {**last, "export": str(final)}
    return last


def _short(m: dict[str, Any]) -> str:
    keys = [("loss", "loss"), ("reward_mean", "reward"), ("valid_rate", "valid"), ("eval_accuracy", "eval acc")]
    return " ".join(f"{label} {m[k]:.3f}" for k, label in keys if isinstance(m.get(k), float))


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume: drop metrics of steps after the checkpoint (they are done again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


# ---------------------------------------------------------------------------------------- one process


class LocalSession:
    """One plain process, no Ray: rows from a list, checkpoints in output/checkpoints/step_N."""

    def __init__(self, rows: list[dict[str, Any]], batch_size: int, output: Path):
        self.rows, self.batch_size, self.output = rows, batch_size, output
        self.ckpts = output / "checkpoints"

    def batches(self, epoch: int) -> Iterator[list[dict[str, Any]]]:
        for i in range(0, len(self.rows) - self.batch_size + 1, self.batch_size):
            yield self.rows[i : i + self.batch_size]

    def checkpoint_dir(self) -> Path | None:
        found = sorted(self.ckpts.glob("step_*"))
        return found[-1] if found else None

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        if checkpoint is not None:
            import shutil

            dest = self.ckpts / f"step_{metrics['step']:06d}"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.move(str(checkpoint), dest)

    def progress(self, total: int, initial: int) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc="train", unit="step")
