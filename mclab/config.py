"""Quick vs full mode, seeds, threads, the device, and where things are kept.

Every knob is read from the environment once, through `get_settings()`, so a notebook,
a test and `make report` see the same values. Every path mclab uses is decided here, so
an installed wheel works without the course checkout: what it reads ships inside it
(`mclab/course_data`, and the committed report), what it writes goes to `runs/` and
`reports/` in a checkout, else under the user's data folder.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "")
    if value == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mclab"


def _user_data() -> Path:
    # Saved models and reports are results a student keeps: not under the cache, which
    # people clear to get disk back.
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mclab"


def checkout_root() -> Path | None:
    """The course checkout mclab is imported from (editable install or PYTHONPATH), else None.

    An installed wheel sits in site-packages, whose parent holds no pyproject.toml; there the
    writable folders go under the user's data folder instead of beside the package.
    """
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def shipped_data_dir() -> Path:
    """The datasets and their data card inside the package (`mclab/course_data`)."""
    # A wheel is unpacked on disk, so the resource is a real folder (a zipped mclab is not
    # supported; set MCLAB_DATA there).
    return Path(str(files(__package__) / "course_data"))


def _default_runs() -> Path:
    root = checkout_root()
    return root / "runs" if root else _user_data() / "runs"


def _default_reports() -> Path:
    root = checkout_root()
    return root / "reports" if root else _user_data() / "reports"


def course_notebooks() -> list[Path]:
    """The solved notebooks `report --notebooks` times: solutions/*.ipynb of the checkout
    (none for an installed wheel, which carries no notebooks)."""
    root = checkout_root()
    return sorted((root / "solutions").glob("*.ipynb")) if root else []


def committed_report(name: str = "comparison.json") -> Path:
    """A full-mode report file (comparison.json, which notebook 08 reads; rag_settings.json):
    the one in `reports_dir` once written there, else the one the course committed, which
    ships in the wheel."""
    written = get_settings().reports_dir / name
    if written.exists() or checkout_root():
        return written
    return Path(str(files(__package__) / "course_reports" / name))


@dataclass(frozen=True)
class Settings:
    """What a run needs to know about its environment."""

    quick: bool  # MCLAB_QUICK=1: same code, fewer steps and examples (tests, CI)
    seed: int  # MCLAB_SEED: one seed for python, numpy and torch
    threads: int  # MCLAB_THREADS: torch intra-op threads; default = cores, at most 4
    cache_dir: Path  # MCLAB_CACHE: converted models live here
    data_dir: Path  # MCLAB_DATA: the scenario datasets; default mclab/course_data (shipped)
    data_source: str  # "MCLAB_DATA" or "mclab": where data_dir came from, for error messages
    runs_dir: Path  # MCLAB_RUNS: each training run writes a new folder here; default runs/
    # in a checkout, else ~/.local/share/mclab/runs (never inside site-packages)
    reports_dir: Path  # where a full-mode report is written: reports/ in a checkout, else
    # ~/.local/share/mclab/reports
    model_name: str | None  # MCLAB_MODEL: a hub id or local folder instead of SmolLM2-135M
    embedder_name: str | None  # MCLAB_EMBEDDER: same, for the sentence embedder
    device: str  # MCLAB_DEVICE: auto (CUDA if present, else CPU), cpu, cuda, cuda:N or mps;
    # checked and resolved by mclab.device.choose_device

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    def pick(self, quick, full):
        """Return `quick` in quick mode and `full` otherwise."""
        return quick if self.quick else full


def get_settings() -> Settings:
    """Read the settings from the environment (cheap; call it whenever needed)."""
    cores = os.cpu_count() or 1
    return Settings(
        quick=_flag("MCLAB_QUICK"),
        seed=int(os.environ.get("MCLAB_SEED", "0")),
        threads=int(os.environ.get("MCLAB_THREADS", str(min(cores, 4)))),
        cache_dir=Path(os.environ.get("MCLAB_CACHE") or _default_cache()).expanduser(),
        data_dir=Path(os.environ.get("MCLAB_DATA") or shipped_data_dir()).expanduser(),
        data_source="MCLAB_DATA" if os.environ.get("MCLAB_DATA") else "mclab",
        runs_dir=Path(os.environ.get("MCLAB_RUNS") or _default_runs()).expanduser(),
        reports_dir=_default_reports(),
        model_name=os.environ.get("MCLAB_MODEL") or None,
        embedder_name=os.environ.get("MCLAB_EMBEDDER") or None,
        device=os.environ.get("MCLAB_DEVICE", "").strip().lower() or "auto",
    )


def pick(quick, full):
    """`quick` in quick mode, `full` otherwise: how notebooks size their runs."""
    return get_settings().pick(quick, full)


def set_seed(seed: int | None = None) -> int:
    """Seed python, numpy and torch; return the seed used."""
    import numpy as np
    import torch

    seed = get_settings().seed if seed is None else seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def setup(seed: int | None = None) -> Settings:
    """One call at the top of a notebook: threads, seed, quieter logs; a bad MCLAB_DEVICE
    fails here, before any model loads."""
    import torch

    from .device import choose_device

    settings = get_settings()
    choose_device()
    torch.set_num_threads(settings.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        pass
    set_seed(seed if seed is not None else settings.seed)
    return settings
