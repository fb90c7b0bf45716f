"""Every real client against the live service (Ray Serve over real HTTP, tiny-random), each request
replayed as that client sends it (../shared/docs/protocols.md), and what that client then reads checked:
the openai SDK (JudgeBench's and RewardBench's requests, stream, logprobs, completions), OpenRLHF (URL
mode, and file mode loaded the way OpenRLHF loads it, auth off and on), verl (sync, async, batch; gsm8k-
and math-style extra_info; and verl 0.9.1's own config and reward loop in its environment), TRL (sync and async,
with a failing row), and group-wise rewards (/v1/rank, /get_reward groups). The auth-and-groups test runs on its own app beside the module's (a fixture)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from reflectrm.models import load_tokenizer, render_chat, resolve_model
from reflectrm.records import Message
from tests.integration.conftest import SERVE_ARGS, free_port, serve_app, variant

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
JUDGE_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user prompt displayed below. Output your final verdict as [[A]] or [[B]].\n\n<|User Prompt|>\nWhat is "
    "2 + 2?\n\n<|The Start of Assistant A's Answer|>\n4\n<|The End of Assistant A's Answer|>\n\n<|The Start of "
    "Assistant B's Answer|>\n5\n<|The End of Assistant B's Answer|>"
)


@pytest.fixture(scope="module")
def url(ray_local):
    yield from serve_app(ray_local)


def openrlhf_sample(prompt: str, response: str) -> tuple[str, str]:
    """OpenRLHF 0.11's (query, prompt): the templated prompt, and it + the response + end of turn, decoded
    with special tokens (SingleTurnAgentExecutor)."""
    tok = load_tokenizer(resolve_model("tiny-random"))
    templated = render_chat(tok, (Message("user", prompt),))
    return templated + response + tok.eos_token, templated


def load_openrlhf_file():
    """As OpenRLHF loads `--reward.remote_url path.py`: spec_from_file_location("reward_func", path)."""
    spec = importlib.util.spec_from_file_location("reward_func", ROOT / "reflectrm" / "integrations" / "openrlhf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def openrlhf_via_func(reward_func, samples):
    """OpenRLHF's _fetch_rewards_via_func, once per sample as its executor calls it, all samples at once."""
    return await asyncio.gather(*(asyncio.to_thread(reward_func, [q], [p], [lab]) for q, p, lab in samples))


async def openrlhf_via_http(endpoint, sample):
    """OpenRLHF's _fetch_rewards_via_http for one sample: aiohttp, no headers, 180 s, raise_for_status."""
    import aiohttp

    q, p, lab = sample
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
        async with session.post(endpoint, json={"query": [q], "prompts": [p], "labels": [lab]}) as response:
            response.raise_for_status()
            return await response.json()


def openrlhf_reads(info: dict) -> tuple:
    """What OpenRLHF keeps of one sample's answer (SingleTurnAgentExecutor.execute)."""
    return info.get("rewards"), info.get("scores") or info.get("rewards"), info.get("extra_logs") or {}


# --------------------------------------------------------------------------- the openai SDK


def test_openai_sdk_judgebench_and_rewardbench_requests_are_clamped_not_refused(url):
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="EMPTY")  # JudgeBench: key "EMPTY", any model name
    messages = [{"role": "system", "content": "You are a helpful judge."}, {"role": "user", "content": JUDGE_PROMPT}]
    jb = client.chat.completions.create(model="my-judge", messages=messages, temperature=0, max_tokens=4096)
    rb = client.chat.completions.create(model="gpt-4", messages=messages, temperature=0, max_tokens=2048, n=1)
    for out, asked in ((jb, 4096), (rb, 2048)):
        choice = out.choices[0]
        assert isinstance(choice.message.content, str) and choice.finish_reason in ("stop", "length")
        assert 0 < out.usage.completion_tokens <= SERVE_ARGS["max_new_tokens_cap"]
        assert f"max_tokens={asked} was clamped" in out.model_extra["warnings"][0]
        if out.usage.completion_tokens == SERVE_ARGS["max_new_tokens_cap"]:
            assert choice.finish_reason == "length"  # the cap bit
    assert jb.model == "my-judge" and jb.choices[0].message.content == rb.choices[0].message.content  # greedy
    dev = client.chat.completions.create(
        model="x",
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=4,
    )
    assert dev.choices[0].message.role == "assistant"


def test_openai_sdk_stream_and_logprobs(url):
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="EMPTY")
    ask = {
        "model": "m",
        "messages": [{"role": "user", "content": "Count to five."}],
        "temperature": 0,
        "max_tokens": 12,
    }
    whole = client.chat.completions.create(**ask, logprobs=True, top_logprobs=3)
    content = whole.choices[0].logprobs.content
    assert len(content) == whole.usage.completion_tokens
    for entry in content:
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert entry.logprob == pytest.approx(tops[0], abs=1e-4)  # greedy: the sampled token is the top one
    assert "".join(e.token for e in content).startswith(whole.choices[0].message.content[:1])
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_openai_sdk_completions(url):
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="EMPTY")
    out = client.completions.create(
        model="any", prompt=["Once upon a time", "The answer is"], max_tokens=5, temperature=0, logprobs=2
    )
    assert [c.index for c in out.choices] == [0, 1] and all(isinstance(c.text, str) for c in out.choices)
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) and all(
        len(t) == 2 for t in lp.top_logprobs
    )
    assert out.usage.completion_tokens <= 10
    stream = client.completions.create(model="any", prompt="Once upon a time", max_tokens=5, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in stream) == out.choices[0].text
    echo = client.completions.create(model="any", prompt="Once upon a time", max_tokens=5, temperature=0, echo=True)
    assert echo.choices[0].text == "Once upon a time" + out.choices[0].text


# --------------------------------------------------------------------------- group-wise rewards


def test_rank_scores_a_group_with_no_reference(url):
    responses = ["Paris.", "London.", "It is Paris, the capital.", "Lyon."]
    body = {"prompt": "What is the capital of France?", "responses": responses, "mode": "majority", "n": 2}
    circ = httpx.post(url + "/v1/rank", json=body, timeout=120).json()
    assert circ["judgments"] == 8 and len(circ["comparisons"]) == 8  # circular: 2G
    assert {(c["response_1"], c["response_2"]) for c in circ["comparisons"]} == {
        (0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 0), (0, 3)
    }  # fmt: skip
    assert len(circ["scores"]) == 4 and all(0 <= s <= 1 for s in circ["scores"])
    assert circ["rewards"] == [pytest.approx(2 * s - 1) for s in circ["scores"]]
    allp = httpx.post(
        url + "/v1/rank", json={**body, "scheme": "all_pairs", "method": "bradley_terry"}, timeout=120
    ).json()
    assert allp["judgments"] == 12 and allp["method"] == "bradley_terry" and len(allp["scores"]) == 4
    for c in circ["comparisons"]:  # each trace is the whole judge result of that ordered pair
        assert c["preferred"] in (None, c["response_1"], c["response_2"]) and "judgments" in c["result"]


# --------------------------------------------------------------------------- verl


def write_verl_parquet(path: Path) -> None:
    """A verl dataset as its math preprocessing writes it: prompt messages, reward_model, extra_info {split, index}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "data_source": "DigitalLearningGmbH/MATH-lighteval",
            "prompt": [{"role": "user", "content": f"What is {i} + {i}? Put the answer in \\boxed{{}}."}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(2 * i)},
            "extra_info": {"split": "train", "index": i},
        }
        for i in range(4)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_verl_sync_async_batch_and_legacy_managers(url, monkeypatch, tmp_path):
    from reflectrm.integrations import verl

    monkeypatch.setenv("REFLECTRM_URL", url)
    data = tmp_path / "train.parquet"
    write_verl_parquet(data)
    monkeypatch.setenv("REFLECTRM_VERL_DATA", str(data))
    gsm8k = {"split": "train", "index": 7, "answer": "2 + 2 = 4 #### 4", "question": "What is 2 + 2?"}
    math = {"split": "train", "index": 2}  # no prompt: read from the parquet by index
    multi = {"prompt": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What is 2 + 2?"},
    ]}  # fmt: skip
    # the reward loop: keyword arguments (+ its own extras)
    for info, truth in ((gsm8k, "4"), (math, "4"), (multi, "4")):
        r = verl.compute_score(data_source="openai/gsm8k", solution_str="4", ground_truth=truth, extra_info=info,
                               reward_router_address=None)  # fmt: skip
        assert r["error"] == "" and -1.0 <= r["score"] <= 1.0 and r["score"] == pytest.approx(2 * r["prob_better"] - 1)
    r = asyncio.run(verl.compute_score_async(data_source="math", solution_str="4", ground_truth="4", extra_info=math))
    assert r["error"] == "" and -1.0 <= r["score"] <= 1.0
    # legacy prime: positional, in a process pool, then float(result[0]); naive: result["score"] and its items
    assert float(verl.compute_score("math", "4", 4, math)[0]) == pytest.approx(r["score"])
    assert set(dict(r)) == {"score", "prob_better", "no_reference", "error"}
    # legacy batch manager: lists in, floats out; rows with no reference ranked within their prompt's group
    scores = verl.compute_score_batch(
        data_sources=["math"] * 5, solution_strs=["4", "5", "4", "four", "3"],
        ground_truths=["4", "4", None, None, None], extra_infos=[math, math, gsm8k, gsm8k, {"split": "x", "index": 99}],
    )  # fmt: skip
    assert len(scores) == 5 and all(isinstance(s, float) and -1.0 <= s <= 1.0 for s in scores)
    assert scores[4] == 0.0  # no prompt to be found: 0.0, never an exception


def test_verl_fails_soft(monkeypatch):
    from reflectrm.integrations import verl

    monkeypatch.setenv("REFLECTRM_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("REFLECTRM_TRIES", "1")
    monkeypatch.delenv("REFLECTRM_VERL_DATA", raising=False)
    down = verl.compute_score("gsm8k", "4", "4", {"question": "What is 2 + 2?"})
    assert down["score"] == 0.0 and "no answer after 1 tries" in down["error"]
    no_prompt = verl.compute_score("math", "4", "4", {"split": "train", "index": 0})
    assert no_prompt["score"] == 0.0 and "REFLECTRM_VERL_DATA" in no_prompt["error"]
    assert verl.compute_score("math", "4", None, {})["no_reference"] == 1.0


# --------------------------------------------------------------------------- TRL


def test_trl_sync_and_async_with_a_failing_row_and_groups(url, monkeypatch):
    from reflectrm.integrations import trl

    monkeypatch.setenv("REFLECTRM_URL", url)
    conv = [{"role": "user", "content": "Say hi."}]
    # GRPOTrainer's call: prompts, completions, completion_ids, every dataset column, trainer_state
    call = {
        "prompts": ["What is 2 + 2?", conv, "What is 3 + 3?", "Name a colour.", "Name a colour.", "Name a colour."],
        "completions": ["4", [{"role": "assistant", "content": "Hi!"}], "word " * 2000, "Red.", "Blue.", "Green."],
        "completion_ids": [[1]] * 6,
        "reference": ["4", "Hello.", "6", None, None, None],
        "difficulty": ["easy"] * 6,
        "trainer_state": None,
    }
    sync = trl.reward_func(**call)
    asynced = asyncio.run(trl.async_reward_func(**call))
    for rewards in (sync, asynced):
        assert len(rewards) == 6 and rewards[2] is None  # over the service's token limit: this row only
        assert all(isinstance(rewards[i], float) and -1.0 <= rewards[i] <= 1.0 for i in (0, 1, 3, 4, 5))
    lone = trl.reward_func(prompts=["Alone?"], completions=["Yes."], reference=[None])
    assert lone == [None]  # a group of one: nothing to compare with


# --------------------------------------------------------------------------- OpenRLHF


def test_openrlhf_url_mode_and_file_mode(url, monkeypatch):
    monkeypatch.setenv("REFLECTRM_URL", url)
    samples = [(*openrlhf_sample(f"What is {i} + {i}?", str(2 * i)), str(2 * i)) for i in range(12)]
    one = asyncio.run(openrlhf_via_http(url + "/get_reward", samples[0]))
    rewards, scores, logs = openrlhf_reads(one)
    assert len(rewards) == len(scores) == 1 and logs["error"] == [0.0] and logs["no_reference"] == [0.0]
    module = load_openrlhf_file()
    answers = asyncio.run(openrlhf_via_func(module.reward_func, samples))
    for info in answers:
        rewards, scores, logs = openrlhf_reads(info)
        assert len(rewards) == 1 and 0 <= scores[0] <= 1 and rewards[0] == pytest.approx(2 * scores[0] - 1)
        assert logs["error"] == [0.0]
    assert module.BATCHER.posts < len(samples)  # 12 calls, fewer POSTs: batched
    monkeypatch.setenv("REFLECTRM_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("REFLECTRM_TRIES", "1")
    down = module.reward_func([samples[0][0]], [samples[0][1]], [samples[0][2]])
    assert down == {"rewards": [0.0], "scores": [0.5], "extra_logs": {"error": [1.0]}}  # fails soft


@pytest.fixture
def groups_url(url, monkeypatch):
    """An app beside the module's with a bearer token required and /get_reward ranking label-less samples in
    groups of 3."""
    monkeypatch.setenv("REFLECTRM_API_TOKEN", "s3cret")  # read where the app is built
    with variant(url, "groups", {**SERVE_ARGS, "reward_groups": {"size": 3, "wait_s": 20}}) as u:
        yield u


def test_with_auth_and_groups_every_client_still_works(groups_url, url, monkeypatch):
    """Every client against a token-protected app that ranks label-less samples in groups."""
    import aiohttp

    from reflectrm.integrations import trl, verl

    plain, url = url, groups_url
    try:
        monkeypatch.setenv("REFLECTRM_URL", url)
        q, p = openrlhf_sample("Name a fruit.", "Apple.")
        with pytest.raises(aiohttp.ClientResponseError) as err:  # URL mode sends no headers: refused
            asyncio.run(openrlhf_via_http(url + "/get_reward", (q, p, "Pear.")))
        assert err.value.status == 401
        module = load_openrlhf_file()  # file mode adds the token
        fruit = [(*openrlhf_sample("Name a fruit.", r), None) for r in ("Apple.", "Pear.", "A plum.")]
        answers = asyncio.run(openrlhf_via_func(module.reward_func, [(q, p, "Pear."), *fruit]))
        assert openrlhf_reads(answers[0])[2]["grouped"] == [0.0]
        for info in answers[1:]:  # no label: ranked against the other two responses to the same prompt
            rewards, scores, logs = openrlhf_reads(info)
            assert logs["grouped"] == [1.0] and logs["no_reference"] == [0.0] and logs["error"] == [0.0]
        assert verl.compute_score("gsm8k", "4", "4", {"question": "What is 2 + 2?"})["error"] == ""
        assert isinstance(trl.reward_func(prompts=["What is 2 + 2?"], completions=["4"], reference=["4"])[0], float)
        monkeypatch.delenv("REFLECTRM_API_TOKEN")
        assert verl.compute_score("gsm8k", "4", "4", {"question": "What is 2 + 2?"})["error"].startswith("ServiceError")
    finally:
        monkeypatch.delenv("REFLECTRM_API_TOKEN", raising=False)
    body = json.loads(httpx.get(plain + "/healthz").text)
    assert body["status"] == "ok"


# --------------------------------------------------------------------------- verl 0.9.1's own code
# docs/serving.md's verl block, read from the doc, composed into verl's trainer config by Hydra as
# verl.trainer.main_ppo does, and scored by verl's reward loop (tests/clients/verl_reward_loop.py), in verl's own
# environment .venv-verl (make clients-env: verl pins transformers < 5.11, we use 5.19).

VERL_PY = ROOT / ".venv-verl" / "bin" / "python"
VERL_FILE = str(ROOT / "reflectrm" / "integrations" / "verl.py")


def doc_block() -> dict:
    """The YAML block under docs/serving.md's "**verl 0.9**" paragraph, as a user copies it."""
    text = (ROOT / "docs" / "serving.md").read_text()
    after = text[text.index("**verl 0.9**") :]
    block = re.search(r"\n\n((?:    .*\n)+)", after).group(1)
    return yaml.safe_load("\n".join(line[4:] for line in block.splitlines()))


def dotted(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        out += dotted(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}={v}"]
    return out


def run_verl(url: str, overrides: list[str]) -> dict:
    assert VERL_PY.is_file(), "verl's environment is missing: make clients-env (make test builds it)"
    env = {**os.environ, "REFLECTRM_URL": url, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [str(VERL_PY), str(ROOT / "tests" / "clients" / "verl_reward_loop.py"), json.dumps(overrides),
         str(resolve_model("tiny-random"))],
        capture_output=True, text=True, env=env, timeout=240, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_doc_block_runs_in_verl_0_9_reward_loop(url):
    block = doc_block()
    assert block["reward"]["custom_reward_function"]["path"] == "/path/to/reflectrm/integrations/verl.py"
    block["reward"]["custom_reward_function"]["path"] = VERL_FILE  # the one line a user edits
    got = run_verl(url, dotted(block))
    assert got["verl"] == "0.9.1" and got["manager"] == "naive" and got["manager_class"] == "NaiveRewardManager"
    with_ref, without = got["results"]
    info = with_ref["reward_extra_info"]
    assert info["error"] == "" and info["no_reference"] == 0.0 and -1.0 <= with_ref["reward_score"] <= 1.0
    assert with_ref["reward_score"] == pytest.approx(2 * info["prob_better"] - 1)  # 2 P(better) - 1, from /v1/judge
    assert without["reward_score"] == 0.0 and without["reward_extra_info"]["no_reference"] == 1.0


def test_verl_0_9_ignores_the_old_top_level_block_and_has_no_batch_manager(url):
    old = run_verl(url, [f"custom_reward_function.path={VERL_FILE}", "custom_reward_function.name=compute_score"])
    assert old == {"error": "verl found no custom reward function in this config"}
    batch = [f"reward.custom_reward_function.path={VERL_FILE}", "reward.reward_manager.name=batch"]
    assert "Unknown reward manager: batch" in run_verl(url, batch)["error"]
