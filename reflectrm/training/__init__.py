"""Training a judge (method.md §3), in plain torch: no Ray in here.

    objectives.py  rewards from THE parser, group advantages, the clipped GRPO loss, KL, SFT labels (pure)
    step.py        rollouts through the engine and the losses on a live model
    strategies.py  how a model is wrapped across processes: DDP, FSDP2, DeepSpeed ZeRO 1/2/3
    trainer.py     one worker's loop (GRPO, RFT or SFT) over any Session, checkpoints, export
    data.py        the training rows of a run: build_data's mix, or a loader format, and the held-out rows
    tiny_judge.py  the `tiny-judge` test model (tiny-random after a short SFT)

The Ray Train adapter that runs `trainer.train_worker` on many workers is jobs/ray_training.py.
"""
