"""Lever L6 of issue 15, measured: the output head only where a label is, against every
position, on the course's own LoRA recipe (docs/performance.md).

Trains `recipes.LOCAL_SFT` (LoRA r=16 on the style chats, 2 rows a pass, recomputed
activations, the lean loss) for `--steps` steps without validation, in a fresh process per
run, alternating the two loss paths (`--repeats` runs each):

- `labelled`: `compat.loss_at_labelled_positions` as the course trains now;
- `every`: the model's forward computes the logits of every position and its own loss
  (the path before L6), by swapping that function for one that does.

Each run reports its training seconds (the Trainer's own, the first step included) and the
memory its training added over the loaded model (`mclab.measure.PeakMemory`). The losses
of the two paths must agree (the same update up to rounding). Writes
reports/probe_lean_loss.json with the load average before and after; run it alone:

    env -u MCLAB_QUICK HF_HUB_OFFLINE=1 python tools/probe_lean_loss.py [--steps 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one_run(path: str, steps: int) -> dict:
    """One training run in this process: the recipe, `path`'s loss, no validation."""
    from mclab import compat, training
    from mclab.config import setup
    from mclab.measure import PeakMemory
    from mclab.models import load_model
    from mclab.recipes import LOCAL_SFT
    from mclab.sweeps import data

    setup()
    if path == "every":
        training.loss_at_labelled_positions = compat.loss_at_every_position
    elif path != "labelled":
        raise ValueError(f"unknown path {path!r}: 'labelled' or 'every'")
    model, tok = load_model()
    train, _ = data("LOCAL_SFT", LOCAL_SFT)  # the recipe's training chats, as the report
    cfg = LOCAL_SFT.training.config(f"probe-{path}", max_steps=steps, eval_steps=0,
                                    patience=0)
    with PeakMemory() as memory:
        result = training.train_sft(model, tok, train, cfg,
                                    peft_config=LOCAL_SFT.lora.config())
    return {"path": path, "seconds": round(result.seconds, 2),
            "added_mb": round(memory.added_mb, 1), "peak_mb": round(memory.peak_mb, 1),
            "losses": [round(x, 5) for x in result.losses]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", choices=("labelled", "every"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "probe_lean_loss.json")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.repeats < 1:
        parser.error(f"need --steps >= 2 and --repeats >= 1 (got {args.steps}, "
                     f"{args.repeats})")
    if args.one:
        print(json.dumps(one_run(args.one, args.steps)))
        return {}
    if os.environ.get("MCLAB_QUICK"):
        parser.error("run it in full mode: env -u MCLAB_QUICK python tools/probe_lean_loss.py")
    from mclab.files import write_json_atomic

    load_before = os.getloadavg()
    runs = []
    for _ in range(args.repeats):
        for path in ("labelled", "every"):  # interleaved: a slow minute hits both
            out = subprocess.run([sys.executable, __file__, "--one", path, "--steps",
                                  str(args.steps)], capture_output=True, text=True,
                                 check=True, cwd=ROOT)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(runs[-1], flush=True)
    by = {p: [r for r in runs if r["path"] == p] for p in ("labelled", "every")}
    summary = {p: {"median_seconds": statistics.median(r["seconds"] for r in rs),
                   "median_added_mb": statistics.median(r["added_mb"] for r in rs)}
               for p, rs in by.items()}
    gap = max(abs(a - b) for x, y in zip(by["labelled"], by["every"])
              for a, b in zip(x["losses"], y["losses"]))
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "steps": args.steps,
              "repeats": args.repeats, "recipe": "LOCAL_SFT",
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "largest_loss_difference": gap, "summary": summary, "runs": runs}
    write_json_atomic(args.out, record)
    print(json.dumps({k: v for k, v in record.items() if k != "runs"}, indent=1))
    return record


if __name__ == "__main__":
    main()
