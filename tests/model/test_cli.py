"""`reflectrm judge` end to end on the tiny model, and its one-line errors (exit code 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reflectrm.cli import main

BASE = ["judge", "--model", "tiny-random", "--max-new-tokens", "8", "--n", "3"]


def test_judge_json_has_the_documented_fields(capsys):
    assert main(BASE + ["--prompt", "Say hi", "--response-1", "hi", "--response-2", "bye", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "reflect" and out["preferred"] in (1, 2, None) and 0.0 <= out["score"] <= 1.0
    assert len(out["judgments"]) == 3
    assert {"analysis", "verdict", "confidence", "valid"} <= set(out["judgments"][0])
    assert {"prompt_tokens", "completion_tokens"} == set(out["usage"]) and out["usage"]["completion_tokens"] > 0
    assert "anchor" in out and "reflections" in out and "stage2_skipped" in out


def test_judge_file_of_pairs(tmp_path, capsys):
    rows = [{"prompt": "q1", "response_1": "a", "response_2": "b"}, {"messages": [{"role": "user", "content": "q2"}], "response_1": "c", "response_2": "d", "id": "x"}]
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows))
    dst = tmp_path / "out.jsonl"
    assert main(BASE + ["--mode", "majority", "--input", str(src), "--output", str(dst)]) == 0
    lines = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["1", "x"] and all(r["mode"] == "majority" for r in lines)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "q", "--response-1", "a"], "--response-1 and --response-2 are required"),
        (["--response-1", "a", "--response-2", "b"], "exactly one of --prompt or --messages"),
        (["--prompt", "q", "--messages", "[]", "--response-1", "a", "--response-2", "b"], "exactly one of"),
        (["--messages", "{oops", "--response-1", "a", "--response-2", "b"], "--messages is not valid JSON"),
        (["--messages", '[{"role": "robot", "content": "x"}]', "--response-1", "a", "--response-2", "b"], "role 'robot'"),
        (["--prompt", " ", "--response-1", "a", "--response-2", "b"], "--prompt must not be empty"),
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
        (["--mode", "vote"], "invalid choice: 'vote'"),
        (["--n", "0"], "must be at least 1"),
        (["--max-new-tokens", "x"], "is not an integer"),
        (["serve", "--port", "0"], "must be at least 1"),  # rejected before any Ray starts
        (["serve", "--n", "x"], "is not an integer"),
    ],
)
def test_argparse_errors_are_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args if args[0] == "serve" else ["judge", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_bad_input_rows_name_line_and_field(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"prompt": "q", "response_1": "a", "response_2": "b"}) + "\n" + json.dumps({"prompt": "q", "response_1": "a"}))
    assert main(["judge", "--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "row 2: field 'response_2' is missing" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "reflectrm.cli", "models", "list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "tiny-random" in out.stdout and "smollm2-135m-instruct" in out.stdout


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
