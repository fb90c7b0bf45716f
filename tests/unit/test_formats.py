"""Loaders: the real files in ../shared/data (counts, balance, ties, coercions) and small fixtures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from reflectrm.data.codec import write_pairs
from reflectrm.data.files import BadRowError, EmptyDatasetError
from reflectrm.data.formats import load_pairs, parse_dataset_spec
from reflectrm.data.synthetic import CHECKS, complies, synthetic_pairs

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside this checkout")


@needs_shared
@pytest.mark.parametrize(
    "fmt, file, pairs, label1, ties",
    [
        ("judgebench", "judgebench/judgebench_gpt-4o-2024-05-13.jsonl", 350, 193, 0),
        ("judgebench", "judgebench/judgebench_claude-3-5-sonnet-20240620.jsonl", 270, 143, 0),
        ("llmbar", "llmbar/natural.json", 100, None, 0),
        ("llmbar", "llmbar/adversarial_neighbor.json", 134, None, 0),
        ("llmbar", "llmbar/adversarial_gptinst.json", 92, None, 0),
        ("llmbar", "llmbar/adversarial_gptout.json", 47, None, 0),
        ("llmbar", "llmbar/adversarial_manual.json", 46, None, 0),
        ("mtbench-human", "llmbar/processed_mt-bench_human.json", 200, 101, 0),
        ("pandalm", "pandalm/testset-v1.json", 894, 422, 105),
    ],
)
def test_real_files(fmt, file, pairs, label1, ties):
    got, stats = load_pairs(fmt, SHARED / file)
    assert len(got) == stats.pairs == pairs and stats.ties_dropped == ties and stats.bad_rows == 0
    assert all(p.label in (1, 2) and p.context[-1].role == "user" and p.query for p in got)
    assert len({p.id for p in got}) == pairs  # ids are unique
    if label1 is not None:
        assert Counter(p.label for p in got)[1] == label1


@needs_shared
def test_judgebench_categories_and_pandalm_coercion():
    jb, _ = load_pairs("judgebench", SHARED / "judgebench/judgebench_gpt-4o-2024-05-13.jsonl")
    assert set(p.subset for p in jb) == {"knowledge", "reasoning", "math", "coding"}
    pl, _ = load_pairs("pandalm", SHARED / "pandalm/testset-v1.json")
    by_id = {p.id: p for p in pl}
    assert by_id["158"].response_1 == "True"  # a JSON boolean in the file, coerced with str()
    assert all(isinstance(p.response_1, str) and isinstance(p.response_2, str) for p in pl)
    assert by_id["466"].context[0].content == "Truthfulness"  # the row with a blank instruction


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_helpsteer3_fixture(tmp_path):
    rows = [
        {
            "context": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "and?"},
            ],
            "response1": "a",
            "response2": "b",
            "overall_preference": -2,
            "domain": "general",
        },
        {"context": [{"role": "user", "content": "q"}], "response1": "a", "response2": "b", "overall_preference": 3},
        {"context": [{"role": "user", "content": "q"}], "response1": "a", "response2": "b", "overall_preference": 0},
    ]
    pairs, stats = load_pairs("helpsteer3", write_jsonl(tmp_path / "hs3.jsonl", rows))
    assert [p.label for p in pairs] == [1, 2] and stats.ties_dropped == 1
    assert pairs[0].query == "and?" and len(pairs[0].context) == 3 and pairs[0].subset == "general"


def test_helpsteer3_preference_jsonl_gz_and_the_hub_config(tmp_path, monkeypatch):
    """HelpSteer3-Preference ships preference/train.jsonl.gz; the hub id reads its `preference` config."""
    import gzip

    import datasets

    row = {"context": [{"role": "user", "content": "q"}], "response1": "a", "response2": "b", "overall_preference": 1}
    path = tmp_path / "train.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n" + json.dumps({**row, "overall_preference": -1}) + "\n")
    pairs, _ = load_pairs("helpsteer3", path)
    assert [p.label for p in pairs] == [2, 1]
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: asked.append((a, kw)) or [row])
    pairs, _ = load_pairs("helpsteer3", "nvidia/HelpSteer3", split="validation")
    assert asked == [(("nvidia/HelpSteer3", "preference"), {"split": "validation"})] and pairs[0].label == 2


def test_chosen_rejected_strings_and_message_lists(tmp_path):
    rows = [
        {"id": f"s{i}", "prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(40)
    ]
    rows.append(
        {
            "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}],
        }
    )
    src = write_jsonl(tmp_path / "cr.jsonl", rows)
    pairs, _ = load_pairs("chosen-rejected", src)
    for p in pairs:
        good = p.response_1 if p.label == 1 else p.response_2
        assert good.startswith("good")
    labels = Counter(p.label for p in pairs)
    assert 10 <= labels[1] <= 31 and labels[1] + labels[2] == 41  # about half each
    assert [p.label for p in load_pairs("chosen-rejected", src)[0]] == [p.label for p in pairs]  # reproducible
    assert [p.label for p in load_pairs("chosen-rejected", src, seed=1)[0]] != [p.label for p in pairs]
    assert pairs[-1].context[0].content == "q" and pairs[-1].query == "q"


def test_parquet_and_canonical_round_trip(tmp_path):
    pairs = synthetic_pairs(30, seed=4)
    for name in ("s.parquet", "s.jsonl"):
        write_pairs(pairs, tmp_path / name)
        back, _ = load_pairs("canonical", tmp_path / name)
        assert back == pairs


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"prompt": "q", "chosen": "a"}], "row 1: field 'rejected' is missing"),
        (
            [
                {"prompt": "q", "chosen": "a", "rejected": "b"},
                {"prompt": "", "chosen": [{"role": "user", "content": "x"}], "rejected": "b"},
            ],
            "row 2: field 'chosen' as a message list must end with an assistant message",
        ),
        ([{"prompt": 5, "chosen": "a", "rejected": "b"}], "row 1: field 'prompt' must be a string or a list"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, rows, message):
    src = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(BadRowError) as err:
        load_pairs("chosen-rejected", src)
    assert str(src) in str(err.value) and message in str(err.value)


def test_skip_counts_bad_rows_and_empty_is_an_error(tmp_path):
    rows = [
        {"input": "q", "output_1": "a", "output_2": "b", "label": 1},
        {"input": "q", "output_1": "a", "output_2": "b", "label": 3},
    ]
    src = tmp_path / "l.json"
    src.write_text(json.dumps(rows))
    with pytest.raises(BadRowError, match="row 2: field 'label' must be 1 or 2"):
        load_pairs("llmbar", src)
    pairs, stats = load_pairs("llmbar", src, on_bad_row="skip")
    assert len(pairs) == 1 and stats.bad_rows == 1
    src.write_text(json.dumps(rows[1:]))
    with pytest.raises(EmptyDatasetError, match="gave no pairs"):
        load_pairs("llmbar", src, on_bad_row="skip")


def test_unknown_format_and_missing_source(tmp_path):
    with pytest.raises(ValueError, match="valid formats: helpsteer3"):
        load_pairs("csv", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pairs("llmbar", tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="no network"):
        load_pairs("helpsteer3", "nobody/no-such-dataset")
    assert parse_dataset_spec("llmbar:/a/b.json") == ("llmbar", "/a/b.json")
    with pytest.raises(ValueError, match="FORMAT:PATH"):
        parse_dataset_spec("/a/b.json")


def test_synthetic_set_is_verified_balanced_and_deterministic():
    pairs = synthetic_pairs(900, seed=0)
    assert pairs == synthetic_pairs(900, seed=0) and pairs != synthetic_pairs(900, seed=1)
    assert {p.metadata["category"] for p in pairs} == set(CHECKS)
    assert {p.subset.split("/")[1] for p in pairs} == {"easy", "hard"}
    assert 400 < Counter(p.label for p in pairs)[1] < 500
    for p in pairs:  # the gold label is what the checker says, for every pair
        m = p.metadata
        good, bad = (p.response_1, p.response_2) if p.label == 1 else (p.response_2, p.response_1)
        assert complies(m["category"], m["params"], good) and not complies(m["category"], m["params"], bad)
