"""Check a multi-process launch before a long run: a few steps of one recipe, and the batch.

Under `accelerate launch` (or `torchrun`) every process runs this script; each trains the
recipe's settings on the local rewrites for `--steps` steps and writes what its Trainer
was given (device, processes, rows per pass, accumulation). Process 0 then prints the rows
each optimizer step saw over all processes, which must equal the recipe's batch size:

    accelerate launch --num_processes 2 tools/launch_check.py --recipe LOCAL_SFT
    python tools/launch_check.py --recipe FULL_SFT          # one process, for comparison

It exits with 1 when the global batch differs from the recipe's. It is a check of the
launch, not a method: the data are the local rewrites whatever the recipe, and `--steps`
overrides the recipe's step count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MCLAB_RUNS", tempfile.mkdtemp(prefix="mclab-launch-runs-"))

from transformers import TrainerCallback  # noqa: E402

from mclab import recipes  # noqa: E402
from mclab.compat import checkpointing_argument  # noqa: E402
from mclab.config import setup  # noqa: E402
from mclab.data import load_scenario  # noqa: E402
from mclab.device import choose_device, is_main_process, num_processes  # noqa: E402
from mclab.finetuning import style_examples  # noqa: E402
from mclab.models import load_model, model_name  # noqa: E402
from mclab.training import chat_dataset, effective_batch, train_sft  # noqa: E402


class RecordArgs(TrainerCallback):
    """What the Trainer of this process was given, read when training starts."""

    def __init__(self):
        self.seen: dict = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.seen = {"process": args.process_index, "processes": args.world_size,
                     "device": str(args.device),
                     "per_device_train_batch_size": args.per_device_train_batch_size,
                     "gradient_accumulation_steps": args.gradient_accumulation_steps,
                     "gradient_checkpointing": bool(getattr(args,
                                                            checkpointing_argument(type(args)))),
                     "global_batch": effective_batch(args)}


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    trainable = sorted(n for n, r in recipes.BY_NAME.items() if hasattr(r, "training"))
    parser.add_argument("--recipe", default="LOCAL_SFT", choices=trainable)
    parser.add_argument("--steps", type=int, default=1, help="optimizer steps (default 1)")
    parser.add_argument("--rows", type=int, default=32, help="training rows (default 32)")
    parser.add_argument("--out", help="folder for one JSON per process (default: a temp folder)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="mclab-launch-"))
    out.mkdir(parents=True, exist_ok=True)
    setup()
    recipe = recipes.BY_NAME[args.recipe]
    # a check of the launch: its steps, no validation split, so no early stopping
    cfg = recipe.training.config(f"launch-{args.recipe.lower()}", max_steps=args.steps,
                                 save=False, patience=0)
    lora = getattr(recipe, "lora", None)
    model, tok = load_model()
    rows = list(load_scenario("local")["rewrites_train"])[:args.rows]
    record = RecordArgs()
    start = time.perf_counter()
    result = train_sft(model, tok, chat_dataset(style_examples(rows)), cfg,
                       peft_config=lora.config() if lora else None, callbacks=[record])
    seen = {**record.seen, "recipe": args.recipe, "recipe_batch": cfg.batch_size,
            "micro_batch": cfg.micro_batch, "model": model_name(),
            "mclab_device": str(choose_device().device), "steps": result.steps,
            "loss": result.losses[-1] if result.losses else None,
            "seconds": time.perf_counter() - start}
    (out / f"process-{seen['process']}.json").write_text(json.dumps(seen, indent=1))
    if not is_main_process():
        return 0
    ok = seen["global_batch"] == cfg.batch_size and seen["processes"] == num_processes()
    print(f"{args.recipe}: {seen['processes']} process(es) x "
          f"{seen['per_device_train_batch_size']} rows a pass x "
          f"{seen['gradient_accumulation_steps']} passes = {seen['global_batch']} rows a step "
          f"(the recipe's batch: {cfg.batch_size}) on {seen['device']}; "
          f"{'OK' if ok else 'MISMATCH'}; per-process records in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
