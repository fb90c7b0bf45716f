"""Training a judge (method.md §3), in plain torch: no Ray in here. One file per concern:

    config.py       every training setting: LoopConfig and its sections (trainer, grpo, optim, lora)
    data.py         the training items of a run: build_data's mix, or a loader format, and the held-out items
    objectives.py   rewards from THE parser, group advantages, the clipped GRPO loss, KL, SFT labels (pure)
    policy.py       rollouts through the engine, log-probs and the losses on a live model
    step.py         one GRPO step and one SFT step of a worker; their metrics (`step_metrics`, pure)
    worker.py       what a worker holds: engine, strategy, KL reference, vLLM rollouts
    trainer.py      the worker's entry and its loop (GRPO, RFT or SFT) over any Session
    session.py      where items come from and results go: the Protocol, and LocalSession (one process)
    run_log.py      metrics.jsonl, events.jsonl and the run's summary
    model.py        build the model (LoRA, the KL reference) and export the merged HF folder
    dist.py         all the collectives
    strategies.py   how a model is wrapped across processes: DDP, FSDP2, DeepSpeed ZeRO 1/2/3
    rollout_engine.py  vLLM rollouts with the trainer's weights synced every step
    warm_start.py   the SFT warm start: its data and settings, and a one-process runner
    tiny_judge.py   the `tiny-judge` test model (tiny-random after a short SFT)

The Ray Train adapter that runs `trainer.train_worker` on many workers is jobs/ray_training.py.
"""
