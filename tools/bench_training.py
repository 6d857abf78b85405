"""Training throughput: mclab's trainer path against a plain PyTorch fp32 loop.

Same model, same batch shapes (every sequence exactly `--length` tokens, so no padding
anywhere), same optimizer (AdamW), for full fine-tuning and LoRA r=8 on q,v:

  (a) plain  : a hand-written loop: forward with labels, backward, AdamW step
  (b) mclab  : mclab.training.train_sft with cpu_args (trl's SFTTrainer underneath)
  (c) trl    : trl's default SFTConfig (bf16 autocast + gradient checkpointing), use_cpu=True,
               a couple of steps only (it is ~20x slower on a CPU without native bf16)
  --trl-loss   : also (b) with trl's own fused loss and per-token metrics (lean_loss=False)

Throughput is tokens per second between the end of the first step (warm-up) and the end of
the last, so each path's data loading, logging and callbacks count. Paths run interleaved
`--repeats` times to spread the noise of a shared machine; the best repeat of each is kept.

    python tools/bench_training.py [--steps 5] [--repeats 2] [--batch 8] [--length 128]
        [--trl-steps 2] [--out reports/bench_training.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MCLAB_RUNS", tempfile.mkdtemp(prefix="mclab-bench-runs-"))

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from mclab.config import setup  # noqa: E402
from mclab.data import load_scenario  # noqa: E402
from mclab.models import load_model  # noqa: E402

LR = 1e-4


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                      task_type="CAUSAL_LM")


def bench_texts(tokenizer, n: int, length: int) -> list[str]:
    """`n` texts of more than `length` tokens each (domain prose and company documents)."""
    medical, company = load_scenario("medical"), load_scenario("company")
    pool = list(medical["train_prose"]["text"]) + list(company["documents"]["text"])
    long = [t for t in pool if len(tokenizer(t)["input_ids"]) > length + 1]
    if len(long) < n:
        raise SystemExit(f"only {len(long)} texts are longer than {length} tokens; lower --length")
    return long[:n]


class StepClock(TrainerCallback):
    """Wall-clock time at the end of every optimizer step."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def _rate(ends: list[float], tokens_per_step: int) -> float:
    if len(ends) < 2:
        raise ValueError("need at least 2 steps to time the steady state")
    return tokens_per_step * (len(ends) - 1) / (ends[-1] - ends[0])


def run_plain(texts, length, batch, steps, lora) -> float:
    model, tok = load_model()
    if lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config())
    model.train()
    enc = tok(texts, truncation=True, max_length=length, return_tensors="pt")
    ids = enc["input_ids"]
    assert ids.shape[1] == length, ids.shape
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    ends = []
    for step in range(steps):
        rows = [(step * batch + i) % len(ids) for i in range(batch)]
        x = ids[rows]
        loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ends.append(time.perf_counter())
    return _rate(ends, batch * length)


def run_mclab(texts, length, batch, steps, lora, lean=True) -> float:
    from datasets import Dataset

    from mclab.training import TrainConfig, train_sft

    model, tok = load_model()
    clock = StepClock()
    cfg = TrainConfig(learning_rate=LR, max_steps=steps, batch_size=batch, max_length=length,
                      run_name="bench", lean_loss=lean)
    ds = Dataset.from_list([{"text": t} for t in texts])
    result = train_sft(model, tok, ds, cfg, peft_config=lora_config() if lora else None,
                       callbacks=[clock])
    assert result.tokens == batch * length * steps, (result.tokens, batch * length * steps)
    return _rate(clock.ends, batch * length)


def run_trl_defaults(texts, length, batch, steps, lora) -> float:
    """trl's own defaults (bf16 autocast, gradient checkpointing) on this CPU."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = load_model()
    clock = StepClock()
    out = tempfile.mkdtemp(prefix="mclab-bench-trl-")
    args = SFTConfig(output_dir=out, use_cpu=True, max_length=length, learning_rate=LR,
                     per_device_train_batch_size=batch, max_steps=steps, report_to="none",
                     save_strategy="no", disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, processing_class=tok,
                         train_dataset=Dataset.from_list([{"text": t} for t in texts]),
                         peft_config=lora_config() if lora else None, callbacks=[clock])
    trainer.train()
    return _rate(clock.ends, batch * length)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="steps per run (first is warm-up)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--trl-steps", type=int, default=2,
                        help="steps of trl's defaults (LoRA only); 0 skips them")
    parser.add_argument("--modes", default="full,lora")
    parser.add_argument("--trl-loss", action="store_true",
                        help="also time mclab's path with trl's fused loss (lean_loss=False)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_training.json")
    args = parser.parse_args(argv)
    settings = setup()
    torch.set_num_threads(settings.threads)
    _, tok = load_model()
    texts = bench_texts(tok, args.batch * 2, args.length)
    modes = [m for m in args.modes.split(",") if m]
    runs = {"plain": run_plain, "mclab": run_mclab}
    if args.trl_loss:
        runs["mclab_trl_loss"] = lambda *a: run_mclab(*a, lean=False)
    rates: dict[str, dict[str, list[float]]] = {m: {k: [] for k in runs} for m in modes}
    for rep in range(args.repeats):
        for mode in modes:
            for name, fn in runs.items():
                rate = fn(texts, args.length, args.batch, args.steps, mode == "lora")
                rates[mode][name].append(rate)
                print(f"repeat {rep + 1} {mode:<4} {name:<5} {rate:7.1f} tokens/s", flush=True)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                         f"{settings.threads} torch threads",
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
              "batch": args.batch, "length": args.length, "steps": args.steps,
              "repeats": args.repeats, "results": {}}
    for mode in modes:
        best = {name: max(values) for name, values in rates[mode].items()}
        row = {f"{name}_tokens_per_s": round(v, 1) for name, v in best.items()}
        row["all_runs"] = {n: [round(v, 1) for v in vs] for n, vs in rates[mode].items()}
        for name in best:
            if name != "plain":
                row[f"{name}_vs_plain"] = round(best[name] / best["plain"], 3)
        result["results"][mode] = row
    if args.trl_steps >= 2 and "lora" in modes:
        rate = run_trl_defaults(texts, args.length, args.batch, args.trl_steps, lora=True)
        row = result["results"]["lora"]
        row["trl_defaults_tokens_per_s"] = round(rate, 1)
        row["trl_defaults_vs_plain"] = round(rate / row["plain_tokens_per_s"], 3)
        print(f"trl defaults lora {rate:7.1f} tokens/s", flush=True)
    print(json.dumps(result["results"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
