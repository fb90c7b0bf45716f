"""The judge methods as plug-ins: each owns its prompt templates, its strict parser, its verdict and its
verifiable reward, so inference, training, scoring and the service run any of them through one code path.

    method_for("reflectrm")   ReflectRM (method.md §1-4): <Analysis>...</Analysis><Result>...</Result>;
                              greedy, majority and two-stage reflect
    method_for("rm_r1")       RM-R1 (method.md §6): a chain of rubrics ending in <answer>[[A]]</answer>;
                              greedy and majority

    spec_for("critic_rm")     Critic-RM (method.md §6): pointwise critiques read by a reward head; no pair prompt
                              (its format methods/critic_rm.py, its model and loss reflectrm/training/critic.py,
                              its judge reflectrm/critic_judge.py); greedy (m=1) and majority (mean of judge.n)

`judge.method` (JudgeConfig.method) picks one. A method that a model was not trained for still runs
(prompting only); the outputs record the method and its template version.
"""

from __future__ import annotations

from reflectrm.config import ConfigError
from reflectrm.methods.base import JudgeMethod, MethodSpec
from reflectrm.methods.critic_rm import CriticRM
from reflectrm.methods.reflect import ReflectRM
from reflectrm.methods.rm_r1 import RMR1

METHODS: dict[str, JudgeMethod] = {m.name: m for m in (ReflectRM(), RMR1())}  # the pairwise formats
SPECS: dict[str, MethodSpec] = {**METHODS, "critic_rm": CriticRM()}  # every method a judge can run


def spec_for(name: str) -> MethodSpec:
    """Any method's name, template and modes (what a config checks before a model loads); a ConfigError naming
    the known ones otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(f"judge.method={name!r} is not a judge method: use one of {', '.join(SPECS)}") from None


def method_for(name: str) -> JudgeMethod:
    """The pairwise format called `name` (its prompt, parser and reward); a ConfigError naming the known ones
    otherwise. Critic-RM has none: it is judged by reflectrm.critic_judge and trained with recipe=critic_rm."""
    if spec_for(name).pointwise:
        raise ConfigError(
            f"judge.method={name} is pointwise and reads a reward head: it has no pair prompt, so GRPO, RFT, "
            "build_data and the reflection task do not take it (train it with recipe=critic_rm; judge, score, "
            "evaluate and serve it with judge.method=critic_rm)"
        )
    return METHODS[name]


__all__ = ["METHODS", "SPECS", "JudgeMethod", "MethodSpec", "method_for", "spec_for"]
