import os
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MCLAB_QUICK", "1")


@pytest.fixture(scope="session")
def model_and_tokenizer():
    from mclab.config import setup
    from mclab.models import load_model

    setup()
    return load_model()


@pytest.fixture(scope="session")
def embedder():
    from mclab.models import load_embedder

    return load_embedder()


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MCLAB_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"
