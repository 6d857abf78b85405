"""Choosing DPO's and GRPO's settings on validation data (issue 13, point 5).

`mclab.sweeps` chooses a supervised recipe by its lowest validation loss. DPO and GRPO
cannot be chosen that way: DPO's loss is scaled by its beta, so losses under two betas do
not compare, and GRPO has no validation loss at all. Here every setting of a grid trains
from the same local SFT model (`recipes.LOCAL_SFT`, trained once per sweep and stopped on
its validation rewrites, as in the report) with the row's own early stopping under the
sweep's cap:

- DPO stops on its loss on the held-out preference pairs (every `Dpo.heldout_every`-th);
- GRPO stops on the mean reward of the completions it samples for the validation
  rewrites' prompts (it trains on the training rewrites' prompts only).

The stopped model then rewrites the local SFT's validation sentences (every 8th training
rewrite, `finetuning.local_split`), and the setting whose rewrites score the highest
locality (`evaluation.locality_score`, the report's score) wins. The 68 held-out rewrites
are never read.

    python tools/choose_settings.py DPO --grid learning_rate=1e-4,3e-4 --grid beta=0.1,0.5 \\
        --max-steps 75 --eval-steps 5
"""

from __future__ import annotations

import dataclasses
import math
import time

# the RL recipes this module chooses, and the recipe fields (beyond `Training`'s) a grid
# may name
RL_FIELDS = {"DPO": {"beta"}, "GRPO": set()}
RULE = ("highest locality of the stopped model's rewrites of the validation rewrites (each "
        "setting stopped on its own validation signal, the best evaluation's weights); ties "
        "(within 1e-6: the embedder's float rounding): the first setting listed")
TIE = 1e-6  # two settings whose rewrites score the same per sentence differ by about 1e-8


def choose(trials: list[dict]) -> int:
    """The index of the trial `RULE` chooses: the first within `TIE` of the highest."""
    from .sweeps import SweepError

    scores = [t["validation_locality"] for t in trials]
    if not scores or any(math.isnan(x) for x in scores):
        raise SweepError(f"no validation locality to choose from: {scores}")
    return next(i for i, x in enumerate(scores) if x >= max(scores) - TIE)


def against_start(record: dict, trial: dict | None = None):
    """A trial's validation locality (by default the chosen one's) against its start's,
    paired on the same rewrites (`stats.paired_bootstrap`): what it adds to the SFT model."""
    from .stats import paired_bootstrap

    trial = trial or record["trials"][choose(record["trials"])]
    return paired_bootstrap(trial["validation_item_scores"],
                            record["start_validation_item_scores"])


def validation_rows():
    """(the training rewrites, the validation rewrites) of the local SFT's split."""
    from .data import load_scenario
    from .finetuning import local_split

    return local_split(load_scenario("local")["rewrites_train"])


def local_sft_start(load=None):
    """The local SFT model (LoRA merged), trained as the report's RL rows start
    (`methods.train_local_sft`): (model, tokenizer, where its early stopping stopped)."""
    from .methods import _early_stopped, train_local_sft
    from .models import load_model

    model, tok = (load or load_model)()
    sft = train_local_sft(model, tok, "sweep-rl-start")
    return sft.model.merge_and_unload(), tok, _early_stopped(sft)


def fresh_copy(start, load=None):
    """A new model holding `start`'s weights: a freshly loaded model with them copied in.
    (Not `copy.deepcopy`: a model that trained keeps hooks and wrapped methods whose
    closures point at the original modules, and a deep copy then runs the original's
    layers. Measured: DPO trained a copy's adapter, and the copy's logits stayed the
    start's to the last digit.)"""
    from .models import load_model

    model, _ = (load or load_model)()
    model.load_state_dict(start.state_dict())
    return model


def train_one(recipe_name: str, start, tok, setting: dict, budget, run_name: str,
              embedder=None, lexicon=None, load=None):
    """One setting trained from a fresh copy of `start` (the local SFT model) as the report
    row trains (`methods.train_dpo_recipe`, `methods.train_grpo_recipe`), with the sweep's
    budget: the `TrainResult`."""
    from .data import load_scenario
    from .methods import train_dpo_recipe, train_grpo_recipe

    # the budget, then the setting's own training fields: a grid may try a shorter cap
    # (DPO's validation loss can fall to any cap, so how long to train is a setting too)
    overrides = {"max_steps": budget.max_steps, "eval_steps": budget.eval_steps,
                 "patience": budget.patience}
    overrides.update({k: v for k, v in setting.items() if k not in RL_FIELDS[recipe_name]})
    model, local = fresh_copy(start, load), load_scenario("local")
    if recipe_name == "DPO":
        return train_dpo_recipe(model, tok, local["preferences"], run_name,
                                beta=setting.get("beta"), **overrides)
    return train_grpo_recipe(model, tok, local["rewrites_train"], lexicon, embedder, run_name,
                             **overrides)


def sweep(recipe_name: str, grid: list[dict], budget, load=None, progress: bool = True,
          previous: dict | None = None) -> dict:
    """Train DPO or GRPO once per setting of `grid` (checked by `mclab.sweeps.check`) from
    one local SFT model (early stopping under `budget`), score each stopped model's
    locality on the validation rewrites, and choose the highest (`RULE`). `previous`: an
    earlier sweep of the same recipe, budget and data, extended (`mclab.sweeps.sweep`)."""
    from .config import get_settings
    from .data import load_scenario
    from .evaluation import locality_score
    from .methods import VALIDATION_SIGNAL, _early_stopped
    from .models import load_embedder
    from .scorecard import rewrite_local
    from .sweeps import DATA, SweepError, _check_extension

    mode = get_settings().mode
    mine = {"recipe": recipe_name, "mode": mode, "budget": dataclasses.asdict(budget)}
    _check_extension(previous, mine)  # before any model loads
    _, val_rows = validation_rows()
    sources = [r["neutral"] for r in val_rows]
    _check_extension(previous, {"validation_rows": len(sources)})
    lexicon, embedder = load_scenario("local")["lexicon"], load_embedder()
    trials = list(previous["trials"]) if previous else []
    tried = [t["setting"] for t in trials]
    todo = [s for s in grid if s not in tried]
    start_time = time.perf_counter()
    start, tok, start_stopped = local_sft_start(load)
    if previous is not None and previous.get("start", {}).get("best_step") != \
            start_stopped["best_step"]:
        raise SweepError("cannot extend that sweep: its SFT start stopped at another step "
                         f"({previous.get('start', {}).get('best_step')} then, "
                         f"{start_stopped['best_step']} now)")
    def locality_of(model):
        return locality_score(rewrite_local(model, tok, sources), sources, lexicon, embedder)

    start_locality = locality_of(start)  # what a setting must beat: its own start
    stage = recipe_name.lower()
    for n, setting in enumerate(todo):
        i = len(tried) + n
        if progress:
            print(f"{recipe_name} setting {n + 1} of {len(todo)} to train: {setting}",
                  flush=True)
        result = train_one(recipe_name, start, tok, setting, budget,
                           f"sweep-{stage}-{i}", embedder, lexicon, load)
        stopped = _early_stopped(result, stage=stage)
        signal = VALIDATION_SIGNAL.get(stage, ("validation_loss",))[0]
        locality = locality_of(result.model)
        trials.append({"setting": setting, "validation_signal": signal,
                       "validation_curve": stopped[f"{stage}_{signal}"],
                       "best_step": result.best_step, "steps_run": result.steps,
                       "stopped_early": result.steps < setting.get("max_steps",
                                                                   budget.max_steps),
                       "validation_locality": locality.score,
                       "validation_style_rate": locality.style_rate,
                       "validation_meaning": locality.meaning,
                       "validation_item_scores": [float(x) for x in locality.item_scores],
                       "seconds": result.seconds})
        del result
    chosen = choose(trials)
    return {"recipe": recipe_name, "mode": mode, "data": DATA[recipe_name],
            "validation_rows": len(sources), "budget": dataclasses.asdict(budget),
            "start": start_stopped, "start_validation_locality": start_locality.score,
            "start_validation_item_scores": [float(x) for x in start_locality.item_scores],
            "rule": RULE, "trials": trials,
            "choice": trials[chosen]["setting"], "choice_steps": trials[chosen]["best_step"],
            "seconds": time.perf_counter() - start_time + (previous or {}).get("seconds", 0.0)}
