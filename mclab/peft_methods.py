"""Parameter-efficient fine-tuning: LoRA and prefix tuning with peft, and what they cost.

Training goes through `mclab.training.train_sft` (the shared CPU path) with a peft config.
This module adds the configs with checked inputs, a held-out loss that scores a sweep
cheaply, a peak-memory meter, sizes on disk, and a fix for generating with a prefix-tuned
model under transformers 5.x (see `enable_prefix_generation`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .compat import (cache_layer_kv, is_injected_tuner, patch_prefix_generate,
                     write_prefix_weights)
from .device import model_device
from .measure import PeakMemory, folder_size_mb  # noqa: F401  (notebooks import them from here)
from .training import TrainingInputError, save_model

LORA_TARGETS = {
    "attention (q, v)": ("q_proj", "v_proj"),
    "attention (q, k, v, o)": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "MLP (gate, up, down)": ("gate_proj", "up_proj", "down_proj"),
    "all linear": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


def lora_config(r: int = 8, alpha: float | None = None, targets=("q_proj", "v_proj"),
                dropout: float = 0.0):
    """A peft LoraConfig for a causal LM; `alpha` defaults to 2 * r (scaling alpha/r = 2)."""
    from peft import LoraConfig

    if not isinstance(r, int) or r < 1:
        raise TrainingInputError(
            f"LoRA rank must be a positive integer, got {r!r}; rank 0 adds no trainable "
            "parameters. Try r=8.")
    alpha = 2 * r if alpha is None else alpha
    if not alpha > 0:
        raise TrainingInputError(f"LoRA alpha must be positive, got {alpha}; try alpha = 2 * r")
    targets = list(targets)
    if not targets:
        raise TrainingInputError("give LoRA at least one target module, e.g. ['q_proj', 'v_proj']")
    return LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=dropout,
                      bias="none", task_type="CAUSAL_LM")


def prefix_config(num_virtual_tokens: int = 16):
    """A peft PrefixTuningConfig: trained key/value vectors prepended in every layer."""
    from peft import PrefixTuningConfig

    _check_virtual_tokens(num_virtual_tokens)
    return PrefixTuningConfig(num_virtual_tokens=num_virtual_tokens, task_type="CAUSAL_LM")


def prompt_tuning_config(num_virtual_tokens: int = 16, tokenizer=None, init_text: str | None = None):
    """A peft PromptTuningConfig: trained embeddings prepended to the input only."""
    from peft import PromptTuningConfig

    _check_virtual_tokens(num_virtual_tokens)
    if init_text and tokenizer is not None:
        return PromptTuningConfig(num_virtual_tokens=num_virtual_tokens, task_type="CAUSAL_LM",
                                  prompt_tuning_init="TEXT", prompt_tuning_init_text=init_text,
                                  tokenizer_name_or_path=tokenizer.name_or_path)
    return PromptTuningConfig(num_virtual_tokens=num_virtual_tokens, task_type="CAUSAL_LM")


def _check_virtual_tokens(n) -> None:
    if not isinstance(n, int) or n < 1:
        raise TrainingInputError(f"num_virtual_tokens must be a positive integer, got {n!r}")


def lora_parameter_count(model, r: int, targets) -> int:
    """Trainable parameters LoRA adds: r * (in + out) for every targeted Linear layer."""
    targets = set(targets)
    return sum(r * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in targets)


def prefix_parameter_count(model, num_virtual_tokens: int) -> int:
    """Prefix tuning trains a key and a value vector per virtual token, layer and KV head."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return num_virtual_tokens * cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim


# ---------------------------------------------------------------- scoring and costs

def completion_loss(model, tokenizer, prompts: list[str], answers: list[str],
                    system: str | None = None, batch_size: int = 8) -> float:
    """Mean cross-entropy of the reference answers given their chat prompts (lower is better).

    A cheap held-out score (one forward pass per batch, no generation) for sweeps.
    """
    from .evaluation import answer_logprobs

    sums, counts = answer_logprobs(model, tokenizer, prompts, answers, system, batch_size)
    return float(-sums.sum() / counts.sum())


# ---------------------------------------------------------------- prefix tuning, generation

@torch.no_grad()
def init_prefix_from_text(peft_model, tokenizer, text: str) -> None:
    """Start a prefix at the keys and values the model computes for a real text.

    peft initialises the prefix at random (standard normal), far from anything the
    model has seen, and the first steps only repair that damage. Li & Liang (2021)
    initialise from the activations of real words instead: the model then starts as if it
    had read `text` (repeated or cut to the number of virtual tokens) before the input.
    """
    cfg = peft_model.active_peft_config
    n = cfg.num_virtual_tokens
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the prefix init text is empty")
    base = peft_model.get_base_model()
    ids = torch.tensor([(ids * (n // len(ids) + 1))[:n]], device=model_device(base))
    cache = base(input_ids=ids, use_cache=True).past_key_values
    layers_kv = [cache_layer_kv(cache, layer) for layer in range(base.config.num_hidden_layers)]
    write_prefix_weights(peft_model, [(keys[0], values[0]) for keys, values in layers_kv])


def prefix_from_text(model, tokenizer, peft_config, text: str):
    """The model wrapped with a prefix-tuning adapter that starts from `text`'s keys and
    values (`init_prefix_from_text`), ready to train."""
    from peft import get_peft_model

    model = get_peft_model(model, peft_config)
    init_prefix_from_text(model, tokenizer, text)
    return model


def enable_prefix_generation(peft_model):
    """Make `generate` use the prefix of a prefix-tuned model (transformers >= 5, peft 0.21).

    Why: transformers 5 keeps the generation cache under the argument `cache`; peft 0.21
    still injects the prefix as `past_key_values`, which the model then ignores ("Both
    `past_key_values` and `cache` are set ... ignoring deprecated past_key_values"), so the
    model generates as if it had no prefix. Training and scoring with a forward pass are
    not affected. Returns the model; a no-op for other peft methods.
    """
    from peft import PeftType

    if getattr(peft_model, "active_peft_config", None) is not None and \
            peft_model.active_peft_config.peft_type == PeftType.PREFIX_TUNING:
        patch_prefix_generate(peft_model)
    return peft_model


def save_adapter(peft_model, run_dir, name: str = "adapter") -> Path:
    """Save only the trained adapter weights under the run folder (atomically, after a disk
    space check: `mclab.training.save_model`); return the folder."""
    return save_model(peft_model, None, run_dir, name)


# ---------------------------------------------------------------- the knobs, without training

def adapter_costs(model, rank: int, alpha: float, virtual_tokens: int,
                  targets=("q_proj", "v_proj")) -> dict:
    """What LoRA (rank, alpha, targets) and prefix tuning (virtual tokens) would train."""
    lora_config(rank, alpha, targets)  # the same checks as for a real run
    _check_virtual_tokens(virtual_tokens)
    total = sum(p.numel() for p in model.parameters())
    lora_n = lora_parameter_count(model, rank, targets)
    prefix_n = prefix_parameter_count(model, virtual_tokens)
    return {
        "LoRA trainable parameters": lora_n,
        "LoRA share of the model": f"{lora_n / total:.3%}",
        "LoRA adapter size (KB, fp32)": round(lora_n * 4 / 1024),
        "LoRA scaling alpha / r": round(alpha / rank, 3),
        "prefix trainable parameters": prefix_n,
        "prefix share of the model": f"{prefix_n / total:.3%}",
        "prefix adapter size (KB, fp32)": round(prefix_n * 4 / 1024),
        "full model size (MB, fp32)": round(total * 4 / 2**20),
    }


def peft_panel(model, sweep=None):
    """Sliders for rank, alpha and virtual tokens: the parameters and sizes they imply,
    next to the measured sweep (a DataFrame with method, setting, trainable, val_loss).

    The panel keeps only `model`'s shapes (`models.skeleton`), not its weights: a notebook
    can free the model after building the panel (06 does, before it trains adapter layers)."""
    import ipywidgets as w
    from IPython.display import display

    from .models import skeleton
    from .widgets import panel

    shapes = skeleton(model)
    del model  # the callbacks below must not keep the real weights alive

    controls = {
        "rank": w.IntSlider(value=8, min=0, max=64, description="rank r"),
        "alpha": w.FloatSlider(value=16, min=0, max=128, step=1, description="alpha"),
        "tokens": w.IntSlider(value=16, min=0, max=64, description="virtual tokens"),
        "targets": w.Dropdown(options=list(LORA_TARGETS), value="attention (q, v)",
                              description="targets"),
    }

    def render(costs, _values):
        for key, value in costs.items():
            print(f"{key:>32}: {value:,}" if isinstance(value, int) else f"{key:>32}: {value}")
        if sweep is not None:
            print("\nmeasured in this notebook (validation loss, lower is better):")
            display(sweep)

    return panel(controls, lambda rank, alpha, tokens, targets: adapter_costs(
                     shapes, rank, alpha, tokens, LORA_TARGETS[targets]),
                 render, layout=[["rank", "alpha"], ["tokens", "targets"]])


def detach_adapter(peft_model):
    """The base model back, without the adapter and with its weights unchanged."""
    if is_injected_tuner(peft_model):
        return peft_model.unload()  # LoRA: remove the injected layers, do not merge
    return peft_model.get_base_model()  # prompt learning: the base was never modified


def train_adapter(model, tokenizer, dataset, cfg, peft_config, val_prompts, val_answers,
                  label: str = "", init_text: str | None = None) -> tuple:
    """Train one peft method through the shared SFT path and measure what it cost.

    For prefix tuning, `init_text` starts the prefix at that text's keys and values
    (`init_prefix_from_text`) instead of at random. Returns (TrainResult, row) where row has trainable parameters, seconds, peak memory,
    adapter size and the validation loss; the adapter is saved in the run folder (`model`).
    """
    from .training import train_sft

    with PeakMemory() as mem:
        if init_text is not None:
            cfg.validate()  # fail before wrapping the model, as train_sft would
            model = prefix_from_text(model, tokenizer, peft_config, init_text)
            peft_config = None
        result = train_sft(model, tokenizer, dataset, cfg, peft_config=peft_config)
    folder = result.run_dir / "model"  # the training core saves adapters there
    return result, cost_row(label or type(peft_config).__name__, result, mem, folder,
                            tokenizer, val_prompts, val_answers)


def cost_row(method: str, result, mem, folder, tokenizer, val_prompts, val_answers) -> dict:
    """What one trained adapter cost and scored: trainable parameters, seconds, peak memory,
    size on disk (`folder`) and validation loss (06's comparison tables, every adapter kind)."""
    from .models import count_parameters

    return {"method": method,
            "trainable": count_parameters(result.model, trainable_only=True),
            "seconds": result.seconds, "peak_mb": mem.peak_mb,
            "adapter_kb": folder_size_mb(folder) * 1024,
            "val_loss": completion_loss(result.model, tokenizer, val_prompts, val_answers),
            "path": str(folder)}
