"""jobs.build_critiques on real Ray Data with the tiny model: every pair sampled once, a resume does nothing
twice, other sampling settings are refused, other filter settings re-filter the stored samples, and the
outcomes add up. (The tiny random model writes no readable critique; the filter's rules are unit-tested.)"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from jobs.build_critiques import main

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def test_critiques_are_sampled_once_and_resumed_under_the_same_settings_only(ray_local, tmp_path, capsys):
    address = ray_local.get_runtime_context().gcs_address
    args = [
        "--config", "jobs/configs/build_critiques.yaml", "model=tiny-random", "data.path=6", "critic.k=2",
        "sampling.max_new_tokens=12", "pool.batch_size=2", f"output={tmp_path}", f"ray.address={address}",
    ]  # fmt: skip
    stats = main(args)
    assert "0 already sampled, 6 to go" in capsys.readouterr().out
    rows = [r for part in (tmp_path / "samples").glob("part-*.parquet") for r in pq.read_table(part).to_pylist()]
    assert sorted(r["id"] for r in rows) == sorted({r["id"] for r in rows}) and len(rows) == 6
    assert all(len(r["texts_1"]) == len(r["texts_2"]) == 2 for r in rows)
    assert stats["sampled"] == 6 and sum(v for k, v in stats["outcomes"].items() if k != "kept_after_ranking") == 6
    assert stats["items"] == pq.read_table(tmp_path / "critic.parquet").num_rows
    assert json.loads((tmp_path / "stats.json").read_text()) == stats and stats["label_shares"]

    again = main([*args, "critic.keep=0.5"])  # a filter setting: the same samples, filtered again
    assert "6 already sampled, 0 to go" in capsys.readouterr().out and again["sampled"] == 6
    with pytest.raises(SystemExit) as refused:  # a sampling setting: resuming would mix two kinds of samples
        main([*args, "sampling.temperature=0.5"])
    assert refused.value.code == 2 and "temperature" in capsys.readouterr().err
