"""The Serve app under load: requests/s and p50/p99 latency at several concurrencies, cross-request
batching on vs off, and the service vs the library called directly (JSON out).

    .venv/bin/python -m benchmarks.serve [--models tiny-random,smollm2-135m-instruct --concurrency 1,8,32]

Every request is a /v1/judge `reflect` call with its own prompt (synthetic pairs), n and
max_new_tokens fixed per model. "Batching off" is the same app with max_batch_size=1 per stage.
Overhead: the same requests one at a time through HTTP + Serve vs `Judge.judge_one` in this process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import statistics
import time

import httpx

from benchmarks.common import parse, parser, write_report
from reflectrm.config import JudgeConfig, ModelConfig
from reflectrm.data.synthetic import synthetic_pairs

SIZES = {"tiny-random": {"n": 4, "max_new_tokens": 16}, "smollm2-135m-instruct": {"n": 4, "max_new_tokens": 32}}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def load(url: str, bodies: list[dict], concurrency: int) -> dict:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0

    async def one(client: httpx.AsyncClient, body: dict) -> None:
        nonlocal errors
        async with sem:
            t0 = time.perf_counter()
            r = await client.post(url + "/v1/judge", json=body)
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    async with httpx.AsyncClient(timeout=600) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(client, b) for b in bodies))
        wall = time.perf_counter() - t0
    return {
        "requests": len(bodies),
        "errors": errors,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(bodies) / wall, 3),
        "p50_s": round(pct(latencies, 0.5), 3),
        "p99_s": round(pct(latencies, 0.99), 3),
    }


def main() -> None:
    ap = parser("serve", __doc__)
    ap.add_argument("--models", default="tiny-random,smollm2-135m-instruct")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=32, help="requests per level (8 at concurrency 1)")
    args = parse(ap)
    import ray
    from ray import serve

    from reflectrm.engines import load_engine
    from reflectrm.inference import Judge
    from serve.app import build_app

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    levels = [int(c) for c in args.concurrency.split(",")]
    report: dict = {"cpus": os.cpu_count(), "levels": levels, "models": {}}
    for model in args.models.split(","):
        size = SIZES.get(model, SIZES["smollm2-135m-instruct"])
        pairs = synthetic_pairs(args.requests + 4, seed=1)
        bodies = [
            {"prompt": p.query, "response_1": p.response_1, "response_2": p.response_2, "mode": "reflect", **size}
            for p in pairs
        ]
        entry: dict = {"request": {"mode": "reflect", **size}}
        for name, batch in (("batching_on", 32), ("batching_off", 1)):
            stage = {"max_batch_size": batch, "threads": 2}
            serve.run(
                build_app({"model": model, "judge": {"seed": 0}, "stage1": stage, "stage2": stage}),
                name="bench",
                route_prefix="/",
            )
            asyncio.run(load(url, bodies[-2:], 2))  # warm-up
            entry[name] = {}
            for c in levels:
                entry[name][str(c)] = res = asyncio.run(load(url, bodies[: 8 if c == 1 else args.requests], c))
                print(model, name, c, res, flush=True)
            if name == "batching_on":
                single = [asyncio.run(load(url, [b], 1))["seconds"] for b in bodies[:8]]
            serve.delete("bench")
        entry["batching_gain"] = {
            str(c): round(
                entry["batching_on"][str(c)]["requests_per_s"] / entry["batching_off"][str(c)]["requests_per_s"], 3
            )
            for c in levels
        }
        judge = Judge(load_engine(ModelConfig(name=model)), JudgeConfig(seed=0, **size))
        direct = []
        for p in pairs[:8]:
            t0 = time.perf_counter()
            judge.judge_one(p.__class__("", p.context, p.response_1, p.response_2), "reflect")
            direct.append(time.perf_counter() - t0)
        del judge
        entry["service_vs_library"] = {
            "service_mean_s": round(statistics.mean(single), 3),
            "library_mean_s": round(statistics.mean(direct), 3),
            "overhead_ratio": round(statistics.mean(single) / statistics.mean(direct), 3),
        }
        print(model, entry["batching_gain"], entry["service_vs_library"], flush=True)
        report["models"][model] = entry
    serve.shutdown()
    ray.shutdown()
    write_report(report, args.output)


if __name__ == "__main__":
    main()
