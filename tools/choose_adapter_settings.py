"""Choose the bottleneck adapters' size and learning rate on validation data and record them.

Trains `recipes.BOTTLENECK` on 06's training rewrites (one epoch, the recipe's other
settings) for every size x rate of its grid and scores each by the loss of the validation
rewrites (`finetuning.style_split`, the split 06 and the report use). Writes
`reports/adapter_settings.json`; copy the chosen pair into `recipes.Bottleneck`
(`tests/test_recipes.py` checks they agree). The held-out eval is never read.

    python tools/choose_adapter_settings.py [--out reports/adapter_settings.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mclab import recipes  # noqa: E402
from mclab.adapters import remove_adapters, train_bottleneck  # noqa: E402
from mclab.config import setup  # noqa: E402
from mclab.data import load_scenario  # noqa: E402
from mclab.files import write_json_atomic  # noqa: E402
from mclab.finetuning import style_examples, style_split  # noqa: E402
from mclab.models import load_model  # noqa: E402
from mclab.scorecard import local_prompt  # noqa: E402
from mclab.training import chat_dataset  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "reports" / "adapter_settings.json"))
    args = parser.parse_args(argv)
    settings = setup()
    recipe = recipes.BOTTLENECK
    start = time.perf_counter()
    model, tokenizer = load_model()
    train_rows, val_rows = style_split(load_scenario("local"), recipes.PREFIX.n_val.get())
    data = chat_dataset(style_examples(train_rows))
    prompts = [local_prompt(r["neutral"]) for r in val_rows]
    answers = [r["local"] for r in val_rows]
    grid = []
    for size in recipe.grid_sizes:
        for rate in recipe.grid_rates:
            cfg = recipe.training.config(f"choose-adapter-m{size}", learning_rate=rate)
            result, row = train_bottleneck(model, tokenizer, data, cfg, size, recipe.where,
                                           prompts, answers)
            grid.append({"size": size, "learning_rate": rate, "val_loss": row["val_loss"],
                         "trainable": row["trainable"], "seconds": round(row["seconds"], 1)})
            print(grid[-1], flush=True)
            model = remove_adapters(result.model)
    best = min(grid, key=lambda g: g["val_loss"])
    record = {"chosen": {"size": best["size"], "learning_rate": best["learning_rate"]},
              "rule": "the lowest validation loss after one epoch",
              "where": list(recipe.where), "n_val": len(val_rows), "mode": settings.mode,
              "grid": grid, "seconds": round(time.perf_counter() - start, 1)}
    if settings.quick:
        print("quick mode: not written (the grid is chosen in full mode)", record)
        return 0
    write_json_atomic(Path(args.out), record)
    print(f"chosen {record['chosen']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
