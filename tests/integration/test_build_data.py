"""jobs.build_data on real Ray Data with the tiny model: outputs, counts, and resume after a kill."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from jobs.build_data import main

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
SMOKE = ["--config", "jobs/configs/build_data_smoke.yaml"]


def read(path):
    return pq.read_table(path).to_pylist()


def test_killed_run_resumes_without_duplicates(ray_local, tmp_path, capsys):
    """Kill the job (SIGKILL) after its first batch is written, re-run it: every pair is judged exactly
    once, the outputs add up, they equal those of an uninterrupted run, and a third run has nothing to do."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = SMOKE + ["mix.ratio=1:0", "pool.batch_size=2", "judge.max_new_tokens=48"]
    out = tmp_path / "killed"
    address = ray_local.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.build_data", *args, f"output={out}", f"ray.address={address}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None and not list((out / "judgments").glob("part-*.parquet")):
            time.sleep(0.1)
        assert proc.poll() is None, "the job finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    written = len({r["id"] for part in (out / "judgments").glob("part-*.parquet") for r in read(part)})
    assert 0 < written < 24 and not (out / "stats.json").exists()

    resumed = main(args + [f"output={out}"])
    printed = capsys.readouterr().out
    assert f"{written} already judged, {24 - written} to go" in printed and "pairs read" in printed
    ids = [r["id"] for part in (out / "judgments").glob("part-*.parquet") for r in read(part)]
    assert len(ids) == len(set(ids)) == 24
    stats = json.loads((out / "stats.json").read_text())
    assert stats == resumed
    assert (
        stats["items"] == 24
        and stats["judgments"] == 24 * 4
        and stats["prompt_template"].startswith("reflectrm-prompts")
    )
    assert stats["easy_dropped"] + stats["preference_available"] == 24
    pref, refl, mix = (read(out / f"{n}.parquet") for n in ("pref", "refl", "mix"))
    assert len(pref) == stats["preference_available"] and len(refl) == stats["reflection_available"]
    assert len(mix) == stats["mix"] == stats["preference"]  # ratio 1:0 -> preference items only
    clean = main(args + [f"output={tmp_path / 'clean'}"])
    drop = {"sampling_seconds"}
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in clean.items() if k not in drop}
    assert read(out / "mix.parquet") == read(tmp_path / "clean" / "mix.parquet")
    again = main(args + [f"output={out}"])  # nothing left to do
    assert "24 already judged, 0 to go" in capsys.readouterr().out
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in stats.items() if k not in drop}
