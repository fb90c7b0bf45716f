"""The README's main job at smoke size on the tiny model."""

from __future__ import annotations

import json

from jobs.main import main


def test_main_job_smoke(tmp_path, capsys):
    summary = main(["--config", "jobs/configs/main_smoke.yaml", f"output={tmp_path}"])
    printed = capsys.readouterr().out
    assert "| pair" in printed and "greedy" in printed and "reflect" in printed
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["pairs"] == 4 == len(saved["results"]["reflect"]) == len(saved["results"]["greedy"])
    assert set(saved["correct"]) == {"greedy", "majority", "reflect"}
    assert saved["config"]["model"]["name"] == "tiny-random" and summary["model"] == "tiny-random"
