"""Adapter layers (Houlsby et al., 2019), built from scratch: a small bottleneck module
inserted after the attention and/or MLP block of every decoder layer, base weights frozen.

    h  ->  h + up(act(down(h)))      down: d -> m, up: m -> d, m << d

`up` starts at zero, so an adapted model computes exactly what the base computes until
training moves it (as LoRA's B does). The `adapters` library would do this, but it pins
transformers 4.x; and here building it is the lesson. Adapters are attached with forward
hooks (the block's own code is untouched) and `remove_adapters` takes them out again.
Unlike LoRA, a serial adapter has a nonlinearity between its two matrices, so it cannot be
folded into the weights: every answer pays for it (`time_generation` measures how much).
Training goes through the shared path (`mclab.training.train_sft`).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from .compat import decoder_layers
from .files import atomic_path
from .measure import PeakMemory, folder_size_mb  # noqa: F401  (tests size adapters through it)
from .training import TrainingInputError

# where an adapter can go -> the decoder layer's attribute holding that block
PLACES = {"attention": "self_attn", "mlp": "mlp"}
WEIGHTS, CONFIG = "bottleneck_adapters.safetensors", "bottleneck_config.json"


class BottleneckAdapter(torch.nn.Module):
    """h + up(act(down(h))): a residual bottleneck that starts as the identity."""

    def __init__(self, hidden: int, size: int):
        super().__init__()
        self.down = torch.nn.Linear(hidden, size)  # default (Kaiming-uniform) init
        self.act = torch.nn.SiLU()  # "swish", the Houlsby adapter's nonlinearity
        self.up = torch.nn.Linear(size, hidden)
        torch.nn.init.zeros_(self.up.weight)  # near-identity start: the added term is 0
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, h):
        return h + self.up(self.act(self.down(h)))


@dataclass
class _Attached:
    size: int
    where: tuple[str, ...]
    handles: list


def _check(size, where) -> tuple[str, ...]:
    if not isinstance(size, int) or size < 1:
        raise TrainingInputError(f"bottleneck size must be a positive integer, got {size!r}; "
                                 "try 16 or 64")
    where = tuple(where)
    unknown = [w for w in where if w not in PLACES]
    if not where or unknown:
        raise TrainingInputError(f"adapters go after {' and/or '.join(PLACES)}; got {where!r}")
    return where


def _layers(model) -> list:
    """The decoder layers the adapters go into (`compat.decoder_layers`, as the step in the
    backward pass finds them); an error where there are none to adapt."""
    layers = decoder_layers(model)
    if not layers:
        raise TrainingInputError(f"found no decoder layers in {type(model).__name__} to insert "
                                 "bottleneck adapters into; use a transformers causal LM")
    return layers


def _after_block(block, args, output):
    """Forward hook: pass the block's output (attention returns a tuple) through its adapter."""
    if isinstance(output, tuple):
        return (block.bottleneck(output[0]), *output[1:])
    return block.bottleneck(output)


def has_adapters(model) -> bool:
    return getattr(model, "mclab_bottleneck", None) is not None


def add_adapters(model, size: int, where=("attention", "mlp")):
    """Freeze every base weight and insert a `BottleneckAdapter` after each `where` block of
    every layer; return the model (changed in place). Only the adapters train."""
    where = _check(size, where)
    if has_adapters(model):
        raise TrainingInputError("this model already has bottleneck adapters; "
                                 "remove_adapters(model) first")
    model.requires_grad_(False)
    param = next(model.parameters())
    for layer in _layers(model):
        for place in where:
            getattr(layer, PLACES[place]).bottleneck = BottleneckAdapter(
                model.config.hidden_size, size).to(device=param.device, dtype=param.dtype)
    model.mclab_bottleneck = _Attached(size, where, _hook_blocks(model, where))
    return model


def _hook_blocks(model, where) -> list:
    """Route each `where` block's output through its adapter; the hooks' handles."""
    return [getattr(layer, PLACES[place]).register_forward_hook(_after_block)
            for layer in _layers(model) for place in where]


def remove_adapters(model):
    """Take the adapters out: the base model back, its weights untouched (still frozen)."""
    attached = getattr(model, "mclab_bottleneck", None)
    if attached is None:
        raise TrainingInputError("this model has no bottleneck adapters to remove")
    for handle in attached.handles:
        handle.remove()
    for layer in _layers(model):
        for place in attached.where:
            del getattr(layer, PLACES[place]).bottleneck
    model.mclab_bottleneck = None
    return model


@contextmanager
def detached(model):
    """The adapted model computing as its base, for the duration: the adapters' hooks off,
    their modules and trained weights kept in place, the hooks back on exit.

    A merged LoRA model is the base architecture with other numbers in its weights, and a
    dense model's speed does not depend on those numbers: so the detached model stands in
    for it when timing (06), without a second copy of the weights in memory.
    """
    attached = getattr(model, "mclab_bottleneck", None)
    if attached is None:
        raise TrainingInputError("this model has no bottleneck adapters to detach")
    for handle in attached.handles:
        handle.remove()
    try:
        yield model
    finally:
        attached.handles[:] = _hook_blocks(model, attached.where)


def adapter_parameter_count(model, size: int, where=("attention", "mlp")) -> int:
    """Parameters the adapters add: per layer and place, down (d x m + m) and up (m x d + d)."""
    where = _check(size, where)
    d = model.config.hidden_size
    return model.config.num_hidden_layers * len(where) * (2 * d * size + size + d)


def adapter_state_dict(model) -> dict[str, torch.Tensor]:
    """The adapters' weights only, by their names in the model."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters()
            if ".bottleneck." in name}


def save_adapters(model, folder) -> Path:
    """Write the adapters' weights and their settings (not the base model), atomically."""
    from safetensors.torch import save_file

    attached = getattr(model, "mclab_bottleneck", None)
    if attached is None:
        raise TrainingInputError("this model has no bottleneck adapters to save")
    folder = Path(folder)
    with atomic_path(folder, folder=True) as tmp:
        save_file(adapter_state_dict(model), os.fspath(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(
            {"size": attached.size, "where": list(attached.where),
             "hidden_size": model.config.hidden_size}, indent=1))
    return folder


def load_adapters(model, folder):
    """Insert adapters into a base model and load the weights `save_adapters` wrote."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise TrainingInputError(f"{folder} holds no adapters saved by save_adapters")
    config = json.loads((folder / CONFIG).read_text())
    if config["hidden_size"] != model.config.hidden_size:
        raise TrainingInputError(f"adapters for hidden size {config['hidden_size']}, model has "
                                 f"{model.config.hidden_size}")
    add_adapters(model, config["size"], config["where"])
    weights = load_file(os.fspath(folder / WEIGHTS))
    missing = set(adapter_state_dict(model)) ^ set(weights)
    if missing:
        remove_adapters(model)
        raise TrainingInputError(f"saved adapters do not fit this model: {sorted(missing)[:3]}")
    model.load_state_dict(weights, strict=False)
    return model


def train_bottleneck(model, tokenizer, dataset, cfg, size: int, where, val_prompts,
                     val_answers, label: str = "") -> tuple:
    """Insert adapters, train them through the shared SFT path, save them, measure the cost.

    Returns (TrainResult, row) like `peft_methods.train_adapter`: trainable parameters,
    seconds, peak memory, size on disk, validation loss, and the saved folder (`path`).
    """
    from .peft_methods import cost_row
    from .training import train_sft

    cfg.validate()  # fail before the model is changed
    with PeakMemory() as mem:
        add_adapters(model, size, where)
        result = train_sft(model, tokenizer, dataset, cfg)
    folder = save_adapters(result.model, result.run_dir / "model")
    return result, cost_row(label or f"bottleneck m={size}", result, mem, folder, tokenizer,
                            val_prompts, val_answers)


# ---------------------------------------------------------------- what it costs per answer

@torch.no_grad()
def time_generation(models: dict, tokenizer, prompt: str, new_tokens: int = 32,
                    repeats: int = 5, warmup: int = 1) -> dict:
    """Seconds per greedy answer of exactly `new_tokens` tokens, for each named model.

    A value of `models` is a model, or a function that returns a context giving one (e.g.
    `lambda: detached(model)`), entered around each of that entry's runs. The same prompt
    and length for all (an answer's length would otherwise decide its time), warm-up runs
    first, then the repeats interleaved across models so a change in the machine's load hits
    them all alike. Returns name -> {median, min, max} seconds.
    """
    from .generation import to_messages

    if repeats < 1 or new_tokens < 1:
        raise ValueError("need repeats >= 1 and new_tokens >= 1")
    ids = tokenizer.apply_chat_template(to_messages(prompt), add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    times = {name: [] for name in models}

    def run(entry):
        with (entry() if callable(entry) and not isinstance(entry, torch.nn.Module)
              else nullcontext(entry)) as model:
            batch = {k: v.to(next(model.parameters()).device) for k, v in ids.items()}
            start = time.perf_counter()
            model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, pad_token_id=tokenizer.pad_token_id)
            return time.perf_counter() - start

    for model in models.values():
        for _ in range(warmup):
            run(model)
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(run(model))
    return {name: {"median": statistics.median(t), "min": min(t), "max": max(t)}
            for name, t in times.items()}
