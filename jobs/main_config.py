"""The main job's config (jobs/main.py), and how it derives each stage's config from the stage job's
own YAML with dataclasses.replace: the evaluations, the SFT warm start, build_data and GRPO."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from jobs.common import DataConfig
from jobs.ray_building import BuildDataConfig
from jobs.ray_scoring import EvaluateConfig, StagesConfig
from jobs.ray_setup import PoolConfig, RayConfig
from jobs.ray_training import TrainConfig
from reflectrm.config import ConfigError, JudgeConfig, ModelConfig, PromptConfig, load_config, narrow
from reflectrm.training.data import TrainDataConfig
from reflectrm.training.step import GRPOConfig

CONFIGS = Path(__file__).resolve().parent / "configs"
TRAIN_SEED, BUILD_SEED, EVAL_SEED = 0, 1, 1234  # three disjoint draws of the synthetic set


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
    prompts: int = 1  # prompts per step
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


def sub_configs(
    cfg: MainConfig, out: Path, datasets: tuple[str, ...]
) -> tuple[EvaluateConfig, TrainConfig, BuildDataConfig, TrainConfig]:
    """(evaluation, warm start, build_data, GRPO): each job's own YAML with this job's settings put in."""
    cpus = os.cpu_count() or 1
    ev = load_config(EvaluateConfig, CONFIGS / "evaluate.yaml", [f"datasets=[{','.join(datasets)}]"])
    ev = dataclasses.replace(
        ev,
        model=cfg.model,
        prompt=cfg.prompt,
        judge=cfg.judge,
        ray=cfg.ray,
        fresh=cfg.fresh,
        stages=StagesConfig(separate=False, stage1=PoolConfig(cpus=1, batch_size=cfg.eval.batch_size)),
    )
    sft, grpo = load_config(TrainConfig, CONFIGS / "sft.yaml"), load_config(TrainConfig, CONFIGS / "grpo.yaml")
    common = dict(
        model=ModelConfig(name=cfg.model.name),
        prompt=cfg.prompt,
        ray=cfg.ray,
        seed=TRAIN_SEED,
        checkpoint_every=cfg.checkpoint_every,
        eval_every=0,
    )
    sft = dataclasses.replace(
        sft,
        **common,
        data=TrainDataConfig(format="synthetic", path=str(cfg.warmstart.steps * 4 + 4), held_out=0),
        max_steps=cfg.warmstart.steps or None,
        optim=dataclasses.replace(sft.optim, lr=cfg.warmstart.lr),
        trainer=dataclasses.replace(sft.trainer, prompts_per_worker=4, micro_batch=4, cpus_per_worker=1, threads=cpus),
        output=str(out / "warmstart"),
    )
    g = cfg.grpo
    grpo = dataclasses.replace(
        grpo,
        **common,
        data=TrainDataConfig(format="mix", path=str(out / "build_data" / "mix.parquet"), held_out=0),
        max_steps=g.steps,
        optim=dataclasses.replace(grpo.optim, lr=g.lr),
        grpo=narrow(g, GRPOConfig),
        trainer=dataclasses.replace(
            grpo.trainer, prompts_per_worker=g.prompts, micro_batch=g.n * g.prompts, cpus_per_worker=1, threads=cpus
        ),
        output=str(out / "grpo"),
    )
    bd = load_config(BuildDataConfig, CONFIGS / "build_data.yaml")
    bd = dataclasses.replace(
        bd,
        model=cfg.model,
        prompt=cfg.prompt,
        data=DataConfig(format="synthetic", path=str(cfg.build.pairs)),
        judge=dataclasses.replace(narrow(cfg.build, JudgeConfig), seed=BUILD_SEED),
        ray=cfg.ray,
        pool=dataclasses.replace(bd.pool, threads=cpus),
        fresh=cfg.fresh,
        output=str(out / "build_data"),
    )
    return ev, sft, bd, grpo
