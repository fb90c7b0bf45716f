"""Reading OpenRLHF's reward requests (reflectrm.protocols) and the shape of serve/config*.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reflectrm.protocols import detemplate, read_reward_sample, reference_of
from reflectrm.records import Message

CHATML = "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
LLAMA3 = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"


def test_detemplate_reads_the_conversation_back():
    assert detemplate(CHATML) == (Message("system", "Be kind."), Message("user", "What is 2+2?"))
    assert detemplate(LLAMA3) == (Message("user", "What is 2+2?"),)
    assert detemplate("<s>Plain question?") == (Message("user", "Plain question?"),)
    assert detemplate("   ") == ()


def test_reward_sample_splits_prompt_and_response_and_normalises_special_tokens():
    s = read_reward_sample(CHATML + "4<|im_end|>", CHATML, "Four.")
    assert (
        s.context[-1] == Message("user", "What is 2+2?")
        and s.response == "4"
        and s.reference == "Four."
        and not s.problem
    )
    # prefix mismatch (prompts normalised differently): split on the last assistant turn
    s = read_reward_sample(CHATML + "4<|im_end|>", CHATML.replace("Be kind.", "Be  kind."), {"reference": "4"})
    assert s.response == "4" and s.reference == "4"
    s = read_reward_sample(LLAMA3 + "4<|eot_id|>", None, None)
    assert s.context == (Message("user", "What is 2+2?"),) and s.response == "4" and s.reference is None
    assert read_reward_sample(42, CHATML, "4").problem.startswith("query is int")
    assert read_reward_sample("no template at all", "", "4").problem


@pytest.mark.parametrize(
    "label, ref", [("x", "x"), ({"reference": "y"}, "y"), (None, None), ("", None), ({"other": 1}, None), (3, None)]
)
def test_reference_of(label, ref):
    assert reference_of(label) == ref


@pytest.mark.parametrize("path", ["serve/config.yaml", "serve/config_gpu.yaml"])
def test_serve_configs_are_valid(path):
    from ray.serve.schema import ServeDeploySchema

    from serve.schemas import ServeArgs

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / path).read_text())
    ServeDeploySchema.model_validate(cfg)  # what `serve deploy` checks
    app = cfg["applications"][0]
    assert app["import_path"] == "serve.app:build_app"
    ServeArgs.parse(app["args"])  # what build_app checks (ConfigError on a bad value)
    deployments = {d["name"]: d for d in app["deployments"]}
    assert set(deployments) == {"Stage1", "Stage2", "Ingress"}
    for name in ("Stage1", "Stage2"):  # Serve caps a batch at max_ongoing_requests
        assert deployments[name]["max_ongoing_requests"] >= app["args"][name.lower()]["max_batch_size"]
    if path == "serve/config.yaml":
        assert cfg["http_options"]["host"] == "127.0.0.1"
        assert sum(d["ray_actor_options"]["num_cpus"] for d in deployments.values()) <= 2  # fits a 2-core machine
