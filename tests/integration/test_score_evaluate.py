"""jobs.score and jobs.evaluate on real Ray Data with the tiny model: outputs, resume, the contract files."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from jobs import evaluate, score

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
TINY = [
    "model=tiny-random",
    "judge.max_new_tokens=8",
    "judge.n=2",
    "stages.stage1.batch_size=3",
    "stages.stage2.batch_size=3",
]
LLMBAR = "../shared/data/llmbar/natural.json"


def test_score_streams_resumes_and_writes_each_id_once(ray_local, tmp_path, capsys):
    out = tmp_path / "score"
    args = ["--config", "jobs/configs/score.yaml", *TINY, "data.format=llmbar", f"data.path={LLMBAR}", f"output={out}"]
    first = score.main(args + ["data.limit=5"])
    assert first["pairs"] == 5 and first["scored_this_run"] == 5 and first["labelled"] == 5
    second = score.main(args + ["data.limit=8"])  # resume: only the 3 new pairs run
    assert second["scored_this_run"] == 3 and second["resumed"] == 5 and second["pairs"] == 8
    rows = pq.read_table(out / "scores.parquet").to_pylist()
    assert [r["id"] for r in rows] == [f"natural:{i}" for i in range(1, 9)]  # input order, each id once
    parts = [r["id"] for p in sorted((out / "parts").glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert sorted(parts) == sorted(r["id"] for r in rows)  # no pair judged twice across the runs
    for r in rows:
        trace = r["trace"]  # a struct column: the whole JudgeResult, typed
        assert r["mode"] == "reflect" and len(trace["judgments"]) == 2 and r["completion_tokens"] > 0
        assert r["preferred"] in (1, 2, None) and 0.0 <= r["score"] <= 1.0
        assert r["preferred"] is None or r["valid_rate"] > 0  # a verdict only from a valid judgment
    assert json.loads((out / "summary.json").read_text()) == second
    assert "scored this run / resumed" in capsys.readouterr().out


def test_score_in_one_pool_to_jsonl_matches_the_library(ray_local, tmp_path):
    """stages.separate=false, JSONL out, on the engine `make setup` installs: vLLM where it is installed
    (one engine in the Ray Data actor, loaded once), else HF. Greedy output equals the HF engine's here."""
    from reflectrm.config import JudgeConfig, ModelConfig
    from reflectrm.data.synthetic import synthetic_pairs
    from reflectrm.engines.hf import HFEngine
    from reflectrm.engines.vllm import vllm_available
    from reflectrm.inference import Judge

    engine = "vllm" if vllm_available() else "hf"
    out = tmp_path / "one"
    summary = score.main(
        [
            "--config",
            "jobs/configs/score.yaml",
            "model=tiny-judge",
            f"model.engine={engine}",
            "model.vllm.kv_cache_gib=1",
            "model.max_prompt_tokens=1024",
            "data.path=6",
            "judge.mode=greedy",
            "judge.max_new_tokens=96",
            "stages.separate=false",
            "stages.stage1.batch_size=6",
            "output_format=jsonl",
            f"output={out}",
        ]
    )
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert summary["pairs"] == len(rows) == len({r["id"] for r in rows}) == 6
    assert all(r["mode"] == "greedy" and len(r["trace"]["judgments"]) == 1 for r in rows)  # trace nested in JSONL
    expected = Judge(
        HFEngine.from_config(ModelConfig(name="tiny-judge")), JudgeConfig(mode="greedy", max_new_tokens=96)
    ).judge(synthetic_pairs(6), "greedy")
    assert [r["trace"]["judgments"][0]["text"] for r in rows] == [e.judgments[0].text for e in expected]
    assert [r["preferred"] for r in rows] == [e.preferred for e in expected]
    assert any(r["preferred"] is not None for r in rows)


def test_evaluate_contract_end_to_end(ray_local, tmp_path):
    out = tmp_path / "eval"
    summary = evaluate.main(
        [
            "--config",
            "jobs/configs/evaluate.yaml",
            "model=tiny-random",
            f"datasets=[llmbar:{LLMBAR}]",
            "methods=[greedy,majority,reflect]",
            "judge.n=2",
            "limit=4",
            "judge.max_new_tokens=8",
            "stages.stage1.batch_size=4",
            "stages.stage2.batch_size=4",
            "stages.separate=true",  # the two-pool path (auto picks one pool on this one-node Ray)
            f"output={out}",
        ]
    )
    data = json.loads((out / "results.json").read_text())
    assert data["model"] == "tiny-random" and data == json.loads(json.dumps(summary))
    assert [(r["dataset"], r["method"]) for r in data["results"]] == [
        ("llmbar/natural", m) for m in ("greedy", "majority", "reflect")
    ]
    for r in data["results"]:
        assert r["n_items"] == 4
        for key in ("accuracy", "accuracy_swapped", "consistency", "invalid_rate", "tokens_per_item"):
            assert isinstance(r[key], float) and 0 <= r[key] <= (1 if key != "tokens_per_item" else 8 * 2)
        assert r["consistency"] <= r["accuracy"] and r["label_shares"] == {"1": 0.5, "2": 0.5}  # a balanced limit
        assert r["accuracy"] == pytest.approx((r["accuracy_given"] + r["accuracy_swapped"]) / 2)  # both orders
        assert r["position_preference"] is None or 0 <= r["position_preference"] <= 1
    greedy, majority, reflect = data["results"]
    assert greedy["tokens_per_item"] <= 8 < reflect["tokens_per_item"]  # one judgment vs n=2
    assert majority["tokens_per_item"] <= reflect["tokens_per_item"]  # majority = reflect's stage 1
    assert (out / "results.png").stat().st_size > 1000 and "| llmbar/natural | reflect" in (
        out / "results.md"
    ).read_text()
    assert "Wilson" in data["ci_method"] and "label-balanced" in data["sampling"]
    from reflectrm.cli import main as cli

    assert cli(["compare", str(out), str(out / "results.json"), "--json"]) == 0  # a run against itself: paired, 0
    parts = [r["id"] for p in (out / "parts").glob("part-*.parquet") for r in pq.read_table(p).to_pylist()]
    assert len(parts) == len(set(parts)) == 4 * 2 * 2  # 4 pairs x (greedy, reflect) x 2 orders; majority needs no run
