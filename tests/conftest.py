"""Shared fixtures. Unit tests (tests/unit) need no model; tests/model builds `tiny-random` once."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never need the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# model.engine=auto means the HF engine in tests (Ray workers inherit it); the vLLM engine's tests ask for it by name.
os.environ["REFLECTRM_ENGINE"] = "hf"


@pytest.fixture(scope="session")
def tiny_judge_vllm():
    """One vLLM engine of `tiny-judge` for every model test that needs one (an engine start costs about 30 s
    on 2 cores). A test that loads other weights into it loads tiny-judge's back before it ends."""
    from reflectrm.config import ModelConfig
    from reflectrm.engines.vllm import vllm_available

    if not vllm_available():
        pytest.skip("vllm is not installed (make setup installs it; VLLM=0 skips it)")
    from reflectrm.engines import load_engine

    engine = load_engine(ModelConfig(name="tiny-judge", engine="vllm", max_prompt_tokens=1024))
    yield engine
    engine.close()  # the engine core process ends here, not at interpreter exit


@pytest.fixture(scope="session")
def tiny_engine():
    from reflectrm.config import ModelConfig
    from reflectrm.engines.hf import HFEngine

    return HFEngine.from_config(ModelConfig(name="tiny-random"))
