"""Critic-RM's pieces with no model: the critique parser on golden outputs, the generate-and-filter rules,
the Bradley-Terry loss and the lambda schedule on constructed cases, and the batch the head reads."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from reflectrm.config import JudgeConfig
from reflectrm.data.critiques import CriticFilter, filter_pair, select_items
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.methods.critic_rm import critique_prompt, parse_critique, render_critique
from reflectrm.records import Message, PreferencePair
from reflectrm.training.critic import bradley_terry_loss, critic_lambda, pack

PAIR = PreferencePair("p", (Message("user", "Name a prime under 10."),), "7", "9", 1)


def crit(score, text="ok"):
    return render_critique(text, score)


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("<Critique>\nRight.\n</Critique>\n<Score>7</Score>", 7),
        ("<Critique>x</Critique><Score> 10 </Score>\n", 10),
        ("<think></think><Critique>x</Critique>\n<Score>1</Score>", 1),
    ],
)
def test_critique_parser_reads_valid_outputs(text, score):
    assert parse_critique(text).score == score and parse_critique(text).error is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<Critique>x</Critique>", "<Score> appears 0 times"),
        ("<Critique>x</Critique><Score>7</Score><Score>8</Score>", "<Score> appears 2 times"),
        ("<Score>7</Score><Critique>x</Critique>", "blocks out of order"),
        ("<Critique> </Critique><Score>7</Score>", "empty critique"),
        ("<Critique>x</Critique> so <Score>7</Score>", "text between"),
        ("<Critique>x</Critique><Score>7</Score> done", "text after </Score>"),
        ("<Critique>x</Critique><Score>0</Score>", "the score must be one integer from 1 to 10"),
        ("<Critique>x</Critique><Score>11</Score>", "the score must be one integer from 1 to 10"),
        ("<Critique>x</Critique><Score>7.5</Score>", "the score must be one integer from 1 to 10"),
    ],
)
def test_critique_parser_names_what_is_wrong(text, error):
    parsed = parse_critique(text)
    assert parsed.score is None and parsed.error.startswith(error)


def test_critique_prompt_shows_one_response_before_the_task():
    system, user = critique_prompt(PAIR.context, "7")
    assert system.role == "system" and user.content.index("## Response\n7\n") < user.content.index("## Task")
    assert "9" not in user.content  # pointwise: the other response is not shown
    with pytest.raises(ValueError, match="score must be an integer from 1 to 10"):
        render_critique("x", 0)


def test_filter_keeps_agreeing_instances_and_picks_the_widest_margin():
    cfg = CriticFilter(k=3)
    kept = filter_pair(PAIR, [crit(6, "a"), crit(9, "b"), "broken"], [crit(5, "c"), crit(2, "d"), crit(2, "e")], cfg)
    assert kept.reason == "kept" and kept.margin == 7.0
    c1, c2 = kept.item.critiques
    assert (c1.analysis, c1.verdict, c2.analysis, c2.verdict) == (
        "b",
        9,
        "d",
        2,
    )  # best of chosen, worst (first) of rejected
    assert kept.item.task == "critic" and kept.item.label == 1
    # label 2: response 2 is the chosen one; its critiques stay with it
    swapped = filter_pair(PAIR.swapped(), [crit(5, "c"), crit(2, "d")], [crit(6, "a"), crit(9, "b")], cfg)
    assert swapped.item.critiques[1].analysis == "b" and swapped.item.critiques[0].analysis == "d"
    first = filter_pair(PAIR, [crit(6, "a"), crit(9, "b")], [crit(5, "c"), crit(2, "d")], CriticFilter(select="first"))
    assert (first.item.critiques[0].analysis, first.item.critiques[1].analysis, first.margin) == ("a", "c", 1.0)


def test_filter_drops_contradicting_and_unreadable_instances():
    cfg = CriticFilter()
    assert filter_pair(PAIR, [crit(3)], [crit(8)], cfg).reason == "scores contradict the label"
    assert filter_pair(PAIR, [crit(5)], [crit(5)], cfg).reason == "scores contradict the label"  # a tie is no agreement
    assert filter_pair(PAIR, [crit(6)], [crit(5)], CriticFilter(min_margin=1.0)).reason == "scores contradict the label"
    assert filter_pair(PAIR, ["no score"], [crit(5)], cfg).reason == "no valid critique"
    assert filter_pair(PAIR, [crit(9), crit(1)], [crit(4)], cfg).reason == "kept"  # means 5 > 4


def test_select_ranks_by_margin_and_counts_every_outcome():
    pairs = [PreferencePair(f"p{i}", PAIR.context, "7", "9", 1) for i in range(4)]
    outcomes = [
        filter_pair(pairs[0], [crit(6)], [crit(5)], CriticFilter()),
        filter_pair(pairs[1], [crit(9)], [crit(1)], CriticFilter()),
        filter_pair(pairs[2], [crit(2)], [crit(8)], CriticFilter()),
        filter_pair(pairs[3], ["x"], [crit(8)], CriticFilter()),
    ]
    items, counts = select_items(outcomes, CriticFilter(keep=0.5))
    assert [i.pair.id for i in items] == ["p1"]
    assert counts == {"kept": 2, "scores contradict the label": 1, "no valid critique": 1, "kept_after_ranking": 1}
    with pytest.raises(ValueError, match="keep in"):
        CriticFilter(keep=0)


def test_bradley_terry_loss_on_constructed_cases():
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))
    assert bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(
        math.log1p(math.exp(-2))
    )
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([2.0])).item() == pytest.approx(math.log1p(math.exp(2)))
    both = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0]), "sum").item()
    assert both == pytest.approx(math.log1p(math.exp(-2)) + math.log1p(math.exp(2)))
    r = torch.tensor([1.0], requires_grad=True)
    bradley_terry_loss(r, torch.tensor([0.0])).backward()
    assert r.grad.item() == pytest.approx(-1 / (1 + math.e))  # -sigmoid(-1): raising the chosen reward helps


def test_lambda_moves_from_the_critique_loss_to_the_reward_loss():
    assert [critic_lambda(s, 5, 0.8, 0.2) for s in range(5)] == pytest.approx([0.8, 0.65, 0.5, 0.35, 0.2])
    cos = [critic_lambda(s, 5, 1.0, 0.0, "cosine") for s in range(5)]
    assert cos[0] == 1.0 and cos[-1] == pytest.approx(0.0) and cos[2] == pytest.approx(0.5) and cos[1] > 0.75
    assert critic_lambda(3, 5, 0.7, 0.1, "constant") == 0.7 and critic_lambda(0, 1, 0.8, 0.2) == 0.8
    with pytest.raises(ValueError, match="schedule"):
        critic_lambda(0, 5, 1, 0, "step")


def test_pack_labels_the_targets_and_points_at_each_rows_last_token():
    b = pack([([1, 2, 3], [4, 5]), ([6], [7, 8, 9])], pad_id=0)
    assert b["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]
    assert b["labels"].tolist() == [[-100, -100, -100, 4, 5], [-100, 7, 8, 9, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]] and b["last"].tolist() == [4, 3]


def test_generate_and_filter_over_an_engine():
    from reflectrm.data.critiques import sample_critiques
    from reflectrm.engines.fake import FakeEngine

    def script(request, i):  # response "7" gets 8s, "9" gets 3s, except one unreadable sample
        good = "## Response\n7\n" in request.messages[1].content
        return "no score" if (good and i == 0) else crit(8 if good else 3, f"sample {i}")

    engine = FakeEngine(script)
    out = sample_critiques(engine, [PAIR, PAIR.swapped()], CriticFilter(k=3), seed=1, max_new_tokens=32)
    assert [o.reason for o in out] == ["kept", "kept"] and [o.margin for o in out] == [5.0, 5.0]
    assert out[0].item.critiques[0].verdict == 8 and out[1].item.critiques[1].verdict == 8  # "7" moved to position 2
    (call,) = engine.calls
    assert len(call) == 4 and all(r.params.n == 3 and r.params.max_new_tokens == 32 for r in call)
    seeds = [r.params.seed for r in call]  # by the response, not its position: the same critiques in either order
    assert seeds[0] != seeds[1] and seeds[:2] == seeds[2:][::-1]
    tight = FakeEngine(script, max_prompt_tokens=5)
    assert [o.reason for o in sample_critiques(tight, [PAIR], CriticFilter())] == ["prompt too long"]


def test_a_model_with_no_reward_head_is_a_clear_error(tmp_path):
    from reflectrm.training.critic import load_reward_head

    with pytest.raises(FileNotFoundError, match="no reward head .* trained with recipe=critic_rm"):
        load_reward_head(tmp_path, 64)


def test_critic_rm_is_a_method_of_the_jobs_with_two_modes_and_no_pair_prompt():
    from jobs.ray_scoring import EvaluateConfig, ScoreConfig
    from reflectrm.config import ConfigError, JudgeConfig
    from reflectrm.methods import method_for, spec_for

    spec = spec_for("critic_rm")
    assert spec.pointwise and spec.modes == ("greedy", "majority")
    with pytest.raises(ConfigError, match="judge.method=critic_rm is pointwise .* recipe=critic_rm"):
        method_for("critic_rm")  # GRPO, RFT and build_data need a pair prompt
    with pytest.raises(ValueError, match="mode='reflect' is not available with judge.method=critic_rm"):
        ScoreConfig(judge=JudgeConfig(method="critic_rm"))  # the default mode is reflect
    ScoreConfig(judge=JudgeConfig(method="critic_rm", mode="greedy"))
    with pytest.raises(ValueError, match=r"reflect not available .* set methods=\[greedy,majority\]"):
        EvaluateConfig(judge=JudgeConfig(method="critic_rm"), datasets=("llmbar:x",))


def test_critic_rows_carry_the_rewards_and_critiques_in_the_typed_trace():
    from reflectrm.critic_judge import Scored, compare
    from reflectrm.engines.base import PromptTooLongError
    from reflectrm.records import Usage
    from reflectrm.scoring import make_item, rows_table, run_critic

    def side(reward, score):
        crit = {"text": "t", "score": score, "error": None if score else "e", "reward": reward, "completion_tokens": 3}
        return Scored(reward, (crit,), Usage(10, 3))

    class Stub:  # a CriticJudge's interface: judge(pairs, m) -> results
        def judge(self, pairs, m):
            if pairs[0].id == "long":
                raise PromptTooLongError(900, 600)
            return [compare(side(0.2, 7), side(1.5, None), pairs[0].id, m)]

    pair = synthetic_pairs(1)[0]
    items = [make_item("a", pair, "majority"), make_item("b", pair, "greedy")]
    items.append(make_item("long", dataclasses.replace(pair, id="long"), "greedy"))
    rows = run_critic(Stub(), JudgeConfig(n=4), items)
    a, b, long = rows
    assert (a["preferred"], a["n_judgments"], a["valid_rate"], a["stage1_completion_tokens"]) == (2, 8, 0.5, 6)
    assert a["score"] == pytest.approx(1 / (1 + math.exp(1.3))) and a["trace"]["mode"] == "critic@4"
    assert b["trace"]["mode"] == "critic@1" and not a["error"]
    assert long["preferred"] is None and "critique:" in long["error"] and long["trace"] is None
    table = rows_table(rows).to_pylist()  # the struct type holds a critic trace (and a pairwise one, elsewhere)
    assert table[0]["trace"]["rewards"] == [0.2, 1.5] and table[0]["trace"]["critiques"][1][0]["score"] is None
    assert table[0]["trace"]["judgments"] is None


def test_a_critic_job_on_a_model_with_no_head_names_the_fix(tmp_path):
    from reflectrm.critic_judge import needs_head

    (tmp_path / "config.json").write_text("{}")
    assert not needs_head(str(tmp_path), "reflectrm")
    with pytest.raises(FileNotFoundError, match="no reward head .* recipe=critic_rm .* judge.method=reflectrm"):
        needs_head(str(tmp_path), "critic_rm")
