"""`reflectrm judge` end to end on the tiny model, and its one-line errors (exit code 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reflectrm.cli import main

BASE = ["judge", "model=tiny-random", "judge.max_new_tokens=8", "judge.n=3"]


def test_judge_json_has_the_documented_fields(capfd):
    assert main(BASE + ["--prompt", "Say hi", "--response-1", "hi", "--response-2", "bye", "--json"]) == 0
    out = json.loads(capfd.readouterr().out)  # --json writes to file descriptor 1 itself (capfd, not capsys)
    assert out["mode"] == "reflect" and out["preferred"] in (1, 2, None) and 0.0 <= out["score"] <= 1.0
    assert len(out["judgments"]) == 3
    assert {"analysis", "verdict", "confidence", "valid"} <= set(out["judgments"][0])
    assert {"prompt_tokens", "completion_tokens"} == set(out["usage"]) and out["usage"]["completion_tokens"] > 0
    assert "anchor" in out and "reflections" in out and "stage2_skipped" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["judge", "model=tiny-random", "--prompt", "2+2?", "--response-1", "4", "--response-2", "5", "judge.n=4"],
        ["judge", "--prompt", "2+2?", "judge.n=4", "--response-1", "4", "model=tiny-random", "--response-2", "5"],
        ["judge", "--prompt", "2+2?", "--response-1", "4", "--response-2", "5", "model=tiny-random", "judge.n=4"],
    ],
    ids=["before-and-after", "between", "after"],
)
def test_settings_are_accepted_before_between_and_after_the_flags(argv, capfd):
    assert main([*argv, "judge.max_new_tokens=8", "--json"]) == 0
    out = json.loads(capfd.readouterr().out)
    assert len(out["judgments"]) == 4  # judge.n=4 took effect wherever it stood


def test_judge_file_of_pairs(tmp_path, capsys):
    rows = [
        {"prompt": "q1", "response_1": "a", "response_2": "b"},
        {"messages": [{"role": "user", "content": "q2"}], "response_1": "c", "response_2": "d", "id": "x"},
    ]
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows))
    dst = tmp_path / "out.jsonl"
    assert main(BASE + ["judge.mode=majority", "--input", str(src), "--output", str(dst)]) == 0
    lines = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["1", "x"] and all(r["mode"] == "majority" for r in lines)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "q", "--response-1", "a"], "--response-1 and --response-2 are required"),
        (["--response-1", "a", "--response-2", "b"], "exactly one of --prompt or --messages"),
        (["--prompt", "q", "--messages", "[]", "--response-1", "a", "--response-2", "b"], "exactly one of"),
        (["--messages", "{oops", "--response-1", "a", "--response-2", "b"], "--messages is not valid JSON"),
        (
            ["--messages", '[{"role": "robot", "content": "x"}]', "--response-1", "a", "--response-2", "b"],
            "role 'robot'",
        ),
        (["--prompt", " ", "--response-1", "a", "--response-2", "b"], "--prompt: prompt is empty"),
        (["--input", "/nonexistent.jsonl", "--output", "x"], "does not exist"),
        (["--input", "/nonexistent.jsonl"], "--input needs --output"),
        (["--prompt", "q", "--response-1", "a", "--response-2", "b", "--output", "x"], "--output needs --input"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args, message, capsys):
    assert main(["judge", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["judge.mode=vote", "--prompt", "q", "--response-1", "a", "--response-2", "b"],
            "valid options are greedy, majority, reflect",
        ),
        (["judge.n=0", "--prompt", "q", "--response-1", "a", "--response-2", "b"], "must be a positive integer"),
        (["judge.max_new_tokens=x", "--prompt", "q", "--response-1", "a", "--response-2", "b"], "expected an integer"),
        (["judge.nn=3", "--prompt", "q", "--response-1", "a", "--response-2", "b"], "unknown config key judge.nn"),
    ],
)
def test_bad_settings_are_one_line(args, message, capsys):
    assert main(["judge", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["judge", "--n", "3"], "now a dotted override: judge.n=8"),  # a retired flag says what replaced it
        (["judge", "--mode", "majority"], "judge.mode=majority"),
        (["serve", "--port", "0"], "must be at least 1"),  # rejected before any Ray starts
        (["serve", "judge.n=x"], "expected an integer"),
    ],
)
def test_argparse_errors_are_one_line(args, message, capsys):
    from serve.cli import main as console

    with pytest.raises(SystemExit) as exit_:
        if console(args) == 2:
            raise SystemExit(2)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_bad_input_rows_name_line_and_field(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text(
        json.dumps({"prompt": "q", "response_1": "a", "response_2": "b"})
        + "\n"
        + json.dumps({"prompt": "q", "response_1": "a"})
    )
    assert main(["judge", "--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "row 2: field 'response_2' is missing" in capsys.readouterr().err


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "reflectrm"
    out = subprocess.run([str(script), "models", "list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "tiny-random" in out.stdout and "smollm2-135m-instruct" in out.stdout


@pytest.mark.slow
def test_judge_json_on_vllm_is_pure_json():
    """`reflectrm judge --json | jq .` works: vLLM's start-up lines (its engine core is another process)
    go to stderr, stdout holds the one JSON object."""
    pytest.importorskip("vllm")
    script = Path(sys.executable).parent / "reflectrm"
    cmd = [
        str(script),
        "judge",
        "model=tiny-judge",
        "model.engine=vllm",
        "model.vllm.kv_cache_gib=1",
        "judge.n=2",
        "judge.max_new_tokens=16",
        "--prompt",
        "Say hi.",
        "--response-1",
        "hi",
        "--response-2",
        "HELLO",
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env={**os.environ, "REFLECTRM_ENGINE": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)  # the whole stdout parses: nothing else was printed there
    assert len(result["judgments"]) == 2 and result["mode"] == "reflect"
    assert "vLLM" in out.stderr or "vllm" in out.stderr  # the engine's own lines went to stderr, not lost


def test_data_synth_and_inspect(tmp_path, capsys):
    out = tmp_path / "synth.jsonl"
    assert main(["data", "synth", "--n", "40", "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 40
    assert main(["data", "inspect", str(out), "--format", "canonical", "--model", "tiny-random"]) == 0
    printed = capsys.readouterr().out
    assert "40 pairs" in printed and "labels: response 1 better" in printed
    assert "judge prompt" in printed and "word_count/" in printed
    prompt_row = next(line for line in printed.splitlines() if line.startswith("| judge prompt"))
    assert int(prompt_row.split("|")[3]) > 100  # p50 of real token counts, not a placeholder


def test_data_inspect_bad_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "q", "output_1": "a", "output_2": "b", "label": 7}\n')
    assert main(["data", "inspect", str(bad), "--format", "llmbar", "--model", "tiny-random"]) == 2
    err = capsys.readouterr().err.strip()
    assert "row 1: field 'label' must be 1 or 2" in err and "\n" not in err
