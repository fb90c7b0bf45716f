"""A few hand-written, real-looking pairs for the demo and smoke runs (written for this project).

Each has a clear gold answer a careful reader agrees with; they cover instruction following,
arithmetic, factual accuracy and format, with the better response in both positions.
"""

from __future__ import annotations

from reflectrm.records import Message, PreferencePair


def _pair(id: str, prompt: str, r1: str, r2: str, label: int, subset: str) -> PreferencePair:
    return PreferencePair(id, (Message("user", prompt),), r1, r2, label, "examples", subset)  # type: ignore[arg-type]


EXAMPLES: tuple[PreferencePair, ...] = (
    _pair(
        "ex-arith",
        "A shop sells pencils at 3 for $1. How much do 12 pencils cost? Answer with the amount only.",
        "$4",
        "12 pencils cost $3, because each pencil costs about 25 cents.",
        1,
        "arithmetic",
    ),
    _pair(
        "ex-capital",
        "What is the capital of Australia?",
        "The capital of Australia is Sydney, its largest and best-known city.",
        "The capital of Australia is Canberra. Sydney is the largest city, but Canberra was chosen as a compromise between Sydney and Melbourne.",
        2,
        "factual",
    ),
    _pair(
        "ex-bullets",
        "List exactly three benefits of regular exercise as a bulleted list, nothing else.",
        "- Stronger heart and lungs\n- Better mood and sleep\n- Healthier body weight",
        "Exercise is great! It helps your heart, improves your mood, helps you sleep, keeps your weight in check and also makes your bones stronger.",
        1,
        "format",
    ),
    _pair(
        "ex-lowercase",
        "Reply in lowercase letters only: what colour is a clear daytime sky?",
        "The Sky Is Blue On A Clear Day.",
        "it is blue.",
        2,
        "case",
    ),
)
