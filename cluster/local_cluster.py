"""A multi-node Ray cluster on one machine: a head and N worker nodes, each with its own resources.

    python -m cluster.local_cluster start [--workers 1 --head-cpus 1 --worker-cpus 2]   # prints the address
    RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.score ...
    python -m cluster.local_cluster status
    python -m cluster.local_cluster stop

Each node is a `ray start --block` process in its own process group; `stop` ends only those
groups (never `ray stop`, which kills every Ray process on the machine, yours and everyone's).
The nodes run with this Python on PATH, so a job's `python` is the project's environment.
Each worker node has its own Ray temp dir, as a separate machine would: Ray's runtime-env agent of a
node (re)unpacks a job's working dir into its session's runtime_resources, removing what is there, so
nodes sharing one would pull a running job's files from under it.
Token auth: a single-user cluster on 127.0.0.1 runs with RAY_AUTH_MODE=disabled (set here for the
nodes; export it where you run `ray job submit`). Keep auth on for any cluster others can reach.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

STATE = Path(os.environ.get("REFLECTRM_CLUSTER_STATE", Path.home() / ".cache" / "reflectrm" / "local_cluster.json"))


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port never handed out before by this process: the OS may return a just-closed port again,
    and two Ray components given the same port make `ray start` fail (seen once in CI: gcs_server and
    dashboard_agent_http both got 60653)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # jobs' `python` = this one
    return env


def _ray() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else "ray"


def _node_ports(min_worker_port: int) -> list[str]:
    """Every port a node opens, chosen free, so several nodes share one machine without clashing."""
    return [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--min-worker-port={min_worker_port}",
        f"--max-worker-port={min_worker_port + 199}",
    ]


def _spawn(args: list[str], log: Path) -> int:
    out = open(log, "ab")
    proc = subprocess.Popen(
        [_ray(), "start", "--block", *args], stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
    )
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child, and it has exited: reap it
            return False
    except ChildProcessError:
        pass  # started by another `start` command: not ours to reap
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has ended
    except OSError:
        return True


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process of the node's process group is left."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel (zombies count as alive there)
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _nodes_alive(dashboard: str) -> int:
    with urllib.request.urlopen(f"{dashboard}/nodes?view=summary", timeout=5) as r:
        data = json.load(r)
    return sum(1 for n in data["data"]["summary"] if n["raylet"]["state"] == "ALIVE")


def start(
    workers: int = 1, head_cpus: float = 1, worker_cpus: float = 2, object_store_mb: int = 400, timeout_s: float = 300
) -> dict:
    if STATE.exists() and any(_alive(p) for p in json.loads(STATE.read_text())["pids"]):
        raise SystemExit(
            f"a local cluster is already running (state in {STATE}): `python -m cluster.local_cluster stop` first"
        )
    STATE.parent.mkdir(parents=True, exist_ok=True)
    logs = STATE.parent / "local_cluster_logs"
    logs.mkdir(exist_ok=True)
    gcs, dash = free_port(), free_port()
    store = str(object_store_mb * 1024 * 1024)
    pids = [
        _spawn(
            [
                "--head",
                f"--port={gcs}",
                "--node-ip-address=127.0.0.1",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash}",
                "--include-dashboard=true",
                f"--num-cpus={head_cpus}",
                "--num-gpus=0",
                f"--object-store-memory={store}",
                '--resources={"head_node": 1}',
                *_node_ports(20000),
            ],
            logs / "head.log",
        )
    ]
    dashboard = f"http://127.0.0.1:{dash}"
    state = {
        "address": f"127.0.0.1:{gcs}",
        "dashboard": dashboard,
        "pids": pids,
        "nodes": 1 + workers,
        "logs": str(logs),
    }
    STATE.write_text(json.dumps(state))
    _wait(dashboard, 1, timeout_s, pids)
    for i in range(workers):
        temp = tempfile.mkdtemp(prefix=f"reflectrm-node{i + 1}-")  # short: Ray's socket paths live under it
        state.setdefault("temp_dirs", []).append(temp)
        pids.append(
            _spawn(
                [
                    f"--address=127.0.0.1:{gcs}",
                    "--node-ip-address=127.0.0.1",
                    f"--num-cpus={worker_cpus}",
                    "--num-gpus=0",
                    f"--object-store-memory={store}",
                    f'--resources={{"worker_node": 1, "worker_{i}": 1}}',
                    f"--temp-dir={temp}",
                    *_node_ports(20200 + 200 * i),
                ],
                logs / f"worker_{i}.log",
            )
        )
        STATE.write_text(json.dumps(state))
    _wait(dashboard, 1 + workers, timeout_s, pids)
    return state


def _wait(dashboard: str, nodes: int, timeout_s: float, pids: list[int]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not all(_alive(p) for p in pids):
            stop()
            raise SystemExit(
                f"a Ray node exited during start-up: see the logs in {STATE.parent / 'local_cluster_logs'}"
            )
        try:
            if _nodes_alive(dashboard) >= nodes:
                return
        except OSError:
            pass
        time.sleep(1)
    stop()
    raise SystemExit(
        f"the cluster did not reach {nodes} live nodes in {timeout_s:.0f} s: see {STATE.parent / 'local_cluster_logs'}"
    )


def stop(grace_s: float = 10) -> int:
    """End the process groups this script started; returns how many were still running."""
    if not STATE.exists():
        return 0
    pids = json.loads(STATE.read_text())["pids"]
    running = [p for p in pids if _alive(p)]
    for pid in reversed(running):  # workers first, then the head
        try:
            os.killpg(pid, signal.SIGTERM)  # `ray start --block` shuts its node down on SIGTERM
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) or group_alive(p) for p in running):
        time.sleep(0.5)
    for pid in running:
        try:
            os.killpg(pid, signal.SIGKILL)  # whatever is left of those groups, and nothing else
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) or group_alive(p) for p in running):
        time.sleep(0.2)
    state = json.loads(STATE.read_text())
    _forget_address(state["address"])
    for temp in state.get("temp_dirs", []):
        shutil.rmtree(temp, ignore_errors=True)
    STATE.unlink(missing_ok=True)
    return len(running)


def _forget_address(address: str) -> None:
    """`ray start` records its address in /tmp/ray/ray_current_cluster, where a later `ray.init()`
    would try to join this stopped cluster; drop the record if it is ours."""
    from ray._private.utils import get_ray_address_file

    path = Path(get_ray_address_file(None))
    port = address.rsplit(":", 1)[1]
    if path.is_file() and path.read_text().strip().endswith(f":{port}"):  # it records the node's IP, not 127.0.0.1
        path.unlink()


def status() -> dict | None:
    if not STATE.exists():
        return None
    state = json.loads(STATE.read_text())
    try:
        state["alive_nodes"] = _nodes_alive(state["dashboard"])
    except OSError:
        state["alive_nodes"] = 0
    return state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start")
    s.add_argument("--workers", type=int, default=1, help="worker nodes besides the head")
    s.add_argument("--head-cpus", type=float, default=1)
    s.add_argument("--worker-cpus", type=float, default=2, help="logical CPUs of each worker node")
    s.add_argument("--object-store-mb", type=int, default=400)
    sub.add_parser("stop")
    sub.add_parser("status")
    args = ap.parse_args(argv)
    if args.command == "start":
        state = start(args.workers, args.head_cpus, args.worker_cpus, args.object_store_mb)
        print(
            f"local Ray cluster: {state['nodes']} nodes, GCS {state['address']}, dashboard and job API {state['dashboard']}"
        )
        print(f"  export RAY_AUTH_MODE=disabled RAY_ADDRESS={state['dashboard']}")
        print(
            "  ray job submit --working-dir . -- python -m jobs.score --config jobs/configs/score.yaml output=/tmp/reflectrm/score"
        )
        print("  python -m cluster.local_cluster stop")
    elif args.command == "stop":
        print(f"stopped {stop()} node process group(s)")
    else:
        state = status()
        print(json.dumps(state, indent=2) if state else "no local cluster started by this script")
    return 0


if __name__ == "__main__":
    sys.exit(main())
