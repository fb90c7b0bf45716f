"""Shared fixtures. Unit tests (tests/unit) need no model; tests/model builds `tiny-random` once."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never need the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# model.engine=auto means the HF engine in tests (Ray workers inherit it); the vLLM engine's tests ask for it by name.
os.environ["REFLECTRM_ENGINE"] = "hf"


@pytest.fixture(scope="session")
def tiny_engine():
    from reflectrm.config import ModelConfig
    from reflectrm.engines.hf import HFEngine

    return HFEngine.from_config(ModelConfig(name="tiny-random"))
