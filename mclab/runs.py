"""Run folders on disk: how much a save needs, whether it fits, and pruning old runs.

Every training run writes a new folder under `MCLAB_RUNS` (default `runs/`), and a
full-weight model is about 520 MB in fp32: the course's full-mode notebooks write several
GB, and rerunning a cell writes another copy. `python -m mclab runs` lists the folders and
their sizes; `python -m mclab runs --keep 1` deletes all but the newest run of each name.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import get_settings
from .measure import folder_size_mb
from .models import is_peft

MB = 1024 * 1024
_STAMP = re.compile(r"^\d{8}-\d{6}-")  # new_run_dir's "YYYYmmdd-HHMMSS-" prefix


class DiskSpaceError(OSError):
    """Not enough free disk for a save; raised before anything is written."""


def model_bytes(model) -> int:
    """Bytes `save_pretrained` writes: the adapters' weights for a peft model (peft's own
    `get_peft_model_state_dict`, trainable or not), else all weights. `parameters()` yields
    tied weights (SmolLM2's embedding and LM head) once, as safetensors stores them."""
    if is_peft(model):
        from peft import get_peft_model_state_dict

        return sum(t.numel() * t.element_size() for name in model.peft_config
                   for t in get_peft_model_state_dict(model, adapter_name=name).values())
    return sum(p.numel() * p.element_size() for p in model.parameters())


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk that holds `folder` (or its nearest existing parent)."""
    folder = Path(folder).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_free_space(folder: Path, need: int, what: str) -> None:
    """Raise DiskSpaceError, saying what to do, if `folder`'s disk has less than `need`
    bytes (plus 10% and 16 MB of headroom for configs, tokenizer and the file system)."""
    need = int(need * 1.1) + 16 * MB
    free = free_bytes(folder)
    if free < need:
        raise DiskSpaceError(
            f"{what} needs about {need / MB:,.0f} MB on disk but only {free / MB:,.0f} MB are "
            f"free under {folder}. Free space with `python -m mclab runs --keep 1` (deletes "
            f"all but the newest run of each name under {get_settings().runs_dir}), or set "
            "MCLAB_RUNS to a folder on a larger disk.")


@dataclass
class RunFolder:
    path: Path
    name: str  # the run_name it was started with
    size_mb: float


def _run_name(folder: Path) -> str:
    config = folder / "train_config.json"
    if config.is_file():
        try:
            return json.loads(config.read_text())["run_name"]
        except (ValueError, KeyError):
            pass
    return _STAMP.sub("", folder.name)


def list_runs(root: Path | None = None) -> list[RunFolder]:
    """The run folders under `root` (default MCLAB_RUNS), oldest first."""
    root = Path(root or get_settings().runs_dir)
    if not root.is_dir():
        return []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _STAMP.match(p.name))
    return [RunFolder(p, _run_name(p), folder_size_mb(p)) for p in folders]


def prune_runs(keep: int, root: Path | None = None, dry_run: bool = False) -> list[RunFolder]:
    """Delete all but the newest `keep` runs of each run name; return what was (or would be)
    deleted. Only folders named as `new_run_dir` names them are touched."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    by_name: dict[str, list[RunFolder]] = {}
    for run in list_runs(root):
        by_name.setdefault(run.name, []).append(run)
    doomed = [run for runs in by_name.values() for run in runs[:max(0, len(runs) - keep)]]
    if not dry_run:
        for run in doomed:
            shutil.rmtree(run.path)
    return doomed
