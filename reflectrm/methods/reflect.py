"""ReflectRM's judge format (method.md §1): THE prompt templates and THE strict parser, as a method."""

from __future__ import annotations

from reflectrm import parsing, prompts
from reflectrm.config import Mode, PromptConfig
from reflectrm.methods.base import JudgeMethod
from reflectrm.records import Message, ParsedOutput, PreferencePair


class ReflectRM(JudgeMethod):
    name = "reflectrm"
    template_version = prompts.TEMPLATE_VERSION
    modes: tuple[Mode, ...] = ("greedy", "majority", "reflect")
    reflection = True

    def prompt(self, pair: PreferencePair, cfg: PromptConfig = PromptConfig()) -> tuple[Message, ...]:
        return prompts.response_prompt(pair, cfg)

    def parse(self, text: str) -> ParsedOutput:
        return parsing.parse_output(text, "response")

    def render(self, analysis: str, verdict: int) -> str:
        return prompts.render_judgment(analysis, verdict, "response")
