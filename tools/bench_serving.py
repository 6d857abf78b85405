"""Generation with the prompts' shared start read once per batch (`mclab.generation`'s
`shared_prefix_length`, what `generate` does) against reading every prompt whole (the
path before).

The base model, the same inputs: the held-out locality rewrites, greedy. One warm-up, then
`--repeats` rounds, the two paths interleaved; the median and the min-max per rewrite, the
load average before and after. Also checks that both paths give the same texts.

(At commit 1fad1f5 this tool also measured multiple-choice scoring with the shared start:
1.06x, with overlapping ranges, so `evaluation.option_logprobs` kept reading whole prompts.
The committed reports/bench_serving.json is that run's, so it also holds the multiple-choice
paths and a per-task `shared_tokens`; a rerun of this version writes the generation paths
only, with the same generation code.)

    python tools/bench_serving.py [--rewrites 68] [--repeats 3] [--out reports/bench_serving.json]
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

import torch  # noqa: E402

from mclab.config import get_settings, setup  # noqa: E402
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rewrites", type=int, default=68)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench_serving.json"))
    args = parser.parse_args()
    if min(args.rewrites, args.repeats, args.new_tokens) < 1:
        parser.error("--rewrites, --new-tokens and --repeats must be >= 1")

    setup()
    model, tok = load_model()
    sets = eval_sets()
    rewrites = [local_prompt(s) for s in list(sets["local_eval"]["neutral"])[:args.rewrites]]

    paths = {
        "generate, whole prompts": lambda: whole_prompts(model, tok, rewrites, args.new_tokens),
        "generate, shared start once":
            lambda: generate(model, tok, rewrites, max_new_tokens=args.new_tokens),
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
    per_item = {"generate": len(rewrites)}
    settings = get_settings()
    result = {"date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "threads": settings.threads, "mode": settings.mode,
              "rewrites": len(rewrites), "new_tokens": args.new_tokens,
              "repeats": args.repeats, "warm_up_rounds": 1,
              "shared_tokens": shared([format_chat(tok, p) for p in rewrites]),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "same_generated_texts": f"{same} of {len(rewrites)}",
              "paths": {}, "speedups": {}}
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
