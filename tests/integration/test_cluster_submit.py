"""`ray job submit` onto a local multi-node cluster (cluster/local_cluster.py): a head and a worker
node, a tiny-random training job and a scoring job submitted with the documented runtime env, both
waited for; their outputs checked; the cluster stopped (and only its own processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster import local_cluster

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    local_cluster.STATE = tmp_path_factory.mktemp("cluster") / "state.json"
    state = local_cluster.start(workers=1, head_cpus=1, worker_cpus=2)
    yield state
    stopped = local_cluster.stop()
    assert stopped == 2 and not local_cluster.STATE.exists()
    assert not any(
        local_cluster._alive(p) or local_cluster.group_alive(p) for p in state["pids"]
    )  # nothing of theirs is left


def submit(cluster, *entrypoint: str) -> str:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    out = subprocess.run(
        [
            RAY,
            "job",
            "submit",
            "--address",
            cluster["dashboard"],
            "--runtime-env",
            "cluster/runtime_env.yaml",
            "--no-wait",
            "--",
            *entrypoint,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout
    return next(line.split("'")[1] for line in out.splitlines() if "submitted successfully" in line)


def wait(cluster, job_ids: list[str], timeout_s: float = 480) -> dict[str, str]:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(cluster["dashboard"])
    deadline, status = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        status = {j: str(client.get_job_status(j)).split(".")[-1] for j in job_ids}
        if all(s in ("SUCCEEDED", "FAILED", "STOPPED") for s in status.values()):
            break
        time.sleep(3)
    for j, s in status.items():
        if s != "SUCCEEDED":
            print(client.get_job_logs(j)[-4000:])
    return status


def test_train_and_score_jobs_on_a_two_node_cluster(cluster, tmp_path):
    assert cluster["nodes"] == 2 and local_cluster.status()["alive_nodes"] == 2
    train_out, score_out = tmp_path / "train", tmp_path / "score"  # absolute paths every node sees (one machine here)
    train = submit(
        cluster,
        "python",
        "-m",
        "jobs.train",
        "--config",
        "jobs/configs/rft.yaml",
        "model=tiny-random",
        "data.format=synthetic",
        "data.path=12",
        "data.held_out=2",
        "max_steps=2",
        "grpo.n=2",
        "grpo.max_new_tokens=8",
        "trainer.num_workers=2",
        "trainer.cpus_per_worker=0.5",
        "trainer.prompts_per_worker=2",  # one pair in both orders (data.orders=both)
        "eval_every=0",
        "checkpoint_every=1",
        f"output={train_out}",
    )
    score = submit(
        cluster,
        "python",
        "-m",
        "jobs.score",
        "--config",
        "jobs/configs/score.yaml",
        "model=tiny-random",
        "data.path=4",
        "judge.n=2",
        "judge.max_new_tokens=8",
        "stages.separate=false",
        "stages.stage1.cpus=0.5",
        f"output={score_out}",
    )
    assert wait(cluster, [train, score]) == {train: "SUCCEEDED", score: "SUCCEEDED"}

    summary = json.loads((train_out / "summary.json").read_text())
    assert summary["steps"] == 2 and (train_out / "final" / "config.json").is_file()
    assert len((train_out / "metrics.jsonl").read_text().splitlines()) == 2
    scored = json.loads((score_out / "summary.json").read_text())
    assert scored["pairs"] == 4 and (score_out / "scores.parquet").is_file()
