"""ESTIMATES (not measurements) of each notebook's time and GPU memory on a T4-class GPU, for
SmolLM2-135M, -360M and -1.7B, printed as the README's Markdown table.

Nothing here ran on a GPU. The basis of every number, all in this file:

- time: the notebook's measured full-mode seconds on the course's 2-core CPU
  (reports/notebooks.json) x the model's compute per token relative to 135M (2 x its
  parameters, the LM head included: SmolLM2 ties it to the embedding) / the speed-up of a T4
  over that CPU. The speed-up is a range: the CPU's achieved rate is measured
  (reports/bench_training.json: full fine-tuning tokens/s of a plain PyTorch loop, x 6 x
  135M parameters per token); the T4's is its fp32 peak (NVIDIA's datasheet: 8.1 TFLOPS; a
  T4 has no native bf16, so mclab trains in fp32 there) x an assumed 25-50% of it achieved.
  Small models at batch 8 keep a T4 far below that share (kernel launches, token-by-token
  generation), so the 135M column is the most optimistic.
- memory: the largest training run a notebook does, in fp32: weights 4 bytes a parameter,
  plus gradients 4 and optimizer state (Adafactor: about 0 after factoring; AdamW 8) for
  full fine-tuning, plus activations of a batch of 8 x 128 tokens without recomputation
  (Korthikanti et al., 2022: s b h (34 + 5 a s / h) bytes a layer at 16 bits, doubled for
  fp32) and 3 copies of the logits. Notebooks that keep several models loaded at once need
  4 bytes a parameter more for each.
- parameters: computed from the models' published configurations (hidden size, layers,
  heads, key/value heads, MLP width, vocabulary 49,152), written below; the 135M one
  reproduces the 134.5 M parameters counted on the loaded model (CPU-NOTES).

    python tools/gpu_estimates.py            # the table
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# hidden, layers, attention heads, key/value heads, MLP width (SmolLM2 model cards' config.json)
SHAPES = {"135M": (576, 30, 9, 3, 1536), "360M": (960, 32, 15, 5, 2560),
          "1.7B": (2048, 24, 32, 32, 8192)}
VOCAB = 49152
T4_FP32_FLOPS = 8.1e12  # NVIDIA T4 datasheet, single precision peak
ACHIEVED = (0.25, 0.50)  # assumed share of the peak a training/eval loop reaches
T4_MEMORY_GB = 15.0  # usable of its 16 GB
TOKENS, SEQ = 8 * 128, 128  # the recipes' batch x length
# the largest training run of each notebook: "full" (every weight, Adafactor), "adapter"
# (LoRA or prefix: weights frozen), or None (inference only); from the solutions' recipes
LARGEST_RUN = {"00": None, "01": None, "02": "adapter", "03": "full", "04": "full",
               "05": "adapter", "06": "full", "07": "adapter", "08": None}


def parameters(size: str) -> int:
    h, layers, heads, kv_heads, mlp = SHAPES[size]
    kv = h * kv_heads // heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * mlp + 2 * h
    return layers * per_layer + VOCAB * h + h  # tied embedding / LM head, final norm


def activations_gb(size: str) -> float:
    h, layers, heads, _, _ = SHAPES[size]
    per_layer = TOKENS * h * (34 + 5 * heads * SEQ / h)  # bytes at 16 bits
    logits = 3 * TOKENS * VOCAB * 4
    return (2 * per_layer * layers + logits) / 1e9


def memory_gb(size: str, run: str | None) -> float:
    weights = 4 * parameters(size) / 1e9
    if run is None:
        return weights + 3 * 8 * SEQ * VOCAB * 4 / 1e9  # scoring batches of 8: the logits
    extra = 4 * parameters(size) / 1e9 if run == "full" else 0.0  # gradients
    return weights + extra + activations_gb(size)


def cpu_flops() -> float:
    bench = json.loads((ROOT / "reports" / "bench_training.json").read_text())
    return bench["results"]["full"]["plain_tokens_per_s"] * 6 * parameters("135M")


def duration(shortest: float, longest: float) -> str:
    """A range in seconds (2 significant digits) below 2 minutes, else in whole minutes."""
    if longest < 120:
        return f"{float(f'{shortest:.2g}'):g}–{float(f'{longest:.2g}'):g} s"
    return f"{shortest / 60:.0f}–{longest / 60:.0f} min"


def table() -> str:
    measured = json.loads((ROOT / "reports" / "notebooks.json").read_text())
    fast, slow = (T4_FP32_FLOPS * share / cpu_flops() for share in reversed(ACHIEVED))
    rows = ["| notebook | CPU, measured (s; peak RSS GB) | " + " | ".join(
        f"T4, {s}: time; GPU memory" for s in SHAPES) + " |", "|---" * (2 + len(SHAPES)) + "|"]
    for name, entry in sorted(measured.items()):
        key = name[:2]
        cells = []
        for size in SHAPES:
            ratio = parameters(size) / parameters("135M")
            longest, shortest = (entry["seconds"] * ratio / s for s in (slow, fast))
            gb = memory_gb(size, LARGEST_RUN[key])
            fits = "" if gb <= T4_MEMORY_GB else " (does not fit)"
            cells.append(f"{duration(shortest, longest)}; {gb:.0f} GB{fits}")
        rows.append(f"| {name.removesuffix('.ipynb')} | {entry['seconds']:.0f}; "
                    f"{entry['peak_rss_mb'] / 1000:.1f} | " + " | ".join(cells) + " |")
    low, high = ACHIEVED
    basis = (f"T4 over this CPU: {slow:.0f}x to {fast:.0f}x (CPU {cpu_flops() / 1e9:.0f} GFLOP/s "
             f"measured; T4 {T4_FP32_FLOPS / 1e12:.1f} TFLOPS x {low:.0%}-{high:.0%}); "
             "parameters " + ", ".join(f"{s} {parameters(s) / 1e6:,.1f} M" for s in SHAPES))
    return "\n".join(rows) + "\n\n" + basis


if __name__ == "__main__":
    print(table())
