"""The judge methods as plug-ins: each owns its prompt templates, its strict parser, its verdict and its
verifiable reward, so inference, training, scoring and the service run any of them through one code path.

    method_for("reflectrm")   ReflectRM (method.md §1-4): <Analysis>...</Analysis><Result>...</Result>;
                              greedy, majority and two-stage reflect
    method_for("rm_r1")       RM-R1 (method.md §6): a chain of rubrics ending in <answer>[[A]]</answer>;
                              greedy and majority

Critic-RM (pointwise critiques read by a reward head) is no pairwise format: its format is methods/critic_rm.py,
its model and loss reflectrm/training/critic.py, its judge reflectrm/critic_judge.py.

`judge.method` (JudgeConfig.method) picks one. A method that a model was not trained for still runs
(prompting only); the outputs record the method and its template version.
"""

from __future__ import annotations

from reflectrm.config import ConfigError
from reflectrm.methods.base import JudgeMethod
from reflectrm.methods.reflect import ReflectRM
from reflectrm.methods.rm_r1 import RMR1

METHODS: dict[str, JudgeMethod] = {m.name: m for m in (ReflectRM(), RMR1())}


def method_for(name: str) -> JudgeMethod:
    """The method called `name`; a ConfigError naming the known ones otherwise."""
    if name == "critic_rm":
        raise ConfigError(
            "judge.method=critic_rm is pointwise and reads a reward head: `reflectrm judge` and "
            "reflectrm.critic_judge.CriticJudge judge with it; the scoring jobs, the evaluation, the service and "
            "GRPO do not host it yet (train it with recipe=critic_rm)"
        )
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"judge.method={name!r} is not a judge method: use one of {', '.join(METHODS)}") from None


__all__ = ["METHODS", "JudgeMethod", "method_for"]
