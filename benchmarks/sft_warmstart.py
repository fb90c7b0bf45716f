"""Does a short SFT on the synthetic set's checkable target judgments teach the judgment format?
(The untrained default model writes 0% valid judgments, so GRPO alone has no signal: method.md §3
names SFT as the warm start.) One process, no Ray; JSON out.

    .venv/bin/python -m benchmarks.sft_warmstart [--model smollm2-135m-instruct --steps 40 --batch 4 --lr 2e-5]

Before and after: greedy judgments of held-out synthetic pairs (another seed), valid-format rate
and accuracy. Training: AdamW, the loss on the target tokens only (reflectrm.training.step.sft_loss_on).
"""

from __future__ import annotations

import os
import time

import torch

from benchmarks.common import parse, parser, write_report
from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.synthetic import synthetic_pairs, target_analysis
from reflectrm.engines.hf import HFEngine
from reflectrm.inference import Judge
from reflectrm.prompts import render_judgment, response_prompt
from reflectrm.training.policy import sft_loss_on


def greedy_eval(engine: HFEngine, pairs, max_new_tokens: int) -> dict:
    engine.model.eval()
    results = Judge(engine, JudgeConfig(max_new_tokens=max_new_tokens)).judge(pairs, "greedy")
    valid = sum(r.judgments[0].valid for r in results)
    correct = sum(r.preferred == p.label for r, p in zip(results, pairs))
    return {
        "pairs": len(pairs),
        "valid_rate": valid / len(pairs),
        "accuracy": correct / len(pairs),
        "example": results[0].judgments[0].text[:300],
    }


def main() -> None:
    ap = parser("sft_warmstart", __doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--eval-pairs", type=int, default=18)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    args = parse(ap)
    torch.manual_seed(0)
    engine = HFEngine.from_config(ModelConfig(name=args.model))
    tok = engine.tokenizer
    held_out = synthetic_pairs(args.eval_pairs, seed=99)
    before = greedy_eval(engine, held_out, args.max_new_tokens)
    print("before", before, flush=True)

    train = synthetic_pairs(args.steps * args.batch, seed=0)
    model = engine.model
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    losses, t0 = [], time.perf_counter()
    for step in range(args.steps):
        model.train()
        batch = train[step * args.batch : (step + 1) * args.batch]
        prompts = [engine.encode(response_prompt(p)) for p in batch]
        targets = [
            tok(render_judgment(target_analysis(p), p.label), add_special_tokens=False)["input_ids"]
            + [tok.eos_token_id]
            for p in batch
        ]
        loss = sft_loss_on(model, prompts, targets, tok.pad_token_id)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(round(float(loss.detach()), 4))
        print(f"step {step + 1}/{args.steps} loss {losses[-1]:.4f}", flush=True)
    train_s = time.perf_counter() - t0
    after = greedy_eval(engine, held_out, args.max_new_tokens)
    print("after", after, flush=True)
    write_report(
        {
            "model": args.model,
            "steps": args.steps,
            "batch": args.batch,
            "lr": args.lr,
            "cpus": os.cpu_count(),
            "train_seconds": round(train_s, 1),
            "losses": losses,
            "before": before,
            "after": after,
        },
        args.output,
    )


if __name__ == "__main__":
    main()
