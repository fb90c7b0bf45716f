"""What every judge method provides (reflectrm.methods): a prompt, a strict parser, a canonical output and a
verifiable reward, over the same pairs and verdicts (1: response 1 is better, 2: response 2 is better)."""

from __future__ import annotations

from typing import ClassVar

from reflectrm.config import Mode, PromptConfig
from reflectrm.records import Message, ParsedOutput, PreferencePair
from reflectrm.rewards import Graded, RewardConfig


class MethodSpec:
    """What the jobs, the CLI and the service check of any method before a model loads: its name, its template
    version and its modes. Pairwise formats (JudgeMethod) add the prompt, the parser and the reward."""

    name: ClassVar[str]
    template_version: ClassVar[str]  # written into every data set and result; bump it with any template change
    modes: ClassVar[tuple[Mode, ...]]  # the inference modes it supports
    pointwise: ClassVar[bool] = False  # scores one response alone (Critic-RM), no pair prompt

    def check_mode(self, mode: str) -> None:
        if mode not in self.modes:
            raise ValueError(
                f"judge.mode={mode!r} is not available with judge.method={self.name}: use one of {', '.join(self.modes)}"
            )

    def __repr__(self) -> str:
        return f"<judge method {self.name} ({self.template_version})>"


class JudgeMethod(MethodSpec):
    """A pairwise judge format. Subclasses set the class attributes and implement the four methods;
    `grade` defaults to the strict parser's verdict against the label (ReflectRM's reward)."""

    reflection: ClassVar[bool] = False  # has a stage-2 (analysis preference) task

    def prompt(self, pair: PreferencePair, cfg: PromptConfig = PromptConfig()) -> tuple[Message, ...]:
        """The messages that ask which response of `pair` is better (responses first, instructions after)."""
        raise NotImplementedError

    def parse(self, text: str) -> ParsedOutput:
        """The strict parser: a verdict, or `ParsedOutput(None, ..., error)`; never a default verdict."""
        raise NotImplementedError

    def render(self, analysis: str, verdict: int) -> str:
        """The canonical output with this analysis and verdict (an SFT target; the fake engine's scripts)."""
        raise NotImplementedError

    def grade(self, text: str, label: int, cfg: RewardConfig = RewardConfig()) -> Graded:
        """The verifiable reward of one rollout against the gold label."""
        verdict = self.parse(text).verdict
        if verdict is None:
            return Graded(cfg.invalid, False, False)
        correct = verdict == label
        return Graded((cfg.correct if correct else cfg.wrong) + cfg.format_bonus, True, correct)
