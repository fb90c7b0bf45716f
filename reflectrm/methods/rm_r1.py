"""RM-R1's judge format (arXiv 2505.02387; method.md §6): a "chain of rubrics" ending in <answer>[[A]]</answer>.

The output: `<type>Reasoning</type>` (then the judge's own `<solution>`) or `<type>Chat</type>` (then a weighted
`<rubric>` with a `<justify>`), a comparison in `<eval>` (with `<quote_A>`/`<summary_A>` and the same for B), and
last `<answer>[[A]]</answer>` or `<answer>[[B]]</answer>`. Chatbot A is response 1, Chatbot B response 2.

The text is ours, in the structure of the paper's repository; the responses come before the instructions, so
the prompts of one pair share a prefix in an engine's cache. Change any text here and bump TEMPLATE_VERSION.

Two rules, as in RM-R1's own code:
- the parser (evaluation) is strict: exactly one answer block, last, holding [[A]] or [[B]]; an output that
  holds both [[A]] and [[B]] anywhere is invalid (their evaluation counts it wrong);
- the reward (training) reads the last TAIL characters only: +1 when they hold the correct tag and not the
  other, else -1 (RewardConfig's correct / wrong / invalid; with its defaults exactly RM-R1's +1/-1).
"""

from __future__ import annotations

from reflectrm.config import Mode, PromptConfig
from reflectrm.methods.base import JudgeMethod
from reflectrm.prompts import render_conversation
from reflectrm.records import Message, ParsedOutput, PreferencePair
from reflectrm.rewards import Graded, RewardConfig

TEMPLATE_VERSION = "rm-r1-prompts-v1"
TAGS = {1: "[[A]]", 2: "[[B]]"}
TAIL = 80  # RM-R1's reward reads this many characters at the end of the output

SYSTEM = (
    "You are an impartial judge. You read a client's question and the responses of two AI chatbots, you reason "
    "about them with a rubric or your own solution, and you decide which response is better."
)

_INSTRUCTIONS = """## Instructions
First classify the task inside <type></type> as Reasoning (math, code, knowledge questions, multi-step inference or logical deduction) or Chat (open conversation, rewriting, safety questions, general help).
If it is Reasoning: solve the client's question yourself inside <solution></solution>, then compare both responses with your solution.
If it is Chat: write a rubric for this question inside <rubric></rubric>, with weighted items and a <justify></justify> of why they fit, then compare both responses against it.
Write the comparison inside <eval></eval>. Quote a chatbot verbatim inside <quote_A></quote_A> or <quote_B></quote_B>, and summarise it inside <summary_A></summary_A> or <summary_B></summary_B>.
Judge only the content: do not let the order of the responses, their length or the chatbots' names sway you.
End with your verdict, exactly <answer>[[A]]</answer> if Chatbot A's response is better, or <answer>[[B]]</answer> if Chatbot B's response is better."""


class RMR1(JudgeMethod):
    name = "rm_r1"
    template_version = TEMPLATE_VERSION
    modes: tuple[Mode, ...] = ("greedy", "majority")

    def prompt(self, pair: PreferencePair, cfg: PromptConfig = PromptConfig()) -> tuple[Message, ...]:
        head = "[Client Question]" if len(pair.context) == 1 else "[Client Conversation]"
        user = (
            f"{head}\n{render_conversation(pair.context)}\n\n"
            f"[The Start of Chatbot A's Response]\n{pair.response_1}\n[The End of Chatbot A's Response]\n\n"
            f"[The Start of Chatbot B's Response]\n{pair.response_2}\n[The End of Chatbot B's Response]\n\n"
            + _INSTRUCTIONS
        )
        if cfg.suffix:
            user = f"{user}\n{cfg.suffix}"
        return (Message("system", SYSTEM), Message("user", user))

    def parse(self, text: str) -> ParsedOutput:
        for tag in ("<answer>", "</answer>"):
            if (count := text.count(tag)) != 1:
                return ParsedOutput(
                    None, None, f"{tag} appears {count} times: exactly one answer block ends the output"
                )
        start, end = text.index("<answer>"), text.index("</answer>")
        if end < start:
            return ParsedOutput(None, None, "</answer> before <answer>")
        analysis = text[:start].strip()
        if text[end + len("</answer>") :].strip():
            return ParsedOutput(None, analysis or None, "text after </answer>: the answer must come last")
        if TAGS[1] in text and TAGS[2] in text:
            return ParsedOutput(None, analysis or None, "both [[A]] and [[B]] appear: the verdict is ambiguous")
        if not analysis:
            return ParsedOutput(None, None, "nothing before <answer>: the rubric or solution and the eval come first")
        answer = text[start + len("<answer>") : end].strip()
        for verdict, tag in TAGS.items():
            if answer == tag:
                return ParsedOutput(verdict, analysis, None)  # type: ignore[arg-type]
        return ParsedOutput(None, analysis, f"unrecognised answer {answer[:40]!r}: use [[A]] or [[B]]")

    def render(self, analysis: str, verdict: int) -> str:
        return f"<type>Chat</type>\n<eval>\n{analysis.strip()}\n</eval>\n<answer>{TAGS[verdict]}</answer>"

    def grade(self, text: str, label: int, cfg: RewardConfig = RewardConfig()) -> Graded:
        """RM-R1's reward: the correct tag, and not the other, in the last TAIL characters."""
        tail, valid = text[-TAIL:], self.parse(text).valid
        if TAGS[label] in tail and TAGS[3 - label] not in tail:
            return Graded(cfg.correct + (cfg.format_bonus if valid else 0.0), valid, True)
        return Graded(cfg.wrong if valid else cfg.invalid, valid, False)
