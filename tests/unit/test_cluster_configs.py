"""The cluster files hold together without a cloud: ray_cluster.yaml's shape, the KubeRay manifests,
the RayService equal to serve/config.yaml, and every documented job command parses."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def load(path: str):
    return yaml.safe_load((ROOT / path).read_text())


def test_ray_cluster_yaml_structure():
    c = load("ray_cluster.yaml")
    types = c["available_node_types"]
    assert c["head_node_type"] in types
    head = types[c["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["max_workers"] == 0  # a CPU head that runs no GPU work
    workers = {k: v for k, v in types.items() if k != c["head_node_type"]}
    assert workers and all(v["resources"]["GPU"] >= 1 and v["resources"]["CPU"] >= 1 for v in workers.values())
    assert all(0 <= v["min_workers"] <= v["max_workers"] for v in workers.values())
    assert sum(v["max_workers"] for v in workers.values()) >= c["max_workers"] > 0
    assert c["provider"]["type"] and c["idle_timeout_minutes"] > 0
    assert "." in c["file_mounts"].values()  # this checkout goes to every node
    setup = "\n".join(c["setup_commands"])
    assert setup.index("torch==2.13.0") < setup.index("-e '.[ray]'") < setup.index("make vllm")  # torch first and alone
    assert any("ray start --head" in cmd for cmd in c["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in cmd for cmd in c["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=disabled" not in (ROOT / "ray_cluster.yaml").read_text()  # a cloud cluster keeps token auth


def test_kuberay_manifests_structure():
    cluster = load("cluster/kuberay/raycluster.yaml")
    job = load("cluster/kuberay/rayjob_train.yaml")
    service = load("cluster/kuberay/rayservice.yaml")
    assert [m["kind"] for m in (cluster, job, service)] == ["RayCluster", "RayJob", "RayService"]
    specs = [cluster["spec"], job["spec"]["rayClusterSpec"], service["spec"]["rayClusterConfig"]]
    for spec in specs:
        assert spec["rayVersion"] == "2.60.0" and spec["authOptions"]["mode"] == "token"
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        for group in spec["workerGroupSpecs"]:
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
            (container,) = group["template"]["spec"]["containers"]
            assert container["resources"]["limits"] == container["resources"]["requests"]
    gpus = sum(
        g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
        for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    )
    assert gpus == 16  # the paper's setup: 16 GPUs


def test_rayservice_serves_the_same_app_as_serve_config():
    service = load("cluster/kuberay/rayservice.yaml")
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    local = load("serve/config.yaml")
    assert embedded["applications"] == local["applications"]
    assert embedded["proxy_location"] == local["proxy_location"]
    assert embedded["http_options"] == {
        **local["http_options"],
        "host": "0.0.0.0",
    }  # reachable inside the pod, behind the token
    env = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    assert any(e["name"] == local["applications"][0]["args"]["auth_token_env"] for e in env)


def _job_config(module: str):
    from jobs.ray_building import BuildDataConfig
    from jobs.ray_critiques import BuildCritiquesConfig
    from jobs.ray_scoring import EvaluateConfig, ScoreConfig
    from jobs.ray_training import TrainConfig

    return {
        "jobs.build_critiques": BuildCritiquesConfig,
        "jobs.train": TrainConfig,
        "jobs.score": ScoreConfig,
        "jobs.evaluate": EvaluateConfig,
        "jobs.build_data": BuildDataConfig,
    }[module]


def documented_commands():
    """`python -m jobs.X --config ... overrides` lines of the cluster docs, the methods' page and the RayJob."""
    texts = [
        (ROOT / "cluster" / "README.md").read_text(),
        (ROOT / "docs" / "methods.md").read_text(),
        load("cluster/kuberay/rayjob_train.yaml")["spec"]["entrypoint"],
    ]
    commands = []
    for text in texts:
        for chunk in text.replace("\\\n", " ").split("\n"):
            if "python -m jobs." in chunk and "--config" in chunk:
                commands.append(chunk[chunk.index("python -m jobs.") :].split(" #")[0].strip().rstrip("`"))
    return commands


@pytest.mark.parametrize("command", documented_commands())
def test_documented_job_commands_parse(command):
    from reflectrm.config import load_config

    argv = shlex.split(command)
    module, rest = argv[2], argv[3:]
    assert rest[0] == "--config"
    load_config(_job_config(module), ROOT / rest[1], rest[2:])  # unknown keys or bad values raise ConfigError


def test_documented_commands_cover_every_job():
    modules = {shlex.split(c)[2] for c in documented_commands()}
    assert {"jobs.train", "jobs.score", "jobs.evaluate", "jobs.build_data"} <= modules
