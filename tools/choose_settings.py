"""Choose a recipe's settings on its validation split and record the choice.

Every setting of the grid (the product of the --grid lists) trains the recipe from the base
model with early stopping on validation data held out of the training files (`mclab.sweeps`);
the lowest best validation loss wins. DPO and GRPO train from the local SFT model and are
chosen on the locality of their rewrites of the validation rewrites (`mclab.rl_sweeps`).
Writes reports/settings/<RECIPE>.json; copy the choice into `mclab/recipes.py` and say so in
docs/how-settings-were-chosen.md. The held-out evals are never read.

    python tools/choose_settings.py FULL_SFT --grid learning_rate=1e-5,3e-5,5e-5,1e-4 \\
        --max-steps 66 --eval-steps 11
    python tools/choose_settings.py LOCAL_SFT --grid r=4,16,64 --grid learning_rate=5e-4,2e-3
    python tools/choose_settings.py LOCAL_SFT --grid "targets=attention (q, v)|all linear"
    python tools/choose_settings.py FULL_SFT --grid learning_rate=4e-4 --extend ...
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mclab.config import get_settings, setup  # noqa: E402
from mclab.files import write_json_atomic  # noqa: E402
from mclab.sweeps import Budget, SweepError, check, record_path, sweep  # noqa: E402


def parse_grid(specs: list[str]) -> list[dict]:
    """["a=1,2", "b=x"] -> [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]; LoRA targets by their
    names in `peft_methods.LORA_TARGETS`, separated by |."""
    from mclab.peft_methods import LORA_TARGETS

    axes = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not values:
            raise SweepError(f"--grid {spec!r}: write NAME=VALUE,VALUE,...")
        parsed = []
        # LoRA target sets are named as in 06's widget, names that hold commas: split on |
        for raw in values.split("|" if name.strip() == "targets" else ","):
            raw = raw.strip()
            if name == "targets":
                if raw not in LORA_TARGETS:
                    raise SweepError(f"unknown targets {raw!r}; choose from "
                                     f"{sorted(LORA_TARGETS)}")
                parsed.append(tuple(LORA_TARGETS[raw]))
                continue
            try:
                parsed.append(ast.literal_eval(raw))
            except (ValueError, SyntaxError):
                parsed.append(raw)
        axes.append([(name.strip(), v) for v in parsed])
    return [dict(combo) for combo in itertools.product(*axes)]


def budget(args) -> Budget:
    """The flags' budget; a flag left out takes the recipe's own (its full-mode value), so
    that a sweep chooses under the budget the recipe's report row trains."""
    from mclab import recipes

    training = recipes.BY_NAME[args.recipe].training

    def full(value):
        return getattr(value, "full", value)

    given = (args.max_steps, args.eval_steps, args.patience)
    own = (full(training.max_steps), full(training.eval_steps), training.patience)
    return Budget(*(g if g is not None else o for g, o in zip(given, own)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="a recipe of mclab.recipes, e.g. FULL_SFT")
    parser.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2")
    parser.add_argument("--max-steps", type=int, help="the cap of every setting (default: "
                                                        "the recipe's, in full mode)")
    parser.add_argument("--eval-steps", type=int, help="default: the recipe's")
    parser.add_argument("--patience", type=int, help="default: the recipe's")
    parser.add_argument("--out", help="default reports/settings/<RECIPE>.json (quick mode: "
                                          "under MCLAB_RUNS)")
    parser.add_argument("--extend", action="store_true",
                        help="keep the trials already in --out and train only the new settings "
                             "(same recipe, budget and data), e.g. when the best one sat at the "
                             "grid's edge")
    args = parser.parse_args(argv)
    settings = get_settings()  # quick mode proves the code runs: never over the committed choice
    out = Path(args.out or (record_path(args.recipe) if not settings.quick else
                            settings.runs_dir / "settings" / f"{args.recipe}.json"))
    previous = None
    try:
        grid = parse_grid(args.grid)
        check(args.recipe, grid)  # before any model loads
        if args.extend:
            if not out.exists():
                raise SweepError(f"--extend: no earlier sweep at {out}; run without --extend")
            previous = json.loads(out.read_text())
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    setup()
    try:
        record = sweep(args.recipe, grid, budget(args), previous=previous)
    except SweepError as err:  # an extension that does not match: nothing trained
        print(f"error: {err}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, record)
    for trial in record["trials"]:
        what = (f"validation locality {trial['validation_locality']:.4f}, stopped"
                if "validation_locality" in trial else
                f"best validation loss {trial['best_validation_loss']:.4f}")
        print(f"{trial['setting']}: {what} at step {trial['best_step']} "
              f"({trial['steps_run']} run)")
    print(f"chosen: {record['choice']} ({record['choice_steps']} steps); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
