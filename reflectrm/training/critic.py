"""Critic-RM's model and joint objective (arXiv 2411.16646; method.md §6): the causal LM writes a critique of
one response, and a scalar reward head reads the hidden state at the critique's last token.

    model = CriticLM(lm)                          the LM (or its peft wrapper) + `reward_head`, one module, so
                                                  DDP, FSDP2 (the head in the root unit) and ZeRO wrap it whole
    loss  = lam_t * LM(critiques) + (1 - lam_t) * BT(r(chosen, its critique) - r(rejected, its critique))

lam_t moves from `critic.lambda_start` to `critic.lambda_end` over the run (the paper's "dynamic weight
scheduling" is not public: ours is a linear, cosine or constant schedule, a setting). The head is saved beside
the exported weights as `reward_head/head.safetensors` and loaded with them (`load_reward_head`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

# In a folder of its own: vLLM (and other loaders) read every top-level *.safetensors of a model as its weights
HEAD_FILE = "reward_head/head.safetensors"


class CriticLM(torch.nn.Module):
    """A causal LM with a scalar reward head on its last hidden state. `forward(..., reward_index=idx)`
    also returns `rewards[b]`: the head on row b's hidden state at position idx[b]."""

    def __init__(self, lm: torch.nn.Module, head: torch.nn.Linear | None = None):
        super().__init__()
        self.lm = lm
        hidden = lm.config.hidden_size
        if head is None:
            head = torch.nn.Linear(hidden, 1)
            torch.nn.init.normal_(head.weight, std=1.0 / math.sqrt(hidden + 1))  # as TRL's reward models
            torch.nn.init.zeros_(head.bias)
        self.reward_head = head.float()
        self.config = lm.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, reward_index=None, **kw):
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **kw)
        if reward_index is not None:
            last = out.hidden_states[-1][torch.arange(len(reward_index), device=input_ids.device), reward_index]
            out.rewards = self.reward_head(last.float()).squeeze(-1)
        return out


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected): the pairwise reward loss (0 when chosen >> rejected)."""
    loss = -F.logsigmoid(chosen - rejected)
    return loss.mean() if reduction == "mean" else loss.sum()


def critic_lambda(step: int, total: int, start: float, end: float, schedule: str = "linear") -> float:
    """The weight of the critique (LM) loss at `step` (0-based) of `total`: from `start` to `end`."""
    if schedule not in ("linear", "cosine", "constant"):
        raise ValueError(f"critic.schedule={schedule!r}: use linear, cosine or constant")
    if schedule == "constant" or total <= 1:
        return start
    t = min(max(step / (total - 1), 0.0), 1.0)
    if schedule == "cosine":
        t = (1 - math.cos(math.pi * t)) / 2
    return start + (end - start) * t


def pack(seqs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded (prompt + target) rows: ids, attention mask, labels on the target tokens, and the
    index of each row's last target token (where the head reads the critique)."""
    width = max(len(p) + len(t) for p, t in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    last = torch.zeros(len(seqs), dtype=torch.long)
    for k, (p, t) in enumerate(seqs):
        n = len(p) + len(t)
        ids[k, :n] = torch.tensor(list(p) + list(t))
        labels[k, len(p) : n] = torch.tensor(list(t))
        attn[k, :n] = 1
        last[k] = n - 1
    return {"input_ids": ids, "attention_mask": attn, "labels": labels, "last": last}


def critic_terms(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed cross-entropy over the target tokens, summed BT loss over the pairs, the rewards). Rows come in
    pairs: 2i is the chosen response's critique, 2i + 1 the rejected one's."""
    device = next(model.parameters()).device
    b = {k: v.to(device) for k, v in batch.items()}
    out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], reward_index=b["last"], use_cache=False)
    logits = out.logits[:, :-1].float()
    lm = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), b["labels"][:, 1:].reshape(-1), ignore_index=-100, reduction="sum"
    )
    r = out.rewards
    return lm, bradley_terry_loss(r[0::2], r[1::2], "sum"), r.detach()


def save_reward_head(state: dict[str, torch.Tensor], folder: Path, meta: dict[str, Any]) -> None:
    """The head's weights (safetensors) and what it reads (head.json) in reward_head/ beside an exported model."""
    from safetensors.torch import save_file

    (folder / HEAD_FILE).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().float() for k, v in state.items()}, str(folder / HEAD_FILE))
    (folder / HEAD_FILE).with_suffix(".json").write_text(json.dumps(meta, indent=2))


def load_reward_head(folder: str | Path, hidden_size: int) -> torch.nn.Linear:
    """The head saved beside a Critic-RM export; a clear error when the folder has none."""
    from safetensors.torch import load_file

    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} has no reward head ({HEAD_FILE}): Critic-RM scores need a model trained with "
            "recipe=critic_rm, which saves its head beside the weights"
        )
    state = load_file(str(path))
    if tuple(state["weight"].shape) != (1, hidden_size):
        raise ValueError(f"{path}: a head for hidden size {state['weight'].shape[1]}, but the model's is {hidden_size}")
    head = torch.nn.Linear(hidden_size, 1)
    head.load_state_dict(state)
    return head


def critic_step(worker: Any, rows: list[Any], step: int, total: int) -> dict[str, float]:
    """One Critic-RM step on this worker's critic items: the critiques of each item's two responses (chosen
    first) in one micro-batch, lam_t * the LM loss over all workers' critique tokens + (1 - lam_t) * the BT
    loss over all workers' pairs."""
    import time

    from reflectrm.methods.critic_rm import critique_prompt, render_critique
    from reflectrm.training.dist import all_max, all_sum, world
    from reflectrm.training.policy import micro_batches, zero_loss

    cfg, strategy, engine = worker.cfg, worker.strategy, worker.engine
    _, size = world()
    t0 = time.perf_counter()
    tok = engine.tokenizer
    lam = critic_lambda(step, total, cfg.critic.lambda_start, cfg.critic.lambda_end, cfg.critic.schedule)
    seqs = []
    for r in rows:
        for pos in (r.label, 3 - r.label):  # chosen, then rejected
            c = r.critiques[pos - 1]
            response = r.pair.response_1 if pos == 1 else r.pair.response_2
            prompt = engine.encode(critique_prompt(r.pair.context, response, cfg.prompt))
            target = tok(render_critique(c.analysis, c.verdict), add_special_tokens=False)["input_ids"]
            seqs.append((prompt, target + [tok.eos_token_id]))
    local_tokens = sum(len(t) for _, t in seqs)
    all_tokens, all_pairs = all_sum([local_tokens, len(rows)])
    tok_norm, pair_norm = max(all_tokens, 1.0) / size, max(all_pairs, 1.0) / size
    strategy.module.train()
    lengths = [
        len(seqs[2 * i][0]) + len(seqs[2 * i][1]) + len(seqs[2 * i + 1][0]) + len(seqs[2 * i + 1][1])
        for i in range(len(rows))
    ]
    chunks = micro_batches(lengths, max(1, cfg.trainer.micro_batch // 2), cfg.trainer.micro_batch_tokens)
    count = all_max(max(len(chunks), cfg.grad_accum()))  # the same count on every worker (collectives)
    sums = {"loss": 0.0, "lm": 0.0, "bt": 0.0, "right": 0.0, "margin": 0.0}
    for k in range(count):
        idx = chunks[k] if k < len(chunks) else []
        with strategy.autocast():
            if idx:
                batch = pack([seqs[j] for i in idx for j in (2 * i, 2 * i + 1)], tok.pad_token_id)
                lm, bt, r = critic_terms(strategy.forward_model(), batch)
                loss = lam * lm / tok_norm + (1 - lam) * bt / pair_norm
                sums["lm"] += float(lm.detach())
                sums["bt"] += float(bt.detach())
                sums["right"] += float((r[0::2] > r[1::2]).sum())
                sums["margin"] += float((r[0::2] - r[1::2]).sum())
            else:  # keep the micro-batch count equal on every worker (collectives)
                loss = zero_loss(strategy.module)
        strategy.backward(loss, last=k == count - 1)
        sums["loss"] += float(loss.detach())
    grad_norm = strategy.step()
    loss, lm, bt, right, margin, secs = all_sum([*sums.values(), time.perf_counter() - t0])
    return {
        "loss": loss / size,
        "lm_loss": lm / max(all_tokens, 1.0),
        "bt_loss": bt / max(all_pairs, 1.0),
        "reward_accuracy": right / max(all_pairs, 1.0),  # pairs whose chosen critique gets the higher reward
        "reward_margin": margin / max(all_pairs, 1.0),
        "lambda": lam,
        "grad_norm": grad_norm,
        "lr": strategy.lr(),
        "target_tokens": all_tokens,
        "update_seconds": secs / size,
        "gen_seconds": 0.0,
    }
