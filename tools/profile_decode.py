"""Where greedy decoding's time goes (issue 15, docs/performance-plan.md lever L8).

Decoding the 68 locality rewrites is the largest share of 00, 01, 05 and 07's answering
time. This tool loads the base model (full mode, the course's threads), takes the first
`--rows` held-out locality prompts (the eval's own batch of 17 by default) and measures,
after a warm-up, with `--repeats` repeats each (the median is kept):

- `prefill_s`: `mclab.generation.generate` on the batch with one new token: reading the
  prompts (their shared start once) and the first decode step;
- `generate_s`: `mclab.generation.generate` on the batch, greedy, `LOCAL_MAX_NEW_TOKENS`
  new tokens at most (the eval's call, its shared prompt start read once);
- `step_s`: (generate - prefill) / (decode steps - 1), the cost of one more decode step for
  the batch (a batch decodes until its longest rewrite ends);
  the same for 1 and 4 rows, to tell a per-step cost (flat in rows) from a per-row one;
- one `torch.profiler` trace of the batch's `generate`: the operators with the most
  self CPU time, and how much of the wall time no operator accounts for (Python, hooks).

It writes reports/profile_decode.json (with the machine's load average before and after:
a number is clean only when the load stayed near the course's 2 threads) and prints a
markdown summary. Run it alone:

    env -u MCLAB_QUICK HF_HUB_OFFLINE=1 python tools/profile_decode.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=17)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "profile_decode.json")
    args = parser.parse_args(argv)
    if args.rows < 4 or args.repeats < 1:
        parser.error(f"need --rows >= 4 and --repeats >= 1 (got {args.rows}, {args.repeats})")
    if os.environ.get("MCLAB_QUICK"):
        parser.error("run it in full mode: env -u MCLAB_QUICK python tools/profile_decode.py")

    from torch.profiler import ProfilerActivity, profile

    from mclab.config import get_settings, setup
    from mclab.files import write_json_atomic
    from mclab.generation import generate
    from mclab.models import load_model
    from mclab.scorecard import LOCAL_MAX_NEW_TOKENS, eval_sets, local_prompt

    load_before = os.getloadavg()
    setup()  # the course's threads and seed, as a notebook's first cell
    model, tok = load_model()
    sentences = list(eval_sets()["local_eval"]["neutral"])
    if len(sentences) < args.rows:
        parser.error(f"only {len(sentences)} locality sentences; --rows {args.rows} is too many")
    prompts = [local_prompt(s) for s in sentences]

    def measure(rows: int) -> dict:
        batch = prompts[:rows]
        out = generate(model, tok, batch, max_new_tokens=LOCAL_MAX_NEW_TOKENS,
                       batch_size=rows, details=True)
        steps = max(r.new_tokens for r in out)
        prefill = median_seconds(lambda: generate(model, tok, batch, batch_size=rows,
                                                  max_new_tokens=1), args.repeats)
        gen = median_seconds(lambda: generate(model, tok, batch, batch_size=rows,
                                              max_new_tokens=LOCAL_MAX_NEW_TOKENS),
                             args.repeats)
        return {"rows": rows, "prompt_tokens": max(r.prompt_tokens for r in out),
                "decode_steps": steps, "new_tokens": [r.new_tokens for r in out],
                "prefill_s": round(prefill, 4), "generate_s": round(gen, 4),
                "step_s": round((gen - prefill) / max(1, steps - 1), 5)}

    scaling = [measure(n) for n in (1, 4, args.rows)]

    batch = prompts[:args.rows]
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        generate(model, tok, batch, batch_size=args.rows, max_new_tokens=LOCAL_MAX_NEW_TOKENS)
    wall = time.perf_counter() - start
    events = prof.key_averages()
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:20]
    ops_s = sum(e.self_cpu_time_total for e in events) / 1e6
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "threads": get_settings().threads,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "max_new_tokens": LOCAL_MAX_NEW_TOKENS, "scaling": scaling,
        "profile": {"wall_s": round(wall, 3), "operators_self_s": round(ops_s, 3),
                    "top": [{"op": e.key, "calls": e.count,
                             "self_s": round(e.self_cpu_time_total / 1e6, 4)} for e in top]},
    }
    write_json_atomic(args.out, record)
    print("| rows | prompt tokens | decode steps | prefill s | generate s | s per step |")
    print("|---|---|---|---|---|---|")
    for s in scaling:
        print(f"| {s['rows']} | {s['prompt_tokens']} | {s['decode_steps']} | {s['prefill_s']} "
              f"| {s['generate_s']} | {s['step_s']} |")
    print(f"\nprofiled generate of {args.rows} rows: {wall:.2f} s wall (profiler on), "
          f"{ops_s:.2f} s in operators' own time")
    for e in record["profile"]["top"]:
        print(f"  {e['op']}: {e['self_s']} s in {e['calls']} calls")
    print(f"load average {record['load_average_before']} -> {record['load_average_after']}; "
          f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
