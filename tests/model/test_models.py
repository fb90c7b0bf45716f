"""Model resolution: aliases, local folders, hub ids offline, and the errors users see."""

from __future__ import annotations

import json
import shutil

import pytest

from reflectrm.models import ModelFormatError, ModelNotFoundError, load_model, load_tokenizer, resolve_model


def test_tiny_random_is_cached_and_deterministic():
    path = resolve_model("tiny-random")
    assert resolve_model("tiny-random") == path
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "qwen3"
    model = load_model(path, dtype=__import__("torch").float32, device="cpu")
    n = sum(p.numel() for p in model.parameters())
    assert 500_000 < n < 2_000_000
    tok = load_tokenizer(path)
    assert tok.chat_template and tok.pad_token_id is not None and tok.padding_side == "left"


def test_missing_path_names_the_problem(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither an existing folder nor an alias"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_hub_id_without_network_says_pass_a_local_path():
    with pytest.raises(ModelNotFoundError, match="pass a local folder"):
        resolve_model("some-org/some-model-that-is-not-here")


def test_model_without_chat_template_is_refused(tmp_path):
    src = resolve_model("tiny-random")
    dst = tmp_path / "nochat"
    shutil.copytree(src, dst)
    cfg_path = dst / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    (dst / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ModelFormatError, match="no chat template"):
        load_tokenizer(dst)


def test_only_safetensors_weights_load(tmp_path):
    src = resolve_model("tiny-random")
    dst = tmp_path / "nosafe"
    shutil.copytree(src, dst)
    for f in dst.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ModelFormatError, match="safetensors"):
        load_model(dst, dtype=None, device="cpu")
