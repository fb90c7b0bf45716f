"""The data path around training (issue 20's bugs), on the scripted engine: over-long items are skipped
and counted, the mix never rounds to nothing, a resume never mixes settings, both orders draw their
own seeds, the short-cut's rate is reported apart from no-verdict pairs and errors, RFT trains on the
mix's own preference items, and a trained model is never evaluated below its training budget."""

from __future__ import annotations

import json

import pytest

from reflectrm.config import ConfigError, JudgeConfig, ModelConfig, PromptConfig, result_settings
from reflectrm.data.loaders import pair_to_row, write_rows
from reflectrm.data.reflection import PartStore, SettingsMismatch, build_sets, sample_and_grade
from reflectrm.engines.fake import FakeEngine
from reflectrm.evaluation import check_budget
from reflectrm.inference import Judge
from reflectrm.records import JudgeResult, Judgment, Message, PreferencePair, Reflection
from reflectrm.scoring import make_item, result_row, stage2_rates
from reflectrm.training.data import TrainDataConfig, TrainingDataError, load_rows
from tests.helpers import judgment

# --------------------------------------------------------------------------- 1. over-long items


def pair(pid: str, prompt: str = "Say hi.", r1: str = "hi", r2: str = "HI", label: int = 1) -> PreferencePair:
    return PreferencePair(pid, (Message("user", prompt),), r1, r2, label)


def test_build_data_skips_and_counts_over_long_items_instead_of_crashing():
    cfg = JudgeConfig(n=4, max_new_tokens=64)
    engine = FakeEngine(lambda req, k: judgment(1 if k % 2 else 2))
    short = pair("short")
    fits = engine.count_tokens(engine_prompt(short))
    engine.max_prompt_tokens = fits + 200  # the judge prompt fits; a reflection prompt adds 2 x 64 + its frame
    long_judge = pair("long-judge", prompt="word " * 400)
    # the judge prompt fits, but two analyses at the 64-token budget push the reflection prompt over
    long_reflection = pair("long-reflection", r1="w " * 60, r2="w " * 60)
    rows = {r["id"]: r for r in sample_and_grade(engine, [short, long_judge, long_reflection], cfg)}
    assert rows["short"]["too_long"] == "" and rows["short"]["n"] == 4
    assert rows["long-judge"]["too_long"] == "judge" and rows["long-judge"]["n"] == 0
    assert rows["long-reflection"]["too_long"] == "reflection" and rows["long-reflection"]["n"] == 0
    pref, refl, mix, counts = build_sets(rows.values(), "4:1")
    assert counts.too_long == 2 and counts.items == 3
    assert {r["id"] for r in pref} == {"pref:short"} and {r["id"] for r in refl} == {"refl:short"}


def engine_prompt(p: PreferencePair):
    from reflectrm.prompts import response_prompt

    return response_prompt(p)


def test_without_a_limit_nothing_is_skipped():
    engine = FakeEngine(lambda req, k: judgment(1))
    (row,) = sample_and_grade(engine, [pair("x", prompt="word " * 400)], JudgeConfig(n=2))
    assert row["too_long"] == "" and row["n"] == 2


# --------------------------------------------------------------------------- 2. the mix


def graded(pid: str, verdicts: list[int]) -> dict:
    p = pair(pid)
    gs = [
        {"analysis": f"a{k}", "verdict": v, "valid": True, "correct": v == 1, "confidence": -1.0, "tokens": 3}
        for k, v in enumerate(verdicts)
    ]
    return {"id": pid, "pair": json.dumps(pair_to_row(p)), "judgments": json.dumps(gs)}


def test_no_reflection_items_the_mix_is_the_preference_items_and_says_so():
    rows = [graded(f"w{i}", [2, 2]) for i in range(3)]  # all wrong: preference items, nothing to pair
    pref, refl, mix, c = build_sets(rows, "4:1")
    assert (len(pref), len(refl), len(mix)) == (3, 0, 3) and "preference items only" in c.note


def test_fewer_preference_items_than_the_ratio_keeps_one_of_each():
    rows = [graded("m0", [1, 2]), graded("w0", [2, 2]), graded("w1", [2, 2])]  # 3 preference, 1 reflection
    _, _, mix, c = build_sets(rows, "4:1")
    tasks = [r["task"] for r in mix]
    assert tasks.count("critique") == 1 and tasks.count("response") == 3 and "not 4:1" in c.note
    _, _, mix, c = build_sets([graded("m0", [1, 2])], "4:1")  # one item, both kinds
    assert sorted(r["task"] for r in mix) == ["critique", "response"]


def test_train_on_an_empty_mix_says_the_file_is_empty(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "mix.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.string())}), path)
    with pytest.raises(TrainingDataError, match="is empty"):
        load_rows("grpo", TrainDataConfig(format="mix", path=str(path)), seed=0)


# --------------------------------------------------------------------------- 3. resume fingerprints


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

    cfg = ScoreConfig(model=ModelConfig(name="tiny-random"), judge=JudgeConfig(n=2))
    model = ModelConfig(name="tiny-random", engine=resolve_engine("auto"))
    PartStore(tmp_path / "parts", result_settings(model, cfg.judge, cfg.prompt, template=TEMPLATE_VERSION)).write(
        [{"id": "x"}]
    )
    with pytest.raises(SystemExit) as stop:  # refused before Ray starts
        main(["model=tiny-random", "judge.n=3", "data.path=4", f"output={tmp_path}"])
    assert stop.value.code == 2 and "judge.n: 2 -> 3" in capsys.readouterr().err


# --------------------------------------------------------------------------- 4. seeds per order


def test_both_orders_draw_their_own_seeds():
    engine = FakeEngine(lambda req, k: judgment(1))
    p = pair("p", r1="alpha", r2="beta")
    Judge(engine, JudgeConfig(n=2)).judge([p, p.swapped()], "majority")
    given, swapped = (r.params.seed for r in engine.calls[0])
    assert given != swapped
    Judge(engine, JudgeConfig(n=2)).judge([p], "majority")
    assert engine.calls[-1][0].params.seed == given  # and each order's seed is still reproducible


# --------------------------------------------------------------------------- 5. the short-cut's rate


def test_unanimity_rate_leaves_out_no_valid_pairs_and_errors():
    item = make_item("k", pair("p"), "reflect")
    valid = Judgment("t", "a", 1, -1.0, 3, "stop")
    invalid = Judgment("t", None, None, float("-inf"), 3, "length")
    ran = Reflection(1, 1, True, True, "t", 3)
    rows = [
        result_row(item, JudgeResult(1, "reflect", 1.0, (valid, valid), anchor=0, stage2_skipped=True)),
        result_row(item, JudgeResult(None, "reflect", 0.5, (invalid, invalid), stage2_skipped=True)),
        result_row(item, None, error="prompt has 5000 tokens; the limit is 4096"),
        result_row(item, JudgeResult(1, "reflect", 1.0, (valid, valid), anchor=0, reflections=(ran,))),
    ]
    assert [r["stage2_outcome"] for r in rows] == ["unanimous", "no_valid", "error", "ran"]
    assert stage2_rates(rows) == {
        "stage2_ran_rate": 0.25,
        "stage2_unanimous_rate": 0.25,
        "stage2_no_valid_rate": 0.25,
        "stage2_error_rate": 0.25,
    }


# --------------------------------------------------------------------------- 6. RFT's items


def test_rft_trains_on_the_mix_preference_items_only(tmp_path):
    from tests.helpers import write_toy_mix

    path = tmp_path / "mix.parquet"
    write_toy_mix(path, 6)
    grpo, _, _ = load_rows("grpo", TrainDataConfig(format="mix", path=str(path), held_out=0), seed=0)
    rft, _, notes = load_rows("rft", TrainDataConfig(format="mix", path=str(path), held_out=0), seed=0)
    assert {r["id"] for r in rft} == {r["id"] for r in grpo if r["task"] == "response"} and not notes
    pref = tmp_path / "pref.parquet"
    write_rows([r for r in grpo if r["task"] == "response"], pref)
    _, _, notes = load_rows("rft", TrainDataConfig(format="mix", path=str(pref), held_out=0), seed=0)
    assert any("mix.parquet" in n for n in notes)


# --------------------------------------------------------------------------- 7. one budget


def test_a_trained_model_is_never_evaluated_below_its_training_budget(tmp_path):
    (tmp_path / "training.json").write_text(json.dumps({"recipe": "grpo", "max_new_tokens": 96}))
    check_budget(str(tmp_path), 96)
    check_budget(str(tmp_path), 256)
    check_budget("tiny-random", 8)  # an alias or a base model has no record
    with pytest.raises(ValueError, match=r"judge\.max_new_tokens=96 or more"):
        check_budget(str(tmp_path), 64)


def test_main_job_uses_one_budget_everywhere():
    from jobs.main_config import BuildSection, GrpoSection, MainConfig

    cfg = MainConfig(max_new_tokens=48).budgets()
    assert cfg.judge.max_new_tokens == cfg.build.max_new_tokens == cfg.grpo.max_new_tokens == 48
    with pytest.raises(ConfigError, match="set max_new_tokens=N once"):
        MainConfig(build=BuildSection(max_new_tokens=96), grpo=GrpoSection(max_new_tokens=128))
    with pytest.raises(ConfigError, match="never evaluated below"):
        MainConfig(judge=JudgeConfig(max_new_tokens=64), build=BuildSection(max_new_tokens=96))


# --------------------------------------------------------------------------- 8. the Qwen3 preset


def test_qwen3_paper_config_and_the_thinking_switch():
    from jobs.common import parse_job_config
    from jobs.ray_training import TrainConfig
    from reflectrm.models import load_tokenizer, render_chat, resolve_model

    cfg = parse_job_config(TrainConfig, ["--config", "jobs/configs/paper_qwen3_4b.yaml"], "")
    assert cfg.model.enable_thinking is False and cfg.prompt.suffix == "/no_think"
    assert (cfg.grpo.n, cfg.grpo.max_new_tokens, cfg.grpo.kl_coef, cfg.grpo.clip, cfg.optim.lr, cfg.epochs) == (
        8,
        1024,
        0.001,
        0.2,
        1e-6,
        3,
    )
    assert cfg.trainer.num_workers * cfg.trainer.prompts_per_worker == 64
    tok = load_tokenizer(resolve_model("tiny-random"))
    tok.chat_template = (  # Qwen3's switch, reduced to what matters here
        "{% for m in messages %}{{ m.content }}{% endfor %}"
        "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
    )
    messages = (Message("user", "hi"),)
    assert render_chat(tok, messages, False).endswith("<think></think>")
    assert "<think>" not in render_chat(tok, messages)  # None: the template's own default


# --------------------------------------------------------------------------- 10. the paper's ablations


def ablation_script(request, k):
    from tests.helpers import critique, is_stage2

    if is_stage2(request):
        return critique(1)
    return judgment([1, 2, 2, 1, 2, 1][k], f"analysis {k}", [-0.1 if k == 0 else -1.0] * 12)


def test_ablations_share_reflects_stage1_and_change_only_the_anchor_or_the_winners():
    from reflectrm.evaluation import run_modes, source_of
    from reflectrm.inference import Steps
    from reflectrm.scoring import run_both

    ps = [pair(f"p{i}", prompt=f"Question {i}?") for i in range(12)]
    steps = Steps(JudgeConfig(n=6, stage2="full", seed=5))
    rows = {}
    for mode in ("reflect", "random_anchor", "random_winners"):
        engine = FakeEngine(ablation_script)
        rows[mode] = (run_both(engine, steps, [make_item(p.id, p, mode) for p in ps]), engine)
    traces = {m: [json.loads(r["trace"]) for r in rs] for m, (rs, _) in rows.items()}
    for m in ("random_anchor", "random_winners"):  # the same stage-1 samples as reflect's
        assert [[j["text"] for j in t["judgments"]] for t in traces[m]] == [
            [j["text"] for j in t["judgments"]] for t in traces["reflect"]
        ]
    assert all(t["anchor"] == 0 for t in traces["reflect"])  # judgment 0 is the most confident
    assert len({t["anchor"] for t in traces["random_anchor"]}) > 1  # drawn among the valid ones, per pair
    calls = rows["random_winners"][1].calls
    assert len(calls) == 1 and len(calls[0]) == 12  # stage 1 only: coin flips, no reflection call
    assert len(rows["random_anchor"][1].calls) == 2  # stage 1, then reflections against the random anchor
    flips = [[r["better_than_anchor"] for r in t["reflections"]] for t in traces["random_winners"]]
    assert all(len(f) == 5 for f in flips) and len({tuple(f) for f in flips}) > 1
    again = run_both(FakeEngine(ablation_script), steps, [make_item(p.id, p, "random_winners") for p in ps])
    assert [r["preferred"] for r in again] == [r["preferred"] for r in rows["random_winners"][0]]  # seeded
    assert run_modes(["greedy", "reflect", "random_anchor"]) == ["greedy", "reflect", "random_anchor"]
    assert source_of("random_winners", ["reflect", "random_winners"]) == ("random_winners", "preferred")


# --------------------------------------------------------------------------- the warm start teaches both tasks


def test_synthetic_sft_rows_teach_both_tasks_4_to_1():
    from reflectrm.data.reflection import training_messages
    from reflectrm.parsing import parse_output

    train, _, _ = load_rows("sft", TrainDataConfig(format="synthetic", path="20", held_out=0), seed=0)
    tasks = [r["task"] for r in train]
    assert tasks.count("critique") == 4 and tasks.count("response") == 16
    for r in train:
        parsed = parse_output(r["target"], r["task"])
        assert parsed.verdict == r["label"]  # every target is valid and right
        prompt = training_messages(r)[-1].content
        assert ("## Critiques for Judgment" in prompt) == (r["task"] == "critique")
    labels = [r["label"] for r in train if r["task"] == "critique"]
    assert set(labels) <= {1, 2}


def test_the_training_order_spreads_the_tasks_evenly():
    """The mix's ratio holds in every prefix of the training order (a short run, or one step of a long one,
    trains on both tasks as the mix says), each task in its own seeded random order."""
    from reflectrm.training.data import interleave

    rows = [{"id": f"p{i}", "task": "response"} for i in range(16)] + [
        {"id": f"c{i}", "task": "critique"} for i in range(4)
    ]
    order = interleave(rows, seed=3)
    assert sorted(r["id"] for r in order) == sorted(r["id"] for r in rows)
    tasks = [r["task"] for r in order]
    for k in range(1, len(tasks) + 1):  # 4:1 -> after k rows, k/5 critique items, give or take one
        assert abs(tasks[:k].count("critique") - k / 5) <= 1, tasks
    assert "critique" in tasks[:5]  # the first five rows already hold one
    assert interleave(rows, seed=3) == order and [r["id"] for r in interleave(rows, seed=4)] != [r["id"] for r in order]
    only = [{"id": str(i), "task": "response"} for i in range(5)]
    assert sorted(r["id"] for r in interleave(only, seed=0)) == [r["id"] for r in only]  # no critique items: RFT
