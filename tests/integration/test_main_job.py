"""The README's main job at smoke size on the tiny model: every stage runs on local Ray, and the
table, summary and PNGs come out."""

from __future__ import annotations

import json

import pytest

from jobs.common import parse_job_config
from jobs.main import BUILD_SEED, EVAL_SEED, TRAIN_SEED, MainConfig, main
from reflectrm.experiment import heldout_pairs
from reflectrm.training.warm_start import warm_start_pairs

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


def test_heldout_pairs_never_appear_in_training():
    cfg = parse_job_config(MainConfig, ["--config", "jobs/configs/main.yaml"], "")
    pairs, dropped = heldout_pairs(
        cfg.eval.pairs, EVAL_SEED, {TRAIN_SEED: warm_start_pairs(cfg.warmstart.steps), BUILD_SEED: cfg.build.pairs}
    )
    assert len(pairs) + dropped == cfg.eval.pairs and len(pairs) >= cfg.eval.pairs - 2


def test_main_job_smoke(ray_local, tmp_path, capsys):
    summary = main(["--config", "jobs/configs/main_smoke.yaml", f"output={tmp_path}"])
    printed = capsys.readouterr().out
    assert "both-order acc" in printed and "McNemar p" in printed and "says Response 1" in printed and "->" in printed
    assert list(summary["seconds"]) == [
        "evaluate before",
        "warm start (sft)",
        "build_data",
        "grpo",
        "evaluate after",
    ]  # every stage ran, in order
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert [(r["dataset"], r["method"]) for r in saved["results"]] == [
        ("synthetic", m) for m in ("greedy", "majority", "reflect")
    ]
    for r in saved["results"]:
        for key in ("accuracy", "consistency", "position_preference", "valid_judgment_rate"):
            assert all(v is None or 0 <= v <= 1 for v in r[key].values())
        lo, hi = r["accuracy_ci"]["after"]  # Wilson: never a point
        assert lo < hi and lo <= r["accuracy"]["after"] <= hi
        assert r["label_shares"] == {"1": 0.5, "2": 0.5}  # 4 held-out pairs, label-balanced
        p = r["paired"]
        assert p["pairs"] == 4 and 0 <= p["mcnemar_p"] <= 1
        assert p["difference"] == pytest.approx(r["accuracy"]["after"] - r["accuracy"]["before"])
    assert saved["grpo"]["steps"] == 1
    after = json.loads((tmp_path / "eval_after" / "results.json").read_text())
    assert after["model"] == str(tmp_path / "grpo" / "final")  # the second evaluation judged the trained export
    for png in ("before_after.png", "training_curves.png"):
        assert (tmp_path / png).stat().st_size > 1000
