"""Answering with the prompts' shared start read once per batch (`mclab.generation`'s
`shared_prefix_length`, what `generate` and multiple-choice scoring do) against reading
every prompt whole (the path before).

The base model, the same inputs: the held-out locality rewrites (generation, greedy) and
company questions (multiple choice, closed book). One warm-up, then `--repeats` rounds,
the paths interleaved; the median and the min-max per item, the load average before and
after. Also checks that both paths give the same texts and scores.

    python tools/bench_serving.py [--rewrites 68] [--questions 85] [--repeats 3]
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
from mclab.evaluation import (ANSWER_PREFIX, KNOWLEDGE_SYSTEM, _score_batch,  # noqa: E402
                              knowledge_prompt, option_logprobs)
from mclab.files import write_json_atomic  # noqa: E402
from mclab.generation import (_generate_batches, format_chat, generate,  # noqa: E402
                              shared_prefix_length)
from mclab.models import load_model  # noqa: E402
from mclab.scorecard import eval_sets, local_prompt  # noqa: E402


def whole_prompts(model, tok, prompts, new_tokens):
    """Generation as before: every prompt read whole, padded on the left."""
    texts = [format_chat(tok, p) for p in prompts]
    old, tok.padding_side = tok.padding_side, "left"
    try:
        with torch.no_grad():
            return [g.text for g in _generate_batches(model, tok, texts, new_tokens, 0.0, 16)]
    finally:
        tok.padding_side = old


def whole_scores(model, tok, prompts, options):
    """Multiple choice as before: every prompt read whole."""
    out = []
    with torch.no_grad():
        for start in range(0, len(prompts), 8):
            out += _score_batch(model, tok, prompts[start:start + 8],
                                options[start:start + 8], "mean")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rewrites", type=int, default=68)
    parser.add_argument("--questions", type=int, default=85)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench_serving.json"))
    args = parser.parse_args()
    if min(args.rewrites, args.questions, args.repeats, args.new_tokens) < 1:
        parser.error("--rewrites, --questions, --new-tokens and --repeats must be >= 1")

    setup()
    model, tok = load_model()
    sets = eval_sets()
    rewrites = [local_prompt(s) for s in list(sets["local_eval"]["neutral"])[:args.rewrites]]
    items = list(sets["company_mc"])[:args.questions]
    mc_prompts = [format_chat(tok, knowledge_prompt(it["question"]), KNOWLEDGE_SYSTEM)
                  + ANSWER_PREFIX for it in items]
    mc_options = [[" " + o for o in it["options"]] for it in items]

    paths = {
        "generate, whole prompts": lambda: whole_prompts(model, tok, rewrites, args.new_tokens),
        "generate, shared start once":
            lambda: generate(model, tok, rewrites, max_new_tokens=args.new_tokens),
        "multiple choice, whole prompts": lambda: whole_scores(model, tok, mc_prompts,
                                                               mc_options),
        "multiple choice, shared start once":
            lambda: option_logprobs(model, tok, mc_prompts, mc_options),
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

    def shared(texts):
        return shared_prefix_length([tok(t, add_special_tokens=False)["input_ids"]
                                     for t in texts])

    same = sum(a == b for a, b in zip(outputs["generate, whole prompts"],
                                      outputs["generate, shared start once"]))
    gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
              for a, b in zip(outputs["multiple choice, whole prompts"],
                              outputs["multiple choice, shared start once"]))
    per_item = {"generate": len(rewrites), "multiple choice": len(items)}
    settings = get_settings()
    result = {"date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "threads": settings.threads, "mode": settings.mode,
              "rewrites": len(rewrites), "new_tokens": args.new_tokens,
              "questions": len(items), "repeats": args.repeats, "warm_up_rounds": 1,
              "shared_tokens": {"generate": shared([format_chat(tok, p) for p in rewrites]),
                                "multiple choice": shared(mc_prompts)},
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "same_generated_texts": f"{same} of {len(rewrites)}",
              "max_score_difference": gap, "paths": {}, "speedups": {}}
    for name, secs in seconds.items():
        per = [1000 * s / per_item[name.split(",")[0]] for s in secs]
        result["paths"][name] = {"median_ms_per_item": round(statistics.median(per), 1),
                                 "min_ms": round(min(per), 1), "max_ms": round(max(per), 1)}
    for task in per_item:
        before = result["paths"][f"{task}, whole prompts"]["median_ms_per_item"]
        after = result["paths"][f"{task}, shared start once"]["median_ms_per_item"]
        result["speedups"][task] = round(before / after, 2)
    write_json_atomic(Path(args.out), result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
