"""Generation engines behind one Protocol (base.Engine): hf (the default), vllm (fast; optional
install), fake (scripted, for tests)."""

import os

from reflectrm.engines.base import (
    Completion,
    Engine,
    Generation,
    GenerationRequest,
    PromptTooLongError,
    SamplingParams,
)

__all__ = [
    "Completion",
    "Engine",
    "Generation",
    "GenerationRequest",
    "PromptTooLongError",
    "SamplingParams",
    "load_engine",
    "resolve_engine",
]


def resolve_engine(name: str) -> str:
    """`auto` is $REFLECTRM_ENGINE when set, else vllm where it is installed, else hf."""
    from reflectrm.config import ENGINE_ENV, ConfigError

    if name != "auto":
        return name
    chosen = os.environ.get(ENGINE_ENV, "").strip()
    if chosen:
        if chosen not in ("hf", "vllm"):
            raise ConfigError(f"{ENGINE_ENV}={chosen!r}: valid values are hf and vllm")
        return chosen
    from reflectrm.engines.vllm import vllm_available

    return "vllm" if vllm_available() else "hf"


def load_engine(model_cfg, **kwargs) -> Engine:
    """Build the engine named by `model_cfg.engine` for `model_cfg.name` (lazy imports: torch is heavy)."""
    engine = resolve_engine(model_cfg.engine)
    if engine == "hf":
        from reflectrm.engines.hf import HFEngine

        return HFEngine.from_config(model_cfg, **kwargs)
    if engine == "vllm":
        from reflectrm.engines.vllm import VLLMEngine

        return VLLMEngine.from_config(model_cfg, **kwargs)
    raise ValueError(f"engine={model_cfg.engine!r} cannot be loaded from a config; valid: auto, hf, vllm")
