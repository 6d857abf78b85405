"""Choose the number of medical SFT steps on the validation chats and record it.

Trains the medical SFT recipe (`recipes.MEDICAL_SFT`) for up to 16 steps of 8 chats (a
little over one pass over the 113 of `sft_train.jsonl`; what 2 shared cores allowed), from
the base model and from the CPT + replay model (the report's two starting points), logging
the loss on `sft_val.jsonl` every 4 steps. The chosen number of
steps is the one with the lowest mean validation loss over the two starting points, so both
rows get the same SFT budget. Writes `reports/medical_sft_steps.json`; copy the choice
into `recipes.MedicalSft` (`tests/test_recipes.py` checks that they agree). The held-out
evals (eval_mc.jsonl, heldout_prose.jsonl) are not read.

    python tools/choose_medical_sft_steps.py [--out reports/medical_sft_steps.json]
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
from mclab.config import pick, setup  # noqa: E402
from mclab.files import write_json_atomic  # noqa: E402
from mclab.finetuning import sft_data  # noqa: E402
from mclab.methods import Context, _train_medical_cpt, validation_curve  # noqa: E402
from mclab.training import train_sft  # noqa: E402

EVERY = 4  # validation loss every this many steps
MAX_STEPS = 16  # the most steps tried (full mode)


def curve(model, tok, name: str, max_steps: int) -> list[list[float]]:
    recipe = recipes.MEDICAL_SFT
    train, val = sft_data("medical", n_train=recipe.n_train.get(), n_val=recipe.n_val.get())
    cfg = recipe.training.config(f"choose-{name}", max_steps=max_steps, eval_steps=EVERY)
    return validation_curve(train_sft(model, tok, train, cfg, eval_dataset=val))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "reports" / "medical_sft_steps.json"))
    args = parser.parse_args(argv)
    settings = setup()
    start = time.perf_counter()
    recipe = recipes.MEDICAL_SFT
    n_train = len(sft_data("medical", n_train=recipe.n_train.get())[0])
    max_steps = pick(EVERY, MAX_STEPS)
    ctx = Context(parts=())
    model, tok = ctx.base()
    curves = {"base": curve(model, tok, "from-base", max_steps)}
    del model
    cpt, tok = _train_medical_cpt(ctx)
    curves["CPT + replay"] = curve(cpt.model, tok, "from-cpt", max_steps)
    steps = [s for s, _ in curves["base"]]
    mean = {s: sum(dict(c)[s] for c in curves.values()) / len(curves) for s in steps}
    chosen = min(mean, key=mean.get)
    result = {"mode": settings.mode, "max_steps_tried": max_steps, "eval_every": EVERY,
              "training_chats": n_train,
              "passes_at_max": max_steps * recipe.training.batch_size / n_train,
              "validation_chats": len(sft_data("medical", n_val=recipe.n_val.get())[1]),
              "curves": curves, "mean_validation_loss": [[s, mean[s]] for s in steps],
              "chosen_steps": chosen,
              "rule": "lowest mean validation loss over the two starting points",
              "seconds": time.perf_counter() - start}
    write_json_atomic(Path(args.out), result)
    print(f"chosen: {chosen} steps (mean validation loss {mean[chosen]:.4f}); "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
