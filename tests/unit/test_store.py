"""The result store (reflectrm.data.store): parts written once per id, and settings fingerprints."""

from __future__ import annotations

import json

import pytest

from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig, result_settings
from reflectrm.data.store import PartStore, SettingsMismatch


def settings(**judge):
    return result_settings(ModelConfig(name="m"), JudgeConfig(**judge), PromptConfig(), template="v1")


def test_a_resume_under_other_settings_stops_and_names_them(tmp_path):
    store = PartStore(tmp_path, settings(n=4))
    store.write([{"id": "a", "x": 1}])
    assert PartStore(tmp_path, settings(n=4)).done_ids() == {"a"}  # the same settings resume
    with pytest.raises(SettingsMismatch, match=r"judge\.n: 4 -> 8.*--fresh"):
        PartStore(tmp_path, settings(n=8))
    with pytest.raises(SettingsMismatch, match=r"judge\.temperature: 1\.0 -> 0\.7"):
        PartStore(tmp_path, settings(n=4, temperature=0.7))
    fresh = PartStore(tmp_path, settings(n=8), fresh=True)
    assert fresh.done_ids() == set()
    assert json.loads((tmp_path / "settings.json").read_text())["settings"]["judge"]["n"] == 8


def test_parts_with_no_settings_record_are_not_resumed_silently(tmp_path):
    PartStore(tmp_path).write([{"id": "a"}])
    with pytest.raises(SettingsMismatch, match="no record"):
        PartStore(tmp_path, settings())


def test_score_job_exits_2_naming_the_setting_that_changed(tmp_path, capsys):
    from jobs.ray_scoring import ScoreConfig
    from jobs.score import main
    from reflectrm.engines import resolve_engine
    from reflectrm.prompts import TEMPLATE_VERSION
    from reflectrm.scoring import ROWS_VERSION

    cfg = ScoreConfig(model=ModelConfig(name="tiny-random"), judge=JudgeConfig(n=2))
    model = ModelConfig(name="tiny-random", engine=resolve_engine("auto"))
    settings = result_settings(model, cfg.judge, cfg.prompt, template=TEMPLATE_VERSION, rows=ROWS_VERSION)
    PartStore(tmp_path / "parts", settings).write([{"id": "x"}])
    with pytest.raises(SystemExit) as stop:  # refused before Ray starts
        main(["model=tiny-random", "judge.n=3", "data.path=4", f"output={tmp_path}"])
    assert stop.value.code == 2 and "judge.n: 2 -> 3" in capsys.readouterr().err


def test_part_store_resume_never_duplicates(tmp_path):
    store = PartStore(tmp_path / "parts")
    rows = [{"id": f"i{k}", "judgments": [{"verdict": k % 3 or None, "valid": bool(k % 3)}]} for k in range(9)]
    store.write(rows[:4])
    # a crash here; the re-run skips what was written and does the rest
    assert store.done_ids() == {r["id"] for r in rows[:4]}
    todo = [r for r in rows if r["id"] not in store.done_ids()]
    store.write(todo)
    store.write(rows[2:3])  # even a part written twice (a retried batch) is read back once
    assert store.read_all() == sorted(rows, key=lambda r: r["id"])  # nested values come back as they went in
    assert not list((tmp_path / "parts").glob(".*.tmp"))
