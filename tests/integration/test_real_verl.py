"""verl 0.9.1's own code against the live service: docs/serving.md's verl block, read from the doc, composed
into verl's trainer config by Hydra as `verl.trainer.main_ppo` does, and scored by verl's reward loop
(tests/clients/verl_reward_loop.py, run in verl's own environment .venv-verl: verl pins transformers < 5.11,
we use 5.19). The older top-level block, and the `batch` manager, are shown to be what verl 0.9 ignores or
refuses."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from reflectrm.models import resolve_model
from tests.integration.conftest import serve_app

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
VERL_PY = ROOT / ".venv-verl" / "bin" / "python"
VERL_FILE = str(ROOT / "reflectrm" / "integrations" / "verl.py")


@pytest.fixture(scope="module")
def url(ray_local):
    yield from serve_app(ray_local)


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
