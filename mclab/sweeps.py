"""Choosing a supervised recipe's settings on validation data (issue 13, point 5).

Each setting of a small grid trains the recipe from the base model with early stopping on
the recipe's own validation split (`TrainConfig.patience`: stop after `patience`
evaluations without a lower validation loss, keep the best evaluation's weights), under a
cap of steps. The setting with the lowest best validation loss wins. The held-out evals are
never read: the validation splits are the ones `finetuning.sft_data` and
`finetuning.style_split` hold out of the *training* files.

All the targets here are trained on the same loss, the completion's negative
log-likelihood, so their validation losses compare across learning rates, ranks, target
modules, prefix lengths and adapter widths. Continued pre-training (CPT) is swept the same
way on plain text: every token's negative log-likelihood on dermatology paragraphs held back
of its training file (`pretraining.medical_split`). DPO's loss depends on its beta, and
GRPO has no validation loss: `mclab.rl_sweeps` chooses them on the locality of the stopped
model's rewrites of validation sentences, and `sweep` hands them over.

    python tools/choose_settings.py FULL_SFT --grid learning_rate=1e-5,3e-5,5e-5,1e-4
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from . import recipes, rl_sweeps
from .rl_sweeps import RL_FIELDS

# what each recipe trains on: the dataset of `finetuning.sft_data`, or 06's style split
# (06's LoRA and full SFT take 05's and 04's style recipes, swept as LOCAL_SFT and STYLE_SFT)
DATA = {"FULL_SFT": "company", "LORA_SFT": "company", "STYLE_SFT": "local",
        "LOCAL_SFT": "local", "MEDICAL_SFT": "medical", "PREFIX": "style split",
        "BOTTLENECK": "style split", "CPT": "dermatology + replay",
        # from the local SFT model, chosen on its validation rewrites' locality (rl_sweeps)
        "DPO": "preference pairs", "GRPO": "rewrite prompts"}
ADAPTER_FIELDS = {"r", "alpha", "targets", "virtual_tokens", "size", "where"}


class SweepError(ValueError):
    """A recipe or a setting the sweep cannot train; raised before any training."""


@dataclass(frozen=True)
class Budget:
    """How long each setting may train: the cap, the evaluation cadence, the patience."""

    max_steps: int
    eval_steps: int
    patience: int = 2


def check(recipe_name: str, grid: list[dict]) -> object:
    """The recipe, after checking that every setting of `grid` names a field it has."""
    if recipe_name not in DATA:
        raise SweepError(f"no validation sweep for {recipe_name!r}; choose one of "
                         f"{sorted(DATA)}")
    if not grid:
        raise SweepError("the grid is empty: give at least one setting")
    recipe = recipes.BY_NAME[recipe_name]
    training = {f.name for f in dataclasses.fields(recipes.Training)}
    # beside Training's fields, a grid names adapter fields, or an RL recipe's own (beta)
    extra, kind = ((RL_FIELDS[recipe_name], "recipe") if recipe_name in RL_FIELDS
                   else (ADAPTER_FIELDS, "adapter"))
    for setting in grid:
        unknown = set(setting) - training - extra
        if unknown:
            raise SweepError(f"{recipe_name}: unknown settings {sorted(unknown)}; a setting "
                             f"names Training fields {sorted(training)} or {kind} fields "
                             f"{sorted(extra)}")
        adapter = set(setting) & ADAPTER_FIELDS
        if adapter and not _adapter_fields(recipe) >= adapter:
            raise SweepError(f"{recipe_name} has no adapter field {sorted(adapter)}")
    return recipe


def _adapter_fields(recipe) -> set[str]:
    if getattr(recipe, "lora", None) is not None:
        return {"r", "alpha", "targets"}
    if isinstance(recipe, recipes.Prefix):
        return {"virtual_tokens"}
    if isinstance(recipe, recipes.Bottleneck):
        return {"size", "where"}
    return set()


def data(recipe_name: str, recipe, n_val: int | None = None, load=None):
    """(train, validation) chats of the recipe, validation held out of the training files:
    what its sweep and its report row train and validate on (`n_val`: the recipe's; CPT's
    text, whose replay paragraphs the base model from `load` writes)."""
    from .finetuning import sft_data, style_examples, style_split
    from .training import chat_dataset

    kind = DATA[recipe_name]
    if kind == "dermatology + replay":  # plain text: CPT's own split, replay by the base
        from .config import get_settings
        from .models import load_model
        from .pretraining import medical_cpt_texts, text_dataset

        model, tok = (load or load_model)()
        train, val = medical_cpt_texts(model, tok, recipe, seed=get_settings().seed)
        return text_dataset(train), text_dataset(val)
    n_val = n_val or (recipe.n_val.get() if hasattr(recipe, "n_val") else None)
    if kind == "style split":
        train, val = style_split(_local(), n_val or recipes.PREFIX.n_val.get())
        return chat_dataset(style_examples(train)), chat_dataset(style_examples(val))
    kwargs = {"train_on": recipe.train_on} if kind == "company" else {}
    return sft_data(kind, n_train=getattr(recipe, "n_train", recipes.Sized(None, None)).get(),
                    n_val=n_val, **kwargs)


def _local():
    from .data import load_scenario

    return load_scenario("local")


def prepare(recipe, model, tokenizer, setting: dict):
    """The model as the recipe trains it (adapter inserted with the setting's shape) and the
    peft config to pass to training (None: the model is ready)."""
    if getattr(recipe, "lora", None) is not None:
        lora = dataclasses.replace(recipe.lora, **{k: v for k, v in setting.items()
                                                   if k in ("r", "alpha", "targets")})
        return model, lora.config()
    if isinstance(recipe, recipes.Prefix):
        from .peft_methods import prefix_config, prefix_from_text

        n = setting.get("virtual_tokens", recipe.virtual_tokens)
        return prefix_from_text(model, tokenizer, prefix_config(n), recipe.init_text), None
    if isinstance(recipe, recipes.Bottleneck):
        from .adapters import add_adapters

        return add_adapters(model, setting.get("size", recipe.size),
                            setting.get("where", recipe.where)), None
    return model, None


def sweep(recipe_name: str, grid: list[dict], budget: Budget, load=None,
          n_val: int | None = None, progress: bool = True, previous: dict | None = None) -> dict:
    """Train the recipe once per setting of `grid` (early stopping under `budget`) and
    record each one's validation curve and best loss; `choice` is the lowest best loss
    (ties: the first setting listed).

    `previous`: an earlier sweep's record of the same recipe, budget and data, extended
    (a grid whose best setting sat at its edge): its trials are kept, the settings it tried
    are not trained again, and the choice is made over all of them.
    """
    from .config import get_settings
    from .methods import validation_curve
    from .models import load_model
    from .training import train_sft

    recipe = check(recipe_name, grid)
    if recipe_name in RL_FIELDS:  # DPO and GRPO: chosen on locality, not a loss
        return rl_sweeps.sweep(recipe_name, grid, budget, load=load, progress=progress,
                               previous=previous)
    mode = get_settings().mode
    mine = {"recipe": recipe_name, "mode": mode, "budget": dataclasses.asdict(budget)}
    _check_extension(previous, mine)  # before any model loads (CPT's data needs one)
    train, val = data(recipe_name, recipe, n_val, load=load)
    _check_extension(previous, {"training_rows": len(train), "validation_rows": len(val)})
    trials = list(previous["trials"]) if previous else []
    tried = [json.loads(json.dumps(t["setting"])) for t in trials]
    todo = [s for s in grid if json.loads(json.dumps(s)) not in tried]
    start = time.perf_counter()
    for n, setting in enumerate(todo):
        i = len(tried) + n  # the trial's number in the record
        if progress:
            print(f"{recipe_name} setting {n + 1} of {len(todo)} to train: {setting}",
                  flush=True)
        model, tok = (load or load_model)()
        model, peft_config = prepare(recipe, model, tok, setting)
        cfg = recipe.training.config(
            f"sweep-{recipe_name.lower()}-{i}", max_steps=budget.max_steps,
            eval_steps=budget.eval_steps, patience=budget.patience,
            **{k: v for k, v in setting.items() if k not in ADAPTER_FIELDS})
        result = train_sft(model, tok, train, cfg, eval_dataset=val, peft_config=peft_config)
        curve = validation_curve(result)
        best = min(curve, key=lambda c: c[1])
        trials.append({"setting": setting, "validation_curve": curve, "best_step": best[0],
                       "best_validation_loss": best[1], "steps_run": result.steps,
                       "stopped_early": result.steps < budget.max_steps,
                       "seconds": result.seconds})
        del model, result
    chosen = min(range(len(trials)), key=lambda i: trials[i]["best_validation_loss"])
    return {"recipe": recipe_name, "mode": mode, "data": DATA[recipe_name],
            "training_rows": len(train),
            "validation_rows": len(val), "budget": dataclasses.asdict(budget),
            "rule": "lowest best validation loss (early stopping with patience, the best "
                    "evaluation's weights); ties: the first setting listed",
            "trials": trials, "choice": trials[chosen]["setting"],
            "choice_steps": trials[chosen]["best_step"],
            "seconds": time.perf_counter() - start + (previous or {}).get("seconds", 0.0)}


def _check_extension(previous: dict | None, mine: dict) -> None:
    """Refuse to extend an earlier sweep that differs from this one in any of `mine`."""
    differ = {k: (previous.get(k), v) for k, v in mine.items()
              if previous is not None and previous.get(k) != v}
    if differ:
        raise SweepError(f"cannot extend that sweep, it differs in {differ} (theirs, ours): "
                         "run the whole grid again without extending")


def record_path(recipe_name: str) -> Path:
    """Where `tools/choose_settings.py` writes a recipe's full-mode choice: the reports
    folder (`Settings.reports_dir`: reports/ in a checkout, where it is committed)."""
    from .config import get_settings

    return get_settings().reports_dir / "settings" / f"{recipe_name}.json"


def recorded_choice(recipe_name: str) -> dict | None:
    """The full-mode sweep of a recipe (`config.committed_report`), or None where it was not
    run."""
    from .config import committed_report

    path = committed_report(f"settings/{recipe_name}.json")
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record.get("mode") == "full" else None


def describe(record: dict) -> str:
    """One line a notebook prints: every setting tried and its best validation loss, then
    the choice, e.g. "size 64, learning_rate 0.002: 1.595; ... (chosen: size 64, ...)"."""
    def setting(values: dict) -> str:
        return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in values.items())

    rl = record.get("recipe") in RL_FIELDS
    key = "validation_locality" if rl else "best_validation_loss"
    tried = "; ".join(f"{setting(t['setting'])}: {t[key]:.3f}" for t in record["trials"])
    what = ("locality of the stopped model's rewrites of" if rl else "best validation loss on")
    start = (f"; the SFT model they start from: {record['start_validation_locality']:.3f}"
             if rl and "start_validation_locality" in record else "")
    return (f"{what} {record['validation_rows']} held-out training rows, "
            f"{record['budget']['max_steps']} steps at most: {tried}{start} "
            f"(chosen: {setting(record['choice'])})")

