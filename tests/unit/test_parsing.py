"""The strict parser: valid outputs parse, everything else is an explicit invalid value."""

from __future__ import annotations

import pytest

from reflectrm.parsing import parse_output
from reflectrm.prompts import render_judgment


@pytest.mark.parametrize("verdict", [1, 2])
@pytest.mark.parametrize("task", ["response", "critique"])
def test_canonical_outputs_parse(verdict, task):
    parsed = parse_output(render_judgment("  Because X.  ", verdict, task), task)
    assert parsed.verdict == verdict and parsed.analysis == "Because X." and parsed.error is None


@pytest.mark.parametrize(
    "text",
    [
        "<Analysis>ok</Analysis>\n<Result>Response 2 is better than Response 1.</Result>\n",
        "<think>\n\n</think>\n<Analysis>ok</Analysis><Result> Response 2 is better  than Response 1 </Result>",
        "Sure.\n<Analysis>\nmulti\nline\n</Analysis>\n\n<Result>Response 2 is better than Response 1</Result>",
    ],
)
def test_tolerated_variations(text):
    assert parse_output(text).verdict == 2


@pytest.mark.parametrize(
    "text, error",
    [
        ("Response 1 is better than Response 2", "missing <Analysis>"),
        ("<Analysis>x</Analysis>", "missing <Result>"),
        ("<Analysis>x</Analysis><Result>Response 1 is better than Response 2", "missing </Result>"),
        (
            "<Analysis>x</Analysis><Analysis>y</Analysis><Result>Response 1 is better than Response 2</Result>",
            "appears 2 times",
        ),
        ("<Result>Response 1 is better than Response 2</Result><Analysis>x</Analysis>", "out of order"),
        ("<Analysis>  </Analysis><Result>Response 1 is better than Response 2</Result>", "empty analysis"),
        ("<Analysis>x</Analysis> so <Result>Response 1 is better than Response 2</Result>", "between"),
        ("<Analysis>x</Analysis><Result>Response 1 is better than Response 2</Result> trailing", "after </Result>"),
        ("<Analysis>x</Analysis><Result>Response 1</Result>", "unrecognised verdict"),
        ("<Analysis>x</Analysis><Result>Both are equal</Result>", "unrecognised verdict"),
        ("<Analysis>x</Analysis><Result>Response 3 is better than Response 1</Result>", "unrecognised verdict"),
        ("", "missing <Analysis>"),
    ],
)
def test_broken_outputs_are_invalid_with_a_reason(text, error):
    parsed = parse_output(text)
    assert parsed.verdict is None and not parsed.valid
    assert error in parsed.error


def test_task_nouns_are_not_interchangeable():
    assert parse_output(render_judgment("x", 1, "critique"), "response").verdict is None
    assert parse_output(render_judgment("x", 1, "response"), "critique").verdict is None
