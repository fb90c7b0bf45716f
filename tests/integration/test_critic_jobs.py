"""Critic-RM through jobs.score and jobs.evaluate on real Ray Data: a tiny critic export (trained here, its reward
head beside it) scores pairs pointwise, in both orders, with the same statistics as the pairwise methods."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from jobs import evaluate, score
from reflectrm.data.sources import DataConfig, load_source
from reflectrm.training.session import LocalSession
from reflectrm.training.trainer import train_worker
from tests.model.test_critic_rm import config, items

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
LLMBAR = "../shared/data/llmbar/natural.json"


@pytest.fixture(scope="module")
def critic(tmp_path_factory):
    run = tmp_path_factory.mktemp("critic") / "run"
    train_worker(config(max_steps=1, checkpoint_every=0, eval_every=0), LocalSession(items(2), 2, run), 1, [])
    return str(run / "final")


def test_score_runs_critic_rm_pointwise_and_resumes(ray_local, critic, tmp_path):
    from reflectrm.critic_judge import CriticJudge

    out = tmp_path / "score"
    args = ["--config", "jobs/configs/score.yaml", f"model={critic}", "judge.method=critic_rm", "judge.mode=majority"]
    args += ["judge.n=2", "judge.max_new_tokens=8", "data.path=4", f"output={out}"]
    summary = score.main(args)
    assert summary["pairs"] == summary["scored_this_run"] == 4 and summary["method"] == "critic_rm"
    rows = pq.read_table(out / "scores.parquet").to_pylist()
    judge = CriticJudge.load(critic, m=2, max_new_tokens=8)  # the library's judge on the same pair, same seeds
    for r in rows:
        t = r["trace"]
        assert t["method"] == "critic_rm" and t["mode"] == "critic@2" and [len(c) for c in t["critiques"]] == [2, 2]
        assert t["judgments"] is None and r["n_judgments"] == 4 and r["completion_tokens"] > 0
        assert r["preferred"] == (1 if t["rewards"][0] > t["rewards"][1] else 2)
    pairs, _ = load_source(DataConfig(format="synthetic", path="4"), 0)  # what the job read
    expected = judge.judge(pairs[:1])[0]
    assert rows[0]["id"] == pairs[0].id
    assert rows[0]["trace"]["rewards"] == pytest.approx([s.reward for s in expected.responses], abs=1e-4)
    assert score.main(args)["scored_this_run"] == 0  # resumed whole


def test_evaluate_compares_m_1_and_m_n_in_both_orders(ray_local, critic, tmp_path):
    out = tmp_path / "eval"
    args = ["--config", "jobs/configs/evaluate.yaml", f"model={critic}", "judge.method=critic_rm", "judge.n=2"]
    args += ["judge.max_new_tokens=8", f"datasets=[llmbar:{LLMBAR}]", "limit=4", f"output={out}"]
    with pytest.raises(SystemExit):  # the default methods include reflect, which a pointwise critic has not
        evaluate.main(args)
    summary = evaluate.main([*args, "methods=[greedy,majority]"])
    assert summary["judge_method"] == "critic_rm" and summary["trained_for"] == "critic_rm"
    by = {r["method"]: r for r in summary["results"]}
    assert set(by) == {"greedy", "majority"}
    for r in by.values():
        assert r["n_items"] == 4 and 0 <= r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1] <= 1
        assert r["consistency"] is not None and r["tokens_per_item"] > 0
    # pointwise: a response's reward does not depend on its position, so each pair's two verdicts agree
    # up to exact ties (the same critiques are written in either order, seeded by the response's text)
    for i, (given, swapped, _label) in by["greedy"]["verdicts"].items():
        assert given is None or swapped == 3 - given, i
    assert by["majority"]["tokens_per_item"] > by["greedy"]["tokens_per_item"]  # m=2 critiques per response, not 1
    assert "Critic-RM (pointwise)" in (out / "results.md").read_text()


def test_a_model_with_no_head_is_refused_before_ray_starts(tmp_path, capsys):
    args = ["--config", "jobs/configs/score.yaml", "model=tiny-random", "judge.method=critic_rm", "judge.mode=greedy"]
    with pytest.raises(SystemExit) as err:
        score.main([*args, f"output={tmp_path}"])
    assert err.value.code == 2 and "has no reward head" in capsys.readouterr().err
