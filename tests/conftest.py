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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random 2-layer Llama with the course's tokenizer and chat template, saved once.

    For tests of a code path (training loop, losses, saving, determinism) that need a model
    of the right kind, not the trained weights: it loads in milliseconds and trains a step
    in a fraction of a second, where the 135M model takes seconds.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mclab.models import prefetch_model

    tok = AutoTokenizer.from_pretrained(prefetch_model().path)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def load_tiny(tiny_model_dir):
    """`load_tiny()` -> a fresh (model, tokenizer) of the tiny model, through `load_model`."""
    from mclab.models import load_model

    return lambda: load_model(str(tiny_model_dir))
