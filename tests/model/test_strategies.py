"""The strategies (reflectrm/training/strategies.py) on 2 processes with gloo and no Ray cluster, GRPO on
`tiny-judge` (rewards vary, so the loss is a real policy gradient):

- DDP, FSDP2, DeepSpeed ZeRO-2 and ZeRO-3 give the same losses step for step, all with the shared-prefix
  update, and DDP's equals the plain update's (grad norms and all) (the one place this is proved;
  the Ray Train integration test keeps one run for failure, restart and re-run);
- each strategy's checkpoint loads back: a run stopped after step 1 and started again from its step-1
  checkpoint gives the step-2 loss of the run straight through (model, optimizer and scheduler restored);
- Critic-RM's joint loss (recipe=critic_rm: the LM and its reward head as one module) gives the same losses
  under each strategy, and each exports the same reward head.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

from reflectrm.training.critic import HEAD_FILE
from tests.helpers import write_toy_critic, write_toy_mix

pytestmark = pytest.mark.timeout(600)

SIZE = 2
STRATEGIES = {"ddp": ("ddp", 2), "fsdp2": ("fsdp2", 2), "zero2": ("deepspeed", 2), "zero3": ("deepspeed", 3)}
PLAIN = "ddp_plain"  # DDP with one [prompt, completion] row per rollout (trainer.shared_prefix=false), straight only


class RankSession:
    """One rank's share of the items (every SIZE-th) and a checkpoint folder all ranks merge into, as Ray Train
    merges its workers' checkpoint folders."""

    def __init__(self, items: list, rank: int, output: Path):
        from reflectrm.training.session import LocalSession

        self.local = LocalSession(items[rank::SIZE], 2, output)
        self.output = output

    def batches(self, epoch: int):
        return self.local.batches(epoch)

    def checkpoint_dir(self) -> Path | None:
        found = sorted(p for p in (self.output / "checkpoints").glob("step_*") if (p / "state.json").exists())
        return found[-1] if found else None

    def report(self, metrics: dict, checkpoint: Path | None) -> None:
        import torch.distributed as dist

        if checkpoint is not None:
            dest = self.output / "checkpoints" / f"step_{metrics['step']:06d}"
            shutil.copytree(checkpoint, dest, dirs_exist_ok=True)  # each rank's files into the one folder
            shutil.rmtree(checkpoint)
        dist.barrier()  # the folder is whole before any rank goes on

    def progress(self, total: int, initial: int):
        return self.local.progress(total, initial)


def run_rank(rank: int, port: int, name: str, mix: str, root: str) -> None:
    """One rank: the run straight through (2 steps), then the same run stopped after step 1 and resumed; then
    a 2-step Critic-RM run on the critic items beside the mix."""
    import torch
    import torch.distributed as dist

    from reflectrm.config import ModelConfig
    from reflectrm.data.items import read_items
    from reflectrm.training.config import GRPOConfig, LoopConfig, OptimConfig, TrainerConfig
    from reflectrm.training.trainer import train_worker

    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(SIZE)}
    os.environ.update(env | {"LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(SIZE)})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=SIZE)
    strategy, zero = STRATEGIES["ddp" if name == PLAIN else name]
    cfg = LoopConfig(
        recipe="grpo",
        model=ModelConfig(name="tiny-judge"),
        grpo=GRPOConfig(n=4, max_new_tokens=40, kl_coef=0.01),
        optim=OptimConfig(lr=1e-3),
        trainer=TrainerConfig(
            strategy=strategy,
            zero_stage=zero,
            prompts_per_worker=2,
            micro_batch=4,
            rollout_engine="hf",
            shared_prefix=name != PLAIN,
        ),
        max_steps=2,
        checkpoint_every=1,
        eval_every=0,
    )
    items = read_items(mix)
    try:
        runs = (("straight", 2),) if name == PLAIN else (("straight", 2), ("resumed", 1), ("resumed", 2))
        for run, steps in runs:  # the second "resumed" starts at step 1
            out = Path(root) / name / run
            train_worker(dataclasses.replace(cfg, max_steps=steps), RankSession(items, rank, out), 4, [])
        if name != PLAIN:
            critic = dataclasses.replace(cfg, recipe="critic_rm", checkpoint_every=0)
            critic_items = read_items(Path(mix).with_name("critic.parquet"))
            train_worker(critic, RankSession(critic_items, rank, Path(root) / name / "critic"), 2, [])
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import torch.multiprocessing as mp

    root = tmp_path_factory.mktemp("strategies")
    mix = write_toy_mix(root / "mix.parquet", 10)
    write_toy_critic(root / "critic.parquet", 8)
    for name in (*STRATEGIES, PLAIN):
        mp.spawn(run_rank, args=(free_port(), name, str(mix), str(root)), nprocs=SIZE, join=True)
    return root


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_ddp_fsdp2_zero2_and_zero3_give_the_same_losses(runs):
    ddp = metrics(runs / "ddp" / "straight")
    assert [m["step"] for m in ddp] == [1, 2] and any(m["loss"] != 0 for m in ddp)  # a real policy gradient
    for name in ("fsdp2", "zero2", "zero3"):
        other = metrics(runs / name / "straight")
        for key in ("loss", "reward_mean", "completion_tokens", "kl"):
            assert [m[key] for m in other] == pytest.approx([m[key] for m in ddp], rel=1e-4, abs=1e-6), (name, key)


def test_the_shared_prefix_update_equals_the_plain_one_under_ddp(runs):
    shared, plain = metrics(runs / "ddp" / "straight"), metrics(runs / PLAIN / "straight")
    for key in ("loss", "grad_norm", "kl", "reward_mean", "completion_tokens"):  # step 2 follows step 1's update
        assert [m[key] for m in shared] == pytest.approx([m[key] for m in plain], rel=1e-5, abs=1e-7), key
    assert all(m["grad_norm"] > 0 for m in plain)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_each_strategys_checkpoint_loads_back(runs, name):
    straight, resumed = metrics(runs / name / "straight"), metrics(runs / name / "resumed")
    events = [json.loads(line) for line in (runs / name / "resumed" / "events.jsonl").read_text().splitlines()]
    assert [e["resumed_from"] for e in events if e["event"] == "start"] == [0, 1]  # the second run began at step 1
    assert [m["step"] for m in resumed] == [1, 2]
    assert straight[1]["loss"] != 0  # step 2 learnt something: a lost optimizer state would change it
    for key in ("loss", "grad_norm", "kl", "reward_mean"):
        assert resumed[1][key] == pytest.approx(straight[1][key], rel=1e-4, abs=1e-6), key


def test_critic_rm_gives_the_same_losses_and_head_under_each_strategy(runs):
    from safetensors.torch import load_file

    ddp = metrics(runs / "ddp" / "critic")
    assert [m["step"] for m in ddp] == [1, 2] and all(m["bt_loss"] > 0 and m["lm_loss"] > 0 for m in ddp)
    head = load_file(str(runs / "ddp" / "critic" / "final" / HEAD_FILE))
    for name in ("fsdp2", "zero2", "zero3"):
        other = metrics(runs / name / "critic")
        for key in ("loss", "lm_loss", "bt_loss", "reward_margin", "grad_norm"):
            assert [m[key] for m in other] == pytest.approx([m[key] for m in ddp], rel=1e-4, abs=1e-6), (name, key)
        theirs = load_file(str(runs / name / "critic" / "final" / HEAD_FILE))
        assert all(torch.allclose(theirs[k], head[k], atol=1e-5) for k in head), name
