"""Choosing the engine (model.engine=auto|hf|vllm) and the vLLM settings, without loading anything."""

from __future__ import annotations

import pytest

from reflectrm.config import ConfigError, ModelConfig, VLLMConfig, load_config
from reflectrm.engines import resolve_engine
from reflectrm.engines.vllm import configure_cpu_env, core_ranges, vllm_available


def test_auto_follows_the_environment_then_what_is_installed(monkeypatch):
    monkeypatch.setenv("REFLECTRM_ENGINE", "vllm")
    assert resolve_engine("auto") == "vllm" and resolve_engine("hf") == "hf"
    monkeypatch.setenv("REFLECTRM_ENGINE", "tgi")
    with pytest.raises(ConfigError, match="valid values are hf and vllm"):
        resolve_engine("auto")
    monkeypatch.delenv("REFLECTRM_ENGINE")
    assert resolve_engine("auto") == ("vllm" if vllm_available() else "hf")


def test_vllm_settings_from_dotted_overrides_and_their_errors():
    cfg = load_config(ModelConfig, None, ["engine=vllm", "vllm.kv_cache_gib=8", "vllm.cpu_threads=0-3,6"])
    assert cfg.engine == "vllm" and cfg.vllm == VLLMConfig(kv_cache_gib=8, cpu_threads="0-3,6")
    with pytest.raises(ConfigError, match="engine='tgi': valid options are auto, hf, vllm"):
        load_config(ModelConfig, None, ["engine=tgi"])
    with pytest.raises(ConfigError, match="cpu_threads='all'"):
        load_config(ModelConfig, None, ["vllm.cpu_threads=all"])
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        load_config(ModelConfig, None, ["vllm.gpu_memory_utilization=1.5"])


def test_core_ranges_and_the_cpu_environment(monkeypatch):
    assert core_ranges([0, 1]) == "0-1" and core_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and core_ranges([3]) == "3"
    for key in (
        "VLLM_CPU_KVCACHE_SPACE",
        "VLLM_CPU_OMP_THREADS_BIND",
        "VLLM_CPU_NUM_OF_RESERVED_CPU",
        "VLLM_ENABLE_V1_MULTIPROCESSING",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "2")  # what the user exported wins
    env = configure_cpu_env(VLLMConfig(kv_cache_gib=4, cpu_threads="0-1"))
    assert env == {
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": "0-1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "1",
    }


def test_vllm_engine_without_vllm_says_how_to_install(monkeypatch):
    import reflectrm.engines.vllm as mod

    monkeypatch.setattr(mod, "vllm_available", lambda: False)
    with pytest.raises(ImportError, match="make vllm"):
        mod.VLLMEngine.from_config(ModelConfig(name="tiny-random", engine="vllm"))
