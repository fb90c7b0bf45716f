"""How a model is trained across processes: DDP, FSDP2 or DeepSpeed ZeRO 1/2/3, behind one small class.

Each Ray Train worker (or any `torchrun` process: nothing here imports Ray) builds one `Strategy`:

    strategy = make_strategy(model, OptimConfig(...), "fsdp2", grad_accum=4)
    loss.backward() -> strategy.backward(loss)        (one micro-batch)
    strategy.step()                                   (clip, optimizer, scheduler, zero grads)
    strategy.rollout_model()                          (a full, unsharded model for generation)
    strategy.full_state_dict()                        (collective: the whole model, on every rank)
    strategy.save(dir) / strategy.load(dir)           (collective: model, optimizer, scheduler)

Generation and sharding: under FSDP2 and ZeRO-3 each rank holds a slice of every weight, so a
forward pass is a collective and the ranks would have to decode in lockstep. Instead the strategy
keeps one unsharded copy for generation and refreshes it from the gathered weights before each
rollout (what OpenRLHF and verl do with their vLLM engines). Under DDP and ZeRO-1/2 every rank
already holds the whole model: generation uses it directly.

The loss of a step is normalised by the step's token count over ALL ranks (`global_tokens`), and
every strategy averages gradients over ranks, so `backward(loss * world)` gives the same update
whatever the number of ranks or the split of rows between them (see `grpo_step` in reflectrm/training/step.py).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

import torch

from reflectrm.training.config import OptimConfig
from reflectrm.training.dist import world

StrategyName = Literal["ddp", "fsdp2", "deepspeed"]


def _trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class Strategy:
    name = "none"
    sharded = False  # True: parameters are split over ranks (generation needs the gathered copy)

    def __init__(self, model: torch.nn.Module, cfg: OptimConfig, grad_accum: int = 1, bf16: bool = False):
        self.cfg = cfg
        self.grad_accum = grad_accum  # micro-batches per optimizer step
        self.bf16 = bf16  # compute in bf16 over fp32 master weights (GPU)
        self.module = model  # the user's model (HF, or a peft model for LoRA), unwrapped
        self._rollout: torch.nn.Module | None = None
        if self.sharded:  # the unsharded copy for generation, made BEFORE sharding (bf16 on GPU)
            self._rollout = copy.deepcopy(model).eval().requires_grad_(False)
            if bf16:
                self._rollout.to(torch.bfloat16)

    # -- training
    def forward_model(self) -> torch.nn.Module:
        """What to call for the forward pass that gets a backward (the wrapped model)."""
        return self.wrapped

    def autocast(self) -> Any:
        """The context of a forward pass: bf16 autocast on GPU for DDP / one process; FSDP2 and
        DeepSpeed cast themselves."""
        import contextlib

        if self.bf16 and self.name in ("none", "ddp"):
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, last: bool | None = None) -> None:
        """One micro-batch's backward; `last`: it ends the step's accumulation (DeepSpeed needs to know when
        the count varies: micro-batches split by trainer.micro_batch_tokens)."""
        loss.backward()

    def step(self) -> float:
        """Clip, optimizer step, scheduler step, zero grads. Returns the gradient norm before clipping."""
        norm = torch.nn.utils.clip_grad_norm_(_trainable(self.module), self.cfg.max_grad_norm or float("inf"))
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    # -- weights
    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """COLLECTIVE (call on every rank): every weight, whole, on CPU."""
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def rollout_model(self) -> torch.nn.Module:
        """COLLECTIVE for sharded strategies: an unsharded model with the current weights, for generation."""
        if self._rollout is None:
            return self.module
        state = self.full_state_dict()
        self._rollout.load_state_dict(state)
        return self._rollout

    # -- checkpoints (each rank writes its own files into `folder`; Ray Train merges the folders)
    def save(self, folder: Path) -> None:
        rank, _ = world()
        if rank == 0:
            from safetensors.torch import save_model

            save_model(self.module, str(folder / "model.safetensors"))
            torch.save(
                {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                folder / "optimizer.pt",
            )

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_model

        load_model(self.module, str(folder / "model.safetensors"))
        state = torch.load(folder / "optimizer.pt", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def _optimizer(self, params: list[torch.nn.Parameter]) -> None:
        self.optimizer = torch.optim.AdamW(
            params, lr=self.cfg.lr, betas=self.cfg.betas, weight_decay=self.cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.cfg.lr_lambda)


class Single(Strategy):
    """One process, no wrapping (the plain-process baseline of the Ray Train overhead benchmark)."""

    name = "none"

    def __init__(self, model: torch.nn.Module, cfg: OptimConfig, grad_accum: int = 1, bf16: bool = False):
        super().__init__(model, cfg, grad_accum, bf16)
        self.wrapped = model
        self._optimizer(_trainable(model))


class DDP(Strategy):
    name = "ddp"

    def __init__(self, model: torch.nn.Module, cfg: OptimConfig, grad_accum: int = 1, bf16: bool = False):
        super().__init__(model, cfg, grad_accum, bf16)
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        self.wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self._optimizer(_trainable(model))


class FSDP2(Strategy):
    """torch's per-parameter sharding (`fully_shard`): each decoder layer is one unit, then the root."""

    name = "fsdp2"
    sharded = True

    def __init__(self, model: torch.nn.Module, cfg: OptimConfig, grad_accum: int = 1, bf16: bool = False):
        super().__init__(model, cfg, grad_accum, bf16)
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            if bf16
            else MixedPrecisionPolicy()
        )
        for layer in _decoder_layers(model):
            fully_shard(layer, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        self.wrapped = model
        self._optimizer(_trainable(model))

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # cpu_offload=True would leave ranks > 0 with an empty dict: every rank needs the weights
        state = get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=False))
        return {k: v.cpu() for k, v in state.items()}

    def save(self, folder: Path) -> None:  # torch.distributed.checkpoint: every rank writes its shard
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_sd, optim_sd = get_state_dict(self.module, self.optimizer)
        dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(folder / "dcp"))
        if world()[0] == 0:
            torch.save({"scheduler": self.scheduler.state_dict()}, folder / "scheduler.pt")

    def load(self, folder: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_sd, optim_sd = get_state_dict(self.module, self.optimizer)
        state = {"model": model_sd, "optimizer": optim_sd}
        dcp.load(state, checkpoint_id=str(folder / "dcp"))
        set_state_dict(
            self.module, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
        )
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True)["scheduler"])


class DeepSpeed(Strategy):
    """DeepSpeed ZeRO stage 1, 2 or 3 (optionally the optimizer state offloaded to CPU), started with
    `deepspeed.initialize` on the process group Ray Train (or torchrun) already made."""

    name = "deepspeed"

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: OptimConfig,
        grad_accum: int = 1,
        bf16: bool = False,
        zero_stage: int = 2,
        offload_optimizer: bool = False,
    ):
        if zero_stage not in (1, 2, 3):
            raise ValueError(f"trainer.zero_stage must be 1, 2 or 3, got {zero_stage}")
        self.zero_stage = zero_stage
        self.sharded = zero_stage == 3
        super().__init__(model, cfg, grad_accum, bf16)
        import deepspeed

        _, world_size = world()
        zero: dict[str, Any] = {"stage": zero_stage}
        if offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu"}
        ds_config = {
            "train_micro_batch_size_per_gpu": 1,  # nominal: we pass our own micro-batches
            "gradient_accumulation_steps": grad_accum,
            "train_batch_size": grad_accum * world_size,
            "gradient_clipping": cfg.max_grad_norm,
            "zero_optimization": zero,
            "bf16": {"enabled": bf16},  # bf16 compute, fp32 master weights in the optimizer
            "zero_allow_untested_optimizer": True,
            "zero_force_ds_cpu_optimizer": False,  # our torch AdamW also with offload (no compiled op)
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        optimizer = torch.optim.AdamW(_trainable(model), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, cfg.lr_lambda),
            config=ds_config,
            dist_init_required=False,
        )
        self.wrapped = self.engine

    def backward(self, loss: torch.Tensor, last: bool | None = None) -> None:
        if last is not None:  # the step's micro-batch count varies with sequence lengths: say where it ends
            self.engine.set_gradient_accumulation_boundary(last)
        self.engine.backward(loss, scale_wrt_gas=False)  # our loss is already normalised over the step
        self.engine.step()  # DeepSpeed steps only at the accumulation boundary

    def step(self) -> float:  # the update already happened in the last backward (the boundary)
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else math.nan

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        if self.zero_stage < 3:
            return super().full_state_dict()
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}

    def save(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder / "deepspeed"), tag="state")

    def load(self, folder: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(folder / "deepspeed"), tag="state")
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint under {folder / 'deepspeed'}")


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of an HF (or peft-wrapped HF) causal LM: FSDP2's sharding units."""
    for module in model.modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers):
            return list(layers)
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__} (no `.layers` ModuleList) to shard")


def make_strategy(
    model: torch.nn.Module,
    cfg: OptimConfig,
    name: str,
    grad_accum: int = 1,
    bf16: bool = False,
    zero_stage: int = 2,
    offload_optimizer: bool = False,
) -> Strategy:
    """`zero_stage` and `offload_optimizer` are DeepSpeed's (trainer.zero_stage, trainer.offload_optimizer)."""
    _, world_size = world()
    if name == "none" or world_size == 1 and name == "ddp":
        return Single(model, cfg, grad_accum, bf16)
    if name == "deepspeed":
        return DeepSpeed(model, cfg, grad_accum, bf16, zero_stage, offload_optimizer)
    classes = {"ddp": DDP, "fsdp2": FSDP2}
    if name not in classes:
        raise ValueError(f"trainer.strategy must be one of ddp, deepspeed, fsdp2, got {name!r}")
    return classes[name](model, cfg, grad_accum, bf16)
