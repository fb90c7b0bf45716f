"""Golden renders of the two prompt templates, and the properties the engines rely on.

If you change a template on purpose: bump prompts.TEMPLATE_VERSION and regenerate the golden
files with `python -m tests.unit.test_prompts`.
"""

from __future__ import annotations

from pathlib import Path

from reflectrm.config import PromptConfig
from reflectrm.prompts import TEMPLATE_VERSION, reflection_prompt, response_prompt
from reflectrm.records import Message, PreferencePair

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
PAIR = PreferencePair(
    "g1",
    (
        Message("user", "Name a prime number."),
        Message("assistant", "Do you want a small one?"),
        Message("user", "Yes, under 10."),
    ),
    "7 is a prime number under 10.",
    "9 is a prime number under 10.",
    1,
)
CRITIQUES = (("Response 1 is right: 7 is prime.", 1), ("Response 2 is right.", 2))


def renders() -> dict[str, str]:
    def show(messages):
        return "\n".join(f"<<{m.role}>>\n{m.content}" for m in messages)

    return {
        "response_prompt.txt": show(response_prompt(PAIR)),
        "reflection_prompt.txt": show(reflection_prompt(PAIR, *CRITIQUES)),
        "response_prompt_suffix.txt": show(response_prompt(PAIR, PromptConfig(suffix="/no_think"))),
    }


def test_golden_renders():
    for name, text in renders().items():
        assert (GOLDEN / name).read_text() == text, (
            f"{name} changed: bump TEMPLATE_VERSION ({TEMPLATE_VERSION}) and regenerate"
        )


def test_reflection_prompt_extends_the_judge_prompt_prefix():
    judge_user = response_prompt(PAIR)[1].content
    reflect_user = reflection_prompt(PAIR, *CRITIQUES)[1].content
    shared = judge_user[: judge_user.index("## Task")]
    assert reflect_user.startswith(shared) and len(shared) > 100
    assert response_prompt(PAIR)[0] == reflection_prompt(PAIR, *CRITIQUES)[0]  # same system message


def test_suffix_goes_last_and_only_when_set():
    assert response_prompt(PAIR, PromptConfig(suffix="/no_think"))[1].content.endswith("\n/no_think")
    assert "/no_think" not in response_prompt(PAIR)[1].content


def test_swapped_pair_swaps_responses_and_label():
    s = PAIR.swapped()
    assert (s.response_1, s.response_2, s.label) == (PAIR.response_2, PAIR.response_1, 2)


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for name, text in renders().items():
        (GOLDEN / name).write_text(text)
        print("wrote", GOLDEN / name)
