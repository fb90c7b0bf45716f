"""Generation engines behind one Protocol (base.Engine): hf (default), fake (scripted, for tests)."""

from reflectrm.engines.base import (
    Completion,
    Engine,
    Generation,
    GenerationRequest,
    PromptTooLongError,
    SamplingParams,
)

__all__ = ["Completion", "Engine", "Generation", "GenerationRequest", "PromptTooLongError", "SamplingParams", "load_engine"]


def load_engine(model_cfg, **kwargs) -> Engine:
    """Build the engine named by `model_cfg.engine` for `model_cfg.name` (lazy imports: torch is heavy)."""
    if model_cfg.engine == "hf":
        from reflectrm.engines.hf import HFEngine

        return HFEngine.from_config(model_cfg, **kwargs)
    raise ValueError(f"engine={model_cfg.engine!r} cannot be loaded from a config; valid: hf")
