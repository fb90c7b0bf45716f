"""The training loop of one worker: GRPO (unified or RFT) or SFT, over any `Session`.

    session   where the rows come from and where metrics and checkpoints go: Ray Train in
              jobs/ray_training.py (a shard of a Ray Data stream, `ray.train.report`), or `LocalSession`
              here (one plain process: the baseline of the Ray Train overhead benchmark)
    strategy  how the model is wrapped (reflectrm.training.strategies)

A GRPO step, on every worker: the engine over this step's rollout model -> G rollouts per prompt with the current
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
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol, Sequence

import torch

from reflectrm.config import ModelConfig, PromptConfig, VLLMConfig
from reflectrm.data.reflection import training_messages
from reflectrm.engines.hf import HFEngine
from reflectrm.inference import derive_seed
from reflectrm.training.objectives import group_advantages
from reflectrm.training.rollout_engine import VLLMRollouts, choose_rollout_engine, lora_scaling
from reflectrm.training.step import GRPOConfig, grpo_loss_on, rollout, sft_loss_on
from reflectrm.training.strategies import OptimConfig, Strategy, all_max, all_sum, all_sum_named, make_strategy, world

Recipe = Literal["grpo", "rft", "sft"]
TASKS = {"response": "pref", "critique": "refl"}  # task -> its metrics prefix


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """How the model is trained across workers: the worker group's shape, the strategy and the batch."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0  # on 2 cores with 2 workers use 0.5 (environment.md)
    gpus_per_worker: float = 1.0  # when use_gpu
    threads: int | None = None  # torch CPU threads per worker (None: cores / workers)
    strategy: Literal["none", "ddp", "fsdp2", "deepspeed"] = "ddp"  # none: one process, no wrapper
    zero_stage: int = 2  # deepspeed: 1, 2 or 3
    offload_optimizer: bool = False  # deepspeed: optimizer state in CPU memory (ZeRO-Offload)
    finetune: Literal["full", "lora"] = "full"
    lora: LoraConfig = LoraConfig()
    gradient_checkpointing: bool = False
    prompts_per_worker: int = 4  # prompts per worker per step (x grpo.n rollouts)
    micro_batch: int = 8  # sequences per forward/backward; the rest is gradient accumulation
    # A micro-batch is split further while its padded size (sequences x the longest, prompt + completion)
    # is over this many tokens: memory follows prompt length, not only micro_batch (8 reflection rollouts
    # of ~1,700 tokens held 16.5 GB on SmolLM2). The same gradients (one loss normalizer). 0: no limit.
    micro_batch_tokens: int = 8192
    max_failures: int = 1  # worker-group restarts from the last checkpoint
    keep_checkpoints: int = 2
    # Who writes GRPO's rollouts (reflectrm/training/rollout_engine.py): hf, the model being trained; vllm, a
    # vLLM engine per worker, loaded with the trainer's weights after every optimizer step; auto: vllm where a
    # GPU and vLLM are present, else hf.
    rollout_engine: Literal["auto", "hf", "vllm"] = "auto"
    # The rollout engine's vLLM settings. CPU: kv_cache_gib; GPU: gpu_memory_utilization sizes its KV cache
    # next to the trainer's memory (colocated), and with vllm_sleep its memory is released during the update.
    vllm: VLLMConfig = VLLMConfig(kv_cache_gib=1, gpu_memory_utilization=0.3)
    vllm_sleep: bool = True

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"trainer.num_workers must be >= 1, got {self.num_workers}")
        if self.zero_stage not in (1, 2, 3):
            raise ValueError(f"trainer.zero_stage must be 1, 2 or 3, got {self.zero_stage}")
        if self.prompts_per_worker < 1 or self.micro_batch < 1:
            raise ValueError("trainer.prompts_per_worker and trainer.micro_batch must be >= 1")
        if self.micro_batch_tokens < 0:
            raise ValueError(f"trainer.micro_batch_tokens must be >= 0 (0: no limit), got {self.micro_batch_tokens}")
        if self.rollout_engine not in ("auto", "hf", "vllm"):
            raise ValueError(f"trainer.rollout_engine={self.rollout_engine!r}: valid values are auto, hf and vllm")


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Everything a worker needs to train. jobs/ray_training.py's TrainConfig is this plus the job's
    data, Ray and output sections, so every training setting is declared here, once."""

    recipe: Recipe = "grpo"
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    grpo: GRPOConfig = GRPOConfig()
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    epochs: int = 1
    max_steps: int | None = None  # None: epochs x steps per epoch
    checkpoint_every: int = 10  # steps; 0: only at the end
    eval_every: int = 10  # steps; greedy accuracy on the held-out rows; 0: only at the end
    eval_max_new_tokens: int = 128
    seed: int = 0
    fail_at_step: int | None = None  # testing only: the last worker raises ONCE at this step

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (or null for whole epochs), got {self.max_steps}")

    def grad_accum(self) -> int:
        seqs = self.trainer.prompts_per_worker * (1 if self.recipe == "sft" else self.grpo.n)
        return math.ceil(seqs / self.trainer.micro_batch)


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
    model.train()
    ref = None
    if cfg.recipe != "sft" and cfg.grpo.kl_coef:
        # LoRA: the same model with its adapters disabled; full: a frozen copy, made before any sharding
        ref = model if t.finetune == "lora" else copy.deepcopy(model).eval().requires_grad_(False)
    return engine, model, ref


def export(cfg: LoopConfig, state: dict[str, torch.Tensor], folder: Path, summary: dict[str, Any]) -> Path:
    """A merged HF folder that `reflectrm judge model=FOLDER` loads (safetensors), plus `adapter/`
    for LoRA, and a README with the run's config and final metrics."""
    from reflectrm.models import load_model, load_tokenizer, resolve_model

    path = resolve_model(cfg.model.name)
    model = load_model(path, state[next(iter(state))].dtype, "cpu", cfg.model.trust_remote_code)
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.finetune == "lora":
        model = with_lora(model, cfg.trainer.lora)
        model.load_state_dict(state)
        model.save_pretrained(folder / "adapter")
        model = model.merge_and_unload()
    else:
        model.load_state_dict(state)
    model.save_pretrained(folder, safe_serialization=True)
    load_tokenizer(path, cfg.model.trust_remote_code).save_pretrained(folder)
    budget = cfg.grpo.max_new_tokens if cfg.recipe != "sft" else None  # the judge budget its rollouts had
    (folder / "training.json").write_text(
        json.dumps({"recipe": cfg.recipe, "base": cfg.model.name, "max_new_tokens": budget}, indent=2)
    )
    lines = [
        "# reflectrm training export",
        "",
        f"Recipe `{cfg.recipe}` from `{cfg.model.name}` ({cfg.trainer.finetune}, {cfg.trainer.strategy}).",
        "",
        "    reflectrm judge model=THIS_FOLDER --prompt ... --response-1 ... --response-2 ...",
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


# ---------------------------------------------------------------------------------------- steps


def micro_batches(lengths: Sequence[int], micro_batch: int, max_tokens: int = 0) -> list[list[int]]:
    """Consecutive index groups of at most `micro_batch` sequences whose padded size (count x the longest
    length) stays within `max_tokens` (0: no limit); a sequence longer than the budget goes alone."""
    out: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        if cur and (len(cur) == micro_batch or (max_tokens and (len(cur) + 1) * max(longest, n) > max_tokens)):
            out.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    return out + ([cur] if cur else [])


def grpo_step(
    cfg: LoopConfig,
    policy: HFEngine,
    strategy: Strategy,
    ref: torch.nn.Module | None,
    rows: list[dict[str, Any]],
    step: int,
    sync_s: float = 0.0,
    after_rollout: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One GRPO step. `policy` generates the rollouts: the engine over this step's rollout model
    (`engine.with_model(strategy.rollout_model())`), or the vLLM rollout engine the loop synced in
    `sync_s` seconds; `after_rollout` runs between generation and the update (vLLM's sleep on GPU)."""
    _, size = world()
    t0 = time.perf_counter()
    seeds = [derive_seed(cfg.seed, r["id"], step) for r in rows]
    ro = rollout(policy, rows, cfg.grpo, cfg.prompt, seeds=seeds)
    if after_rollout is not None:
        after_rollout()
    gen_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    adv = group_advantages(ro.rewards, cfg.grpo.n) if len(ro.rewards) else ro.rewards  # none: all too long
    local_tokens = sum(len(c) for c in ro.completion_ids)
    (all_tokens,) = all_sum([local_tokens])
    normalizer = max(all_tokens, 1.0) / size  # gradients are averaged over workers: the sum / all tokens
    strategy.module.train()
    pad = policy.tokenizer.pad_token_id
    loss_sum = kl_sum = diff_sum = diff_tokens = 0.0
    lengths = [len(p) + len(c) for p, c in zip(ro.prompt_ids, ro.completion_ids)]
    chunks = micro_batches(lengths, cfg.trainer.micro_batch, cfg.trainer.micro_batch_tokens)
    count = all_max(max(len(chunks), cfg.grad_accum()))  # the same count on every worker
    for k in range(count):
        idx = chunks[k] if k < len(chunks) else []
        if not idx:  # fewer rollouts here (prompts too long): a zero loss keeps the collectives in step
            strategy.backward(_zero_loss(strategy), last=k == count - 1)
            continue
        with strategy.autocast():
            loss, info = grpo_loss_on(
                strategy.forward_model(),
                ro.select(idx),
                cfg.grpo,
                pad,
                ref_model=ref,
                advantages=adv[idx],
                normalizer=normalizer,
            )
        strategy.backward(loss, last=k == count - 1)
        loss_sum += float(loss.detach())
        kl_sum += info["kl"] * info["tokens"]
        diff_sum += info["logprob_diff_sum"]
        diff_tokens += info["logprob_diff_tokens"]
    grad_norm = strategy.step()
    update_s = time.perf_counter() - t0

    local = {
        "loss": loss_sum,
        "kl": kl_sum,
        "tokens": local_tokens,
        "gen_s": gen_s,
        "sync_s": sync_s,
        "update_s": update_s,
        "diff_sum": diff_sum,
        "diff_tokens": diff_tokens,
        "seq_tokens": local_tokens + sum(len(p) for p in ro.prompt_ids),
        "too_long": ro.too_long,
        # groups whose rollouts' rewards differ: only they have non-zero advantages (a learning signal)
        "groups": len(ro.rewards) // cfg.grpo.n,
        "signal_groups": int((ro.rewards.view(-1, cfg.grpo.n).std(dim=1) > 0).sum()) if len(ro.rewards) else 0,
    }
    for task, name in TASKS.items():
        pick = [i for i, t in enumerate(ro.tasks) if t == task]
        local |= {
            f"{name}_rollouts": len(pick),
            f"{name}_reward": float(ro.rewards[pick].sum()) if pick else 0.0,
            f"{name}_valid": sum(ro.valid[i] for i in pick),
            f"{name}_correct": sum(ro.correct[i] for i in pick),
        }
    tot = all_sum_named(local)
    m: dict[str, float] = {
        "loss": tot["loss"] / size,
        "kl": tot["kl"] / max(tot["tokens"], 1),
        "grad_norm": grad_norm,
        "lr": strategy.lr(),
        "gen_seconds": tot["gen_s"] / size,
        "sync_seconds": tot["sync_s"] / size,  # the rollout engine's weight sync before this step (vllm)
        "update_seconds": tot["update_s"] / size,
        "completion_tokens": tot["tokens"],
        "gen_tokens_per_s": tot["tokens"] / max(tot["gen_s"] / size, 1e-9),
        "update_tokens_per_s": tot["seq_tokens"] / max(tot["update_s"] / size, 1e-9),
    }
    if tot["diff_tokens"]:  # mean |engine log-prob - policy log-prob| of the sampled tokens: jumps on stale weights
        m["rollout_logprob_diff"] = tot["diff_sum"] / tot["diff_tokens"]
    for name in TASKS.values():
        c = tot[f"{name}_rollouts"]
        m[f"{name}_rollouts"] = c
        if c:
            m |= {
                f"{name}_reward_mean": tot[f"{name}_reward"] / c,
                f"{name}_valid_rate": tot[f"{name}_valid"] / c,
                f"{name}_accuracy": tot[f"{name}_correct"] / c,
            }
    m["too_long"] = tot["too_long"]  # prompts skipped this step (over the token limit)
    m["signal_group_rate"] = tot["signal_groups"] / tot["groups"] if tot["groups"] else 0.0
    count = sum(tot[f"{name}_rollouts"] for name in TASKS.values())
    if not count:  # every prompt of the step was too long: nothing was learnt, nothing to average
        return m
    m.update(
        reward_mean=sum(tot[f"{name}_reward"] for name in TASKS.values()) / count,
        valid_rate=sum(tot[f"{name}_valid"] for name in TASKS.values()) / count,
        accuracy=sum(tot[f"{name}_correct"] for name in TASKS.values()) / count,
    )
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
    chunks = micro_batches([len(p) + len(t) for p, t in zip(prompts, targets)], cfg.trainer.micro_batch,
                           cfg.trainer.micro_batch_tokens)  # fmt: skip
    count = all_max(max(len(chunks), cfg.grad_accum()))  # the same count on every worker (collectives)
    for k in range(count):
        idx = chunks[k] if k < len(chunks) else []
        p, t = [prompts[i] for i in idx], [targets[i] for i in idx]
        if not p:  # keep the micro-batch count equal on every worker (collectives)
            p, t = prompts[:1], [[]]
        with strategy.autocast():
            loss = (
                sft_loss_on(strategy.forward_model(), p, t, tok.pad_token_id, normalizer=normalizer)
                if any(t)
                else _zero_loss(strategy)
            )
        strategy.backward(loss, last=k == count - 1)
        loss_sum += float(loss.detach())
    grad_norm = strategy.step()
    loss_all, tokens, secs = all_sum([loss_sum, local_tokens, time.perf_counter() - t0])
    return {
        "loss": loss_all / size,
        "grad_norm": grad_norm,
        "lr": strategy.lr(),
        "target_tokens": tokens,
        "update_seconds": secs / size,
        "gen_seconds": 0.0,
    }


def _zero_loss(strategy: Strategy) -> torch.Tensor:
    return sum(p.sum() * 0.0 for p in strategy.module.parameters() if p.requires_grad)  # type: ignore[return-value]


def greedy_check(cfg: LoopConfig, engine: HFEngine, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Greedy judgments of held-out rows: accuracy and valid-format rate (run on one worker)."""
    if not rows:
        return {}
    g = dataclasses.replace(cfg.grpo, n=1, temperature=0.0, max_new_tokens=cfg.eval_max_new_tokens)
    ro = rollout(engine, rows, g, cfg.prompt, seeds=[0] * len(rows))
    return {"eval_accuracy": sum(ro.correct) / len(rows), "eval_valid_rate": sum(ro.valid) / len(rows)}


# ---------------------------------------------------------------------------------------- loop


def train_worker(
    cfg: LoopConfig, session: Session, steps_per_epoch: int, held_out: Sequence[dict[str, Any]], device: str = "cpu"
) -> dict[str, Any]:
    """The whole run on one worker; returns the last metrics (with the export path on rank 0)."""
    _, size = world()
    torch.manual_seed(cfg.seed)
    engine, model, ref = build_model(cfg, device)
    t = cfg.trainer
    strategy = make_strategy(
        model,
        cfg.optim,
        t.strategy,
        cfg.grad_accum(),
        bf16=device.startswith("cuda"),
        zero_stage=t.zero_stage,
        offload_optimizer=t.offload_optimizer,
    )
    if steps_per_epoch < 1:
        raise ValueError(f"not one step of data: each step needs {size} worker(s) x {t.prompts_per_worker} prompts")
    vllm_rollouts = None
    if cfg.recipe != "sft" and choose_rollout_engine(t.rollout_engine, device) == "vllm":
        vllm_rollouts = VLLMRollouts(cfg.model, t.vllm, device, sleep=t.vllm_sleep)
    try:
        return _loop(cfg, session, steps_per_epoch, held_out, engine, strategy, ref, vllm_rollouts)
    finally:
        if vllm_rollouts is not None:
            vllm_rollouts.close()


def _loop(
    cfg: LoopConfig,
    session: Session,
    steps_per_epoch: int,
    held_out: Sequence[dict[str, Any]],
    engine: HFEngine,
    strategy: Strategy,
    ref: torch.nn.Module | None,
    vllm_rollouts: VLLMRollouts | None,
) -> dict[str, Any]:
    import torch.distributed as dist

    rank, size = world()
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
        _append(
            events_file,
            {"event": "start", "resumed_from": step, "total_steps": total, "workers": size, "time": time.time()},
        )
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
            if cfg.recipe == "sft":
                m = sft_step(cfg, engine, strategy, rows)
            elif vllm_rollouts is not None:
                sync_s = 0.0
                if vllm_rollouts.synced_step != step:  # new weights (or a resume): load them into the engine
                    t_sync = time.perf_counter()
                    state = strategy.full_state_dict()  # collective under FSDP2 / ZeRO-3
                    vllm_rollouts.sync(state, step, lora_scaling(strategy.module))
                    del state
                    sync_s = time.perf_counter() - t_sync  # the gather too
                m = grpo_step(
                    cfg, vllm_rollouts.engine, strategy, ref, rows, step, sync_s, after_rollout=vllm_rollouts.release
                )
            else:
                m = grpo_step(cfg, engine.with_model(strategy.rollout_model().eval()), strategy, ref, rows, step)
            step += 1
            if cfg.fail_at_step == step and rank == size - 1:
                marker = session.output / f".failed_once_at_{step}"
                if not marker.exists():
                    marker.touch()
                    raise RuntimeError(f"injected failure at step {step} (fail_at_step; testing only)")
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == total:
                rollout_model = strategy.rollout_model().eval()  # collective under FSDP2 / ZeRO-3
                if rank == 0:
                    m.update(greedy_check(cfg, engine.with_model(rollout_model), held_out))
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
        final = export(
            cfg, state, session.output / "final", {k: v for k, v in last.items() if isinstance(v, (int, float))}
        )
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


# ---------------------------------------------------------------------------------------- the run's summary

SUMMARY_KEYS = (
    "loss",
    "reward_mean",
    "signal_group_rate",
    "valid_rate",
    "accuracy",
    "pref_accuracy",
    "refl_accuracy",
    "kl",
    "eval_accuracy",
    "eval_valid_rate",
    "gen_tokens_per_s",
    "update_tokens_per_s",
    "gen_seconds",
    "update_seconds",
)


def summarize_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """From metrics.jsonl's rows: the first and last step, the generation share of step time, and
    `table`: [metric, first, last, "step a -> step b"] (eval metrics from the first and last eval)."""
    first, last = rows[0], rows[-1]
    evals = [r for r in rows if "eval_accuracy" in r]
    table_rows = []
    for k in SUMMARY_KEYS:
        a, b = (evals[0], evals[-1]) if k.startswith("eval") and evals else (first, last)
        if k in b:
            table_rows.append([k, a.get(k), b.get(k), f"{a['step']} -> {b['step']}"])
    gen = sum(r.get("gen_seconds", 0) for r in rows)
    upd = sum(r.get("update_seconds", 0) for r in rows)
    return {
        "steps": last["step"],
        "generation_share": round(gen / max(gen + upd, 1e-9), 3),
        "too_long": sum(int(r.get("too_long", 0)) for r in rows),  # GRPO prompts skipped: over the token limit
        "first": first,
        "last": last,
        "table": table_rows,
    }


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's rows (a line being written right now is left out)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            break
    return rows
