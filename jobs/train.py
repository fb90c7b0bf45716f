"""Train a judge: ReflectRM's unified GRPO, the RFT baseline, or SFT, on Ray Train workers fed by Ray Data.

    python -m jobs.train --config jobs/configs/grpo.yaml data.path=runs/build_data/mix.parquet
    python -m jobs.train --config jobs/configs/grpo.yaml model=tiny-random data.path=MIX.parquet \\
        trainer.num_workers=2 trainer.strategy=deepspeed trainer.zero_stage=2 max_steps=2 output=DIR
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.train --config jobs/configs/grpo.yaml output=/shared/runs/grpo trainer.use_gpu=true ...

recipes (jobs/configs/{grpo,rft,sft}.yaml):
    grpo  the mixed data of jobs.build_data (preference + reflection items), method.md §3
    rft   the same on preference items only (the paper's baseline)
    sft   supervised on target judgments: the loss on the target tokens only

Outputs in `output`: config.json, metrics.jsonl (one line per step), events.jsonl, curves.png,
summary.json, final/ (the merged HF export, plus adapter/ for LoRA) and ray/ (Ray Train's
checkpoints). Re-running the same command resumes from the latest checkpoint. With several nodes,
`output` must be storage every node sees. Every setting: reflectrm/training/config.py (LoopConfig,
TrainerConfig) and jobs/ray_training.py (TrainConfig = LoopConfig + data, ray, output).
"""

from __future__ import annotations

from typing import Any, Sequence

from jobs.common import describe, parse_job_config, run_folder, user_errors
from jobs.ray_training import TrainConfig, train
from reflectrm.report import table


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = parse_job_config(TrainConfig, argv, __doc__)
    out = run_folder(cfg, cfg.output).resolve()
    t = cfg.trainer
    print(
        describe(
            f"train ({cfg.recipe})",
            out,
            model=cfg.model.name,
            data=f"{cfg.data.format}:{cfg.data.path}",
            lr=cfg.optim.lr,
            n=cfg.grpo.n if cfg.recipe != "sft" else None,
            max_steps=cfg.max_steps,
            workers=t.num_workers,
            strategy=t.strategy,
            finetune=t.finetune,
        )
    )
    with user_errors("train"):
        from reflectrm.models import resolve_model

        resolve_model(cfg.model.name)  # a bad name fails here, before Ray starts; aliases are built once
        s = train(cfg, out)
    print(table(["metric", "first", "last", "steps"], s["table"]))
    share = f"; generation {100 * s['generation_share']:.0f}% of step time" if s["generation_share"] else ""
    print(f"{s['steps']} steps in {s['wall_seconds']:.0f} s{share}")
    if s["too_long"]:
        print(f"skipped {s['too_long']} prompts over model.max_prompt_tokens (raise it, or drop long items)")
    print(f"export: {s['export']}  (its README.md says how to judge with it)")
    print(f"metrics: {out / 'metrics.jsonl'}, curves: {out / 'curves.png'}")
    return s


if __name__ == "__main__":
    main()
