"""Answering with a LoRA: unmerged (two extra matmuls beside every adapted layer) against
merged into the weights (`mclab.models.lora_merged`, what `generate` and multiple-choice
scoring now do).

Same model, same adapter (the report's LoRA recipe, every linear layer, with a random
non-zero update so merging changes the weights), same inputs: the held-out local rewrites
(generation, greedy) and company questions (multiple choice). One warm-up, then `--repeats`
rounds, the two paths interleaved; the median and the min-max of each, the load average
before and after. Also checks that both paths give the same texts and scores.

    python tools/bench_serving.py [--rewrites 32] [--questions 40] [--repeats 3]
        [--out reports/bench_serving.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mclab.config import get_settings, setup  # noqa: E402
from mclab.evaluation import _score_batch, option_logprobs  # noqa: E402
from mclab.files import write_json_atomic  # noqa: E402
from mclab.generation import _generate_batches, format_chat, generate  # noqa: E402
from mclab.models import load_model  # noqa: E402
from mclab.scorecard import eval_sets, local_prompt  # noqa: E402


def unmerged_generate(model, tok, prompts, new_tokens):
    texts = [format_chat(tok, p) for p in prompts]
    old, tok.padding_side = tok.padding_side, "left"
    try:
        with torch.no_grad():
            return [g.text for g in _generate_batches(model, tok, texts, new_tokens, 0.0, 16)]
    finally:
        tok.padding_side = old


def unmerged_scores(model, tok, prompts, options):
    out = []
    with torch.no_grad():
        for start in range(0, len(prompts), 8):
            out += _score_batch(model, tok, prompts[start:start + 8],
                                options[start:start + 8], "mean")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rewrites", type=int, default=32)
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench_serving.json"))
    args = parser.parse_args()
    if min(args.rewrites, args.questions, args.repeats, args.new_tokens) < 1:
        parser.error("--rewrites, --questions, --new-tokens and --repeats must be >= 1")
    from peft import get_peft_model

    from mclab.evaluation import knowledge_prompt
    from mclab.generation import format_chat as chat
    from mclab.recipes import LORA_SFT

    setup()
    model, tok = load_model()
    torch.manual_seed(0)
    config = LORA_SFT.lora.config()
    config.init_lora_weights = False  # a non-zero update, as after training
    model = get_peft_model(model, config).eval()
    sets = eval_sets()
    sentences = list(sets["local_eval"]["neutral"])[:args.rewrites]
    rewrites = [local_prompt(s) for s in sentences]
    items = list(sets["company_mc"])[:args.questions]
    from mclab.evaluation import ANSWER_PREFIX, KNOWLEDGE_SYSTEM

    mc_prompts = [chat(tok, knowledge_prompt(it["question"]), KNOWLEDGE_SYSTEM) + ANSWER_PREFIX
                  for it in items]
    mc_options = [[" " + o for o in it["options"]] for it in items]

    paths = {
        "generate, unmerged": lambda: unmerged_generate(model, tok, rewrites, args.new_tokens),
        "generate, merged": lambda: generate(model, tok, rewrites, max_new_tokens=args.new_tokens),
        "multiple choice, unmerged": lambda: unmerged_scores(model, tok, mc_prompts, mc_options),
        "multiple choice, merged": lambda: option_logprobs(model, tok, mc_prompts, mc_options),
    }
    seconds: dict[str, list[float]] = {k: [] for k in paths}
    outputs = {}
    load_before = os.getloadavg()
    for r in range(args.repeats + 1):  # round 0 warms up
        for name, run in paths.items():
            t0 = time.perf_counter()
            outputs[name] = run()
            if r:
                seconds[name].append(time.perf_counter() - t0)
    same_texts = outputs["generate, unmerged"] == outputs["generate, merged"]
    score_gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                    for a, b in zip(outputs["multiple choice, unmerged"],
                                    outputs["multiple choice, merged"]))
    per_item = {"generate": len(rewrites), "multiple choice": len(items)}
    result = {"date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "threads": get_settings().threads, "mode": get_settings().mode,
              "adapter": f"LoRA r={config.r} on {sorted(config.target_modules)}",
              "rewrites": len(rewrites), "new_tokens": args.new_tokens,
              "questions": len(items), "repeats": args.repeats, "warm_up_rounds": 1,
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "same_generated_texts": same_texts, "max_score_difference": score_gap,
              "paths": {}}
    for name, secs in seconds.items():
        n = per_item[name.split(",")[0]]
        ms = [1000 * s / n for s in secs]
        result["paths"][name] = {"median_ms_per_item": round(statistics.median(ms), 1),
                                 "min_ms": round(min(ms), 1), "max_ms": round(max(ms), 1)}
    for task in per_item:
        slow = result["paths"][f"{task}, unmerged"]["median_ms_per_item"]
        fast = result["paths"][f"{task}, merged"]["median_ms_per_item"]
        result[f"{task}_speedup"] = round(slow / fast, 2)
    write_json_atomic(Path(args.out), result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
