"""The judge methods as plug-ins (reflectrm.methods): golden prompts, strict parsers on golden outputs, RM-R1's
reward, and `judge.method` / `method` through inference, training data, the jobs' configs and the service's args.

If you change RM-R1's template on purpose: bump rm_r1.TEMPLATE_VERSION and regenerate the golden file with
`python -m tests.unit.test_methods`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reflectrm.config import ConfigError, JudgeConfig, PromptConfig, load_config
from reflectrm.data.files import write_rows
from reflectrm.data.items import Critique, TrainingItem, write_items
from reflectrm.data.sources import DataConfig
from reflectrm.engines.fake import FakeEngine
from reflectrm.evaluation import check_evaluation
from reflectrm.inference import Judge
from reflectrm.methods import METHODS, method_for
from reflectrm.methods.rm_r1 import TEMPLATE_VERSION
from reflectrm.prompts import render_judgment
from reflectrm.records import Message, PreferencePair
from reflectrm.rewards import Graded, RewardConfig
from reflectrm.training.data import TrainingDataError, load_items
from reflectrm.training.objectives import grade

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
PAIR = PreferencePair("g1", (Message("user", "Name a prime number under 10."),), "7 is prime.", "9 is prime.", 1)
MULTI = dataclasses.replace(
    PAIR, context=(Message("user", "Name a prime."), Message("assistant", "Small?"), Message("user", "Under 10."))
)
R1 = method_for("rm_r1")
TRACE = "<type>Reasoning</type>\n<solution>7</solution>\n<eval><quote_A>7 is prime.</quote_A> is right.</eval>\n"


def renders() -> dict[str, str]:
    def show(messages):
        return "\n".join(f"<<{m.role}>>\n{m.content}" for m in messages)

    return {"rm_r1_prompt.txt": show(R1.prompt(PAIR)), "rm_r1_prompt_multi.txt": show(R1.prompt(MULTI))}


def test_rm_r1_golden_renders():
    for name, text in renders().items():
        assert (GOLDEN / name).read_text() == text, f"{name} changed: bump TEMPLATE_VERSION ({TEMPLATE_VERSION})"


def test_rm_r1_prompt_puts_the_responses_before_the_instructions():
    system, user = R1.prompt(PAIR)
    assert system.role == "system" and user.role == "user"
    assert user.content.index("7 is prime.") < user.content.index("9 is prime.") < user.content.index("## Instructions")
    assert user.content.startswith("[Client Question]\nName a prime number under 10.")
    assert R1.prompt(MULTI)[1].content.startswith("[Client Conversation]\n[User]\nName a prime.")
    assert R1.prompt(PAIR, PromptConfig(suffix="/no_think"))[1].content.endswith("\n/no_think")


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        (TRACE + "<answer>[[A]]</answer>", 1),
        (TRACE + "<answer>[[B]]</answer>\n", 2),
        (TRACE + "<answer> [[B]] </answer>", 2),
        ("<think></think>" + TRACE + "<answer>[[A]]</answer>", 1),
    ],
)
def test_rm_r1_parser_reads_valid_outputs(text, verdict):
    parsed = R1.parse(text)
    assert (parsed.verdict, parsed.error) == (verdict, None)
    assert parsed.analysis and parsed.analysis.startswith(("<type>", "<think>"))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (TRACE, "<answer> appears 0 times"),
        (TRACE + "<answer>[[A]]</answer><answer>[[B]]</answer>", "<answer> appears 2 times"),
        (TRACE + "</answer>[[A]]<answer>", "</answer> before <answer>"),
        (TRACE + "<answer>[[A]]</answer> so A wins", "text after </answer>"),
        (TRACE + "B looked right: [[B]]. <answer>[[A]]</answer>", "both [[A]] and [[B]] appear"),
        ("<answer>[[A]]</answer>", "nothing before <answer>"),
        (TRACE + "<answer>A</answer>", "unrecognised answer 'A'"),
        (TRACE + "<answer>[[C]]</answer>", "unrecognised answer '[[C]]'"),
    ],
)
def test_rm_r1_parser_names_what_is_wrong(text, error):
    parsed = R1.parse(text)
    assert parsed.verdict is None and parsed.error.startswith(error)


def test_rm_r1_reward_reads_the_tail_as_rm_r1_does():
    right, wrong = TRACE + "<answer>[[A]]</answer>", TRACE + "<answer>[[B]]</answer>"
    assert R1.grade(right, 1) == Graded(1.0, True, True)
    assert R1.grade(wrong, 1) == Graded(-1.0, True, False)
    assert R1.grade(right, 2) == Graded(-1.0, True, False)
    assert R1.grade(TRACE, 1) == Graded(-1.0, False, False)  # no answer at all
    both_in_tail = TRACE + "<answer>[[A]] or [[B]]</answer>"
    assert R1.grade(both_in_tail, 1) == Graded(-1.0, False, False)  # the correct tag AND the other: -1
    # The tag only in the tail counts (RM-R1 reads the last 80 characters), even where the strict parser
    # refuses the output: [[B]] early in the eval is outside the tail.
    early = TRACE + "[[B]] was my first thought." + " x" * 60 + " <answer>[[A]]</answer>"
    assert R1.grade(early, 1) == Graded(1.0, False, True)
    cfg = RewardConfig(correct=2.0, wrong=0.0, invalid=-0.5, format_bonus=0.1)
    assert R1.grade(right, 1, cfg) == Graded(2.1, True, True)
    assert R1.grade(wrong, 1, cfg) == Graded(0.0, True, False)
    assert R1.grade("nonsense", 1, cfg) == Graded(-0.5, False, False)


def test_each_method_renders_what_it_parses_and_grades_it():
    for method in METHODS.values():
        for label in (1, 2):
            text = method.render("Response 1 names a prime; 9 = 3 x 3.", label)
            assert method.parse(text).verdict == label
            assert method.grade(text, label).correct and not method.grade(text, 3 - label).correct
    reflect = method_for("reflectrm")
    assert reflect.render("ok", 2) == render_judgment("ok", 2)
    assert grade(render_judgment("ok", 1), "response", 1) == grade(
        render_judgment("ok", 1), "response", 1, method=reflect
    )
    assert grade(R1.render("ok", 1), "response", 1, method=R1).correct
    assert not grade(R1.render("ok", 1), "response", 1).valid  # ReflectRM's parser does not read RM-R1's format


def test_unknown_method_and_unsupported_modes_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="valid options are reflectrm, rm_r1"):
        load_config(JudgeConfig, None, ["method=critic"])
    with pytest.raises(ConfigError, match="use one of reflectrm, rm_r1"):
        method_for("critic")
    with pytest.raises(ValueError, match="mode='reflect' is not available with judge.method=rm_r1: use one of greedy"):
        R1.check_mode("reflect")
    with pytest.raises(ValueError, match=r"reflect, random_anchor not available .* set methods=\[greedy\]"):
        check_evaluation(["greedy", "reflect", "random_anchor"], ["llmbar:x"], None, "rm_r1")
    check_evaluation(["greedy", "majority"], ["llmbar:x"], None, "rm_r1")


def test_inference_runs_rm_r1_greedy_and_majority_and_refuses_reflect():
    def script(request, i):
        assert "[The Start of Chatbot A's Response]" in request.messages[1].content
        return TRACE + ("<answer>[[A]]</answer>" if i % 3 else "<answer>[[B]]</answer>")

    judge = Judge(FakeEngine(script), JudgeConfig(method="rm_r1", mode="majority", n=6, temperature=1.0))
    result = judge.judge_one(PAIR)
    assert (result.preferred, result.score, result.valid_rate) == (1, 4 / 6, 1.0)
    assert judge.judge_one(PAIR, mode="greedy").preferred == 2  # sample 0
    with pytest.raises(ValueError, match="not available with judge.method=rm_r1"):
        judge.judge_one(PAIR, mode="reflect")


def test_training_items_take_the_methods_format(tmp_path):
    train, _, _ = load_items("sft", DataConfig(format="synthetic", path="20", held_out=0), seed=0, method=R1)
    assert train and all(r.task == "response" for r in train)  # RM-R1 has no reflection task
    assert all(R1.parse(r.target).verdict == r.label for r in train)
    assert "[Client Question]" in train[0].messages(PromptConfig(), R1)[1].content
    mix = tmp_path / "mix.parquet"
    analysis = Critique("ok", 1)
    write_items([TrainingItem.preference(PAIR), TrainingItem.reflection(PAIR, analysis, Critique("ok", 2), 1)], mix)
    with pytest.raises(TrainingDataError, match="reflection items, which method=rm_r1 has no task for"):
        load_items("grpo", DataConfig(format="mix", path=str(mix), held_out=0), seed=0, method=R1)
    rft, _, _ = load_items("rft", DataConfig(format="mix", path=str(mix), held_out=0), seed=0, method=R1)
    assert {r.task for r in rft} == {"response"}  # RFT keeps the preference items of the same mix
    with pytest.raises(ValueError, match="a reflection item, which judge method rm_r1 has no task for"):
        TrainingItem.reflection(PAIR, analysis, analysis, 1).messages(PromptConfig(), R1)


def test_the_jobs_and_the_service_check_the_method_before_a_model_loads():
    from jobs.ray_building import BuildDataConfig
    from jobs.ray_scoring import EvaluateConfig, ScoreConfig
    from serve.schemas import ServeArgs

    with pytest.raises(ValueError, match="not available with judge.method=rm_r1"):
        ScoreConfig(judge=JudgeConfig(method="rm_r1"))  # the default mode is reflect
    ScoreConfig(judge=JudgeConfig(method="rm_r1", mode="majority"))
    with pytest.raises(ValueError, match="set methods="):
        EvaluateConfig(judge=JudgeConfig(method="rm_r1"), datasets=("llmbar:x",))
    with pytest.raises(ConfigError, match="build_data builds ReflectRM's 4:1 mix"):
        BuildDataConfig(judge=JudgeConfig(method="rm_r1", mode="majority"))
    with pytest.raises(ValueError, match="not available with judge.method=rm_r1"):
        ServeArgs.parse({"judge": {"method": "rm_r1", "mode": "greedy"}, "reward_mode": "reflect"})
    args = ServeArgs.parse({"judge": {"method": "rm_r1", "mode": "greedy"}})
    assert args.reward_mode is None and args.judge.method == "rm_r1"


def test_rm_r1_rows_are_read_and_bad_ones_named(tmp_path):
    from reflectrm.data.files import BadRowError
    from reflectrm.data.formats import load_pairs

    prompt = (
        "[Client Question]\nName a prime.\n\n[The Start of Chatbot A's Response]\n9\n[The End of Chatbot A's "
        "Response]\n\n[The Start of Chatbot B's Response]\n7\n[The End of Chatbot B's Response]"
    )
    good = {
        "context_messages": [{"role": "system", "content": "s"}, {"role": "user", "content": prompt}],
        "winner": "model_b",
    }
    traced = {
        **good,
        "context_messages": [*good["context_messages"], {"role": "assistant", "content": "t <answer>[[B]]</answer>"}],
    }
    bad = [
        ({**good, "winner": "tie"}, "winner"),
        ({**good, "context_messages": "text"}, "context_messages"),
        ({**good, "context_messages": [{"role": "user", "content": "Which is better?"}]}, "context_messages"),
    ]
    path = tmp_path / "rows.jsonl"
    write_rows([good, traced], path)
    pairs, _ = load_pairs("rm-r1", path)
    assert [(p.query, p.response_1, p.response_2, p.label) for p in pairs] == [("Name a prime.", "9", "7", 2)] * 2
    assert "target" not in pairs[0].metadata and pairs[1].metadata["target"].endswith("[[B]]</answer>")
    for row, field in bad:
        write_rows([row], path)
        with pytest.raises(BadRowError, match=field):
            load_pairs("rm-r1", path)


def test_a_judge_prompted_with_a_method_it_did_not_learn_is_named(tmp_path):
    import json

    from reflectrm.evaluation import prompting_only, trained_method

    (tmp_path / "training.json").write_text(json.dumps({"recipe": "grpo", "method": "reflectrm"}))
    assert trained_method(str(tmp_path)) == "reflectrm" and trained_method("tiny-random") is None
    assert prompting_only({"trained_for": "reflectrm", "prompt_template": R1.template_version})
    assert not prompting_only({"trained_for": "rm_r1", "prompt_template": R1.template_version})
    assert not prompting_only({"trained_for": None, "prompt_template": R1.template_version})


if __name__ == "__main__":
    for name, text in renders().items():
        (GOLDEN / name).write_text(text)
        print("wrote", GOLDEN / name)
