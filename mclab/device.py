"""Where the models run and in what precision they train: decided here, once.

`MCLAB_DEVICE` picks the device: `auto` (the default) takes the CUDA GPU when torch sees
one, else the CPU; `cpu`, `cuda`, `cuda:N` and `mps` force one. A bad value, or a device
torch cannot use here, is a `DeviceError` naming the variable, raised by `setup()` and by
`load_model` before any model loads. Training runs in bf16 on a CUDA GPU that supports it
and in fp32 everywhere else (a CPU without native bf16 trains about 19x slower in it, see
CPU-NOTES). Every tensor the package feeds a model is built on that model's device
(`model_device`), so whatever moved the model (this module, or a Trainer) the scorers follow.

Under a multi-process launcher (`accelerate launch`, `torchrun`), which sets `WORLD_SIZE`,
`RANK` and `LOCAL_RANK`, each process takes its own GPU (`cuda:LOCAL_RANK`) and
`num_processes` tells the training core how to split a recipe's batch among them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import get_settings

VARIABLE = "MCLAB_DEVICE"
ALLOWED = "auto, cpu, cuda, cuda:N (N a GPU number), mps"
_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")

if TYPE_CHECKING:  # torch is imported where it is used: importing mclab stays light
    import torch


class DeviceError(ValueError):
    """MCLAB_DEVICE names a device that is not allowed or not usable on this machine."""


@dataclass(frozen=True)
class DeviceChoice:
    """The device the models run on and the precision training uses, with the reasons."""

    device: torch.device  # where load_model and load_embedder put the models
    reason: str  # why that device, for doctor ("MCLAB_DEVICE=auto and no CUDA device found")
    bf16: bool  # True: training autocasts to bf16; False: it stays in fp32
    dtype_reason: str  # why that precision, for doctor

    @property
    def train_dtype(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def describe(self) -> str:
        return f"{self.device}: {self.reason}; {self.train_dtype}: {self.dtype_reason}"


def _unusable(value: str, why: str) -> DeviceError:
    return DeviceError(f"{VARIABLE}={value} but {why}. Fix: unset {VARIABLE} (or set it to "
                       "auto) to use what this machine has, or set it to cpu.")


def _check_usable(value: str, device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise _unusable(value, f"torch {torch.__version__} finds no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise _unusable(value, f"torch sees {torch.cuda.device_count()} CUDA device(s), "
                            f"numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise _unusable(value, "torch finds no Apple MPS device")


def num_processes() -> int:
    """How many training processes share each step: `WORLD_SIZE` as `accelerate launch` and
    `torchrun` set it, else 1 (a notebook, `python -m mclab`)."""
    value = os.environ.get("WORLD_SIZE", "").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise DeviceError(f"WORLD_SIZE={value!r} is not a positive process count; it is set by "
                          "`accelerate launch` or `torchrun`: unset it to train in one process")
    return int(value)


def is_main_process() -> bool:
    """True in a single process, and in process 0 of a launch (the one that writes results)."""
    return os.environ.get("RANK", "0").strip() in {"", "0"}


def _local_index() -> int | None:
    """This process's GPU under a multi-process launch (`LOCAL_RANK`), else None."""
    value = os.environ.get("LOCAL_RANK", "").strip()
    return int(value) if value.isdigit() and num_processes() > 1 else None


def _auto_device() -> tuple[torch.device, str]:
    import torch

    if torch.cuda.is_available():
        index = _local_index()
        if index is not None:
            return (torch.device("cuda", index),
                    f"{VARIABLE}=auto, process {index} of a {num_processes()}-process launch")
        return torch.device("cuda"), f"{VARIABLE}=auto found {torch.cuda.get_device_name()}"
    return torch.device("cpu"), f"{VARIABLE}=auto and no CUDA device found"


def _training_precision(device: torch.device) -> tuple[bool, str]:
    import torch

    if device.type != "cuda":
        return False, "bf16 needs a CUDA GPU with bf16 support"
    # Native only: a T4 (Colab's free GPU) has no bf16 tensor cores and only emulates it.
    if not torch.cuda.is_bf16_supported(False):
        return False, "this GPU has no native bf16 support (T4-class GPUs only emulate it)"
    return True, "this GPU supports bf16 (weights stay fp32, the Trainer autocasts)"


def choose_device(value: str | None = None) -> DeviceChoice:
    """The device and training precision for `value` (default: MCLAB_DEVICE).

    Raises DeviceError for a value outside `ALLOWED` or a device torch cannot use here.
    """
    import torch

    value = get_settings().device if value is None else value.strip().lower()
    if not _PATTERN.fullmatch(value):
        raise DeviceError(f"{VARIABLE}={value!r} is not a device mclab knows. "
                          f"Allowed: {ALLOWED}.")
    if value == "auto":
        device, reason = _auto_device()
    else:
        device, reason = torch.device(value), f"set by {VARIABLE}={value}"
        if value == "cuda" and _local_index() is not None:  # each launched process: its GPU
            device = torch.device("cuda", _local_index())
        _check_usable(value, device)
    bf16, dtype_reason = _training_precision(device)
    return DeviceChoice(device, reason, bf16, dtype_reason)


def device_kind() -> str:
    """"cpu", "cuda" or "mps": what the recipes key their per-device batch settings on."""
    return choose_device().device.type


def model_device(model) -> torch.device:
    """The device a model's weights are on: where its inputs must be built."""
    import torch

    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device
