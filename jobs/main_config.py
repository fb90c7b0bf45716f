"""The main job's config (jobs/main.py), and how it derives each stage's config from the stage job's
own YAML with dataclasses.replace: the evaluations, the SFT warm start, build_data and GRPO. The stage
builders (`eval_config`, `warm_start_config`, `build_config`, `grpo_config`) are what benchmarks/reproduce.py
composes too."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from jobs.ray_building import BuildDataConfig
from jobs.ray_scoring import EvaluateConfig, StagesConfig
from jobs.ray_setup import PoolConfig, RayConfig
from jobs.ray_training import TrainConfig
from reflectrm.config import ConfigError, JudgeConfig, ModelConfig, PromptConfig, load_config, narrow
from reflectrm.data.sources import DataConfig
from reflectrm.training.config import GRPOConfig
from reflectrm.training.warm_start import warm_start_config as warm_start_loop
from reflectrm.training.warm_start import warm_start_data

CONFIGS = Path(__file__).resolve().parent / "configs"
TRAIN_SEED, BUILD_SEED, EVAL_SEED = 0, 1, 1234  # three disjoint draws of the synthetic set
CPUS = os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class EvalSection:
    pairs: int = 6  # held-out synthetic pairs, each judged in both orders
    llmbar: int = 2  # LLMBar-natural pairs too when ../shared/data is present (0: never)
    batch_size: int = 16  # items per engine call (vLLM batches them: 16 took 0.77x the time of 4)


@dataclasses.dataclass(frozen=True)
class WarmStartSection:
    steps: int = 8  # SFT steps (4 pairs each); 0 skips the warm start
    lr: float = 6.0e-5  # 2e-5: 10 of 48 sampled judgments valid, GRPO reward -1 everywhere; 6e-5: 45 of 48


@dataclasses.dataclass(frozen=True)
class BuildSection(JudgeConfig):
    """build_data's judge settings (n judgments per pair, ...) plus how many pairs it samples."""

    pairs: int = 6  # pairs sampled n times for the reflection data (method.md §2)


@dataclasses.dataclass(frozen=True)
class GrpoSection(GRPOConfig):
    """The GRPO settings (n rollouts per prompt, ...) plus the run's length."""

    steps: int = 3  # the mix is interleaved 4:1, so 3 steps reach its first reflection item
    prompts: int = 2  # prompts per step: one pair in both orders (data.orders=both: a step holds both)
    lr: float = 5.0e-6


@dataclasses.dataclass(frozen=True)
class MainConfig:
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    judge: JudgeConfig = JudgeConfig(n=4, max_new_tokens=96, seed=0)  # the evaluations' settings
    eval: EvalSection = EvalSection()
    warmstart: WarmStartSection = WarmStartSection()
    build: BuildSection = BuildSection(mode="majority", n=8, max_new_tokens=96)
    grpo: GrpoSection = GrpoSection(n=4, max_new_tokens=96)
    ray: RayConfig = RayConfig()
    checkpoint_every: int = 4  # training steps between checkpoints (each writes the model and optimizer state)
    output: str = "runs/main"
    fresh: bool = False  # true: evaluation and build_data drop results made with other settings
    # ONE judge budget (tokens per judgment) for build_data, GRPO and both evaluations; it overrides theirs
    max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None:
            _positive_tokens(self.max_new_tokens)
            return
        build, grpo, judge = self.build.max_new_tokens, self.grpo.max_new_tokens, self.judge.max_new_tokens
        if build != grpo or judge < grpo:
            raise ConfigError(
                f"judge budgets differ: build.max_new_tokens={build}, grpo.max_new_tokens={grpo}, "
                f"judge.max_new_tokens={judge} (evaluation): the model must be built, trained and evaluated on one "
                "budget, never evaluated below its training one; set max_new_tokens=N once for all three"
            )

    def budgets(self) -> MainConfig:
        """This config with the one budget put into the evaluations', build_data's and GRPO's settings."""
        if self.max_new_tokens is None:
            return self
        n = self.max_new_tokens
        return dataclasses.replace(
            self,
            judge=dataclasses.replace(self.judge, max_new_tokens=n),
            build=dataclasses.replace(self.build, max_new_tokens=n),
            grpo=dataclasses.replace(self.grpo, max_new_tokens=n),
            max_new_tokens=None,
        )


def _positive_tokens(n: int) -> None:
    if n < 1:
        raise ConfigError(f"max_new_tokens={n}: must be >= 1")


def eval_config(
    model: ModelConfig, judge: JudgeConfig, datasets: tuple[str, ...], batch_size: int, **fields: Any
) -> EvaluateConfig:
    """jobs/configs/evaluate.yaml with this model, judge and datasets, on one pool of `batch_size` pairs a call."""
    ev = load_config(EvaluateConfig, CONFIGS / "evaluate.yaml", [f"datasets=[{','.join(datasets)}]"])
    stages = StagesConfig(separate=False, stage1=PoolConfig(cpus=1, batch_size=batch_size))
    return dataclasses.replace(ev, model=model, judge=judge, stages=stages, **fields)


def warm_start_config(base: str, steps: int, lr: float, **fields: Any) -> TrainConfig:
    """The SFT warm start as a Ray Train job: the settings and data of reflectrm.training.warm_start (its one
    source, which also runs it in one process), on one worker with every core."""
    loop = warm_start_loop(base, steps, lr)
    trainer = dataclasses.replace(loop.trainer, cpus_per_worker=1, threads=CPUS)
    settings = {f.name: getattr(loop, f.name) for f in dataclasses.fields(loop)} | {"trainer": trainer}
    return TrainConfig(**settings | {"data": warm_start_data(steps), **fields})


def grpo_config(recipe: str, base: str, mix: Path, steps: int, lr: float, **fields: Any) -> TrainConfig:
    """jobs/configs/{grpo,rft}.yaml on build_data's mix, `steps` steps at `lr`, one worker with every core."""
    cfg = load_config(TrainConfig, CONFIGS / f"{recipe}.yaml")
    trainer = dataclasses.replace(cfg.trainer, cpus_per_worker=1, threads=CPUS)
    cfg = dataclasses.replace(cfg, trainer=trainer, optim=dataclasses.replace(cfg.optim, lr=lr))
    data = DataConfig(format="mix", path=str(mix), held_out=0)
    return dataclasses.replace(cfg, model=ModelConfig(name=base), data=data, max_steps=steps, **fields)


def build_config(model: ModelConfig, data: DataConfig, judge: JudgeConfig, **fields: Any) -> BuildDataConfig:
    """jobs/configs/build_data.yaml with this model, data and judge, its pool on every core."""
    bd = load_config(BuildDataConfig, CONFIGS / "build_data.yaml")
    pool = dataclasses.replace(bd.pool, threads=CPUS)
    return dataclasses.replace(bd, model=model, data=data, judge=judge, pool=pool, **fields)


def sub_configs(
    cfg: MainConfig, out: Path, datasets: tuple[str, ...]
) -> tuple[EvaluateConfig, TrainConfig, BuildDataConfig, TrainConfig]:
    """(evaluation, warm start, build_data, GRPO): each job's own YAML with this job's settings put in."""
    shared = {"prompt": cfg.prompt, "ray": cfg.ray}
    ev = eval_config(cfg.model, cfg.judge, datasets, cfg.eval.batch_size, fresh=cfg.fresh, **shared)
    training = {"seed": TRAIN_SEED, "checkpoint_every": cfg.checkpoint_every, "eval_every": 0, **shared}
    w = cfg.warmstart
    sft = warm_start_config(cfg.model.name, w.steps, w.lr, output=str(out / "warmstart"), **training)
    g = cfg.grpo
    grpo = grpo_config("grpo", cfg.model.name, out / "build_data" / "mix.parquet", g.steps, g.lr, **training)
    trainer = dataclasses.replace(grpo.trainer, prompts_per_worker=g.prompts, micro_batch=g.n * g.prompts)
    grpo = dataclasses.replace(grpo, grpo=narrow(g, GRPOConfig), trainer=trainer, output=str(out / "grpo"))
    data = DataConfig(format="synthetic", path=str(cfg.build.pairs))
    judge = dataclasses.replace(narrow(cfg.build, JudgeConfig), seed=BUILD_SEED)
    bd = build_config(cfg.model, data, judge, fresh=cfg.fresh, output=str(out / "build_data"), **shared)
    return ev, sft, bd, grpo
