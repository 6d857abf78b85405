"""Settings chosen on validation (mclab.sweeps, tools/choose_settings.py): each setting
trains with early stopping on held-out training rows, the lowest validation loss wins, and
bad recipes or settings are refused before anything trains."""

import importlib.util
import json
from pathlib import Path

import pytest

from mclab import sweeps

TOOL = Path(__file__).resolve().parent.parent / "tools" / "choose_settings.py"


def _tool():
    spec = importlib.util.spec_from_file_location("choose_settings", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("recipe, grid, message", [
    ("STYLE_LORA", [{"learning_rate": 1e-4}], "no validation sweep"),
    ("DPO", [{"r": 8}], "unknown settings"),
    ("GRPO", [{"beta": 0.1}], "unknown settings"),
    ("FULL_SFT", [], "grid is empty"),
    ("FULL_SFT", [{"learning_rat": 1e-4}], "unknown settings"),
    ("FULL_SFT", [{"r": 8}], "no adapter field"),
    ("PREFIX", [{"r": 8}], "no adapter field"),
    ("CPT", [{"r": 8}], "no adapter field"),
    ("CPT", [{"lr": 1e-4}], "unknown settings"),
])
def test_bad_sweeps_fail_before_training(recipe, grid, message):
    with pytest.raises(sweeps.SweepError, match=message):
        sweeps.check(recipe, grid)


def test_the_grid_is_the_product_of_its_lists():
    tool = _tool()
    grid = tool.parse_grid(["r=4,16", "learning_rate=1e-3",
                            "targets=attention (q, k, v, o)|all linear"])
    assert [(g["r"], g["learning_rate"]) for g in grid] == [(4, 1e-3), (4, 1e-3), (16, 1e-3),
                                                           (16, 1e-3)]
    assert grid[0]["targets"] == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert len(grid[1]["targets"]) == 7
    with pytest.raises(sweeps.SweepError, match="unknown targets"):
        tool.parse_grid(["targets=everything"])
    with pytest.raises(sweeps.SweepError, match="NAME=VALUE"):
        tool.parse_grid(["r"])


@pytest.mark.parametrize("recipe, setting", [("LORA_SFT", {"r": 2}),
                                             ("BOTTLENECK", {"size": 4})])
def test_each_setting_trains_to_its_best_validation_loss(recipe, setting, load_tiny, runs_dir):
    """Two learning rates on the tiny model: each trial records its curve and stops early
    or at the cap; the choice is the lower best loss."""
    grid = [{**setting, "learning_rate": 1e-7}, {**setting, "learning_rate": 2e-2}]
    record = sweeps.sweep(recipe, grid, sweeps.Budget(max_steps=3, eval_steps=1, patience=1),
                          load=load_tiny, n_val=4, progress=False)
    assert [t["setting"] for t in record["trials"]] == grid
    for trial in record["trials"]:
        losses = [loss for _, loss in trial["validation_curve"]]
        assert trial["best_validation_loss"] == min(losses)
        assert trial["steps_run"] <= 3
    best = min(record["trials"], key=lambda t: t["best_validation_loss"])
    assert record["choice"] == best["setting"]
    assert record["validation_rows"] == 4 and record["training_rows"] > 0


def test_an_extended_sweep_trains_only_the_new_settings(load_tiny, runs_dir):
    """A grid whose best setting sat at its edge is extended: the earlier trials are kept,
    only new settings train, and a sweep with another budget is refused before training."""
    budget = sweeps.Budget(max_steps=2, eval_steps=1, patience=1)
    old = {"r": 2, "learning_rate": 1e-7}
    first = sweeps.sweep("LORA_SFT", [old], budget, load=load_tiny, n_val=4, progress=False)
    loads = []

    def counting_load():
        loads.append(1)
        return load_tiny()

    new = {"r": 2, "learning_rate": 2e-2}
    more = sweeps.sweep("LORA_SFT", [old, new], budget, load=counting_load, n_val=4,
                        progress=False, previous=json.loads(json.dumps(first)))
    assert len(loads) == 1  # the old setting is not trained again
    assert [t["setting"] for t in more["trials"]] == [old, new]
    assert more["trials"][0] == json.loads(json.dumps(first["trials"][0]))
    best = min(more["trials"], key=lambda t: t["best_validation_loss"])
    assert more["choice"] == best["setting"]

    def no_training():
        raise AssertionError("a refused extension must not load a model")

    with pytest.raises(sweeps.SweepError, match="cannot extend"):
        sweeps.sweep("LORA_SFT", [new], sweeps.Budget(max_steps=3, eval_steps=1, patience=1),
                     load=no_training, n_val=4, progress=False, previous=first)


def test_a_cpt_extension_that_differs_is_refused_before_a_model_loads(runs_dir):
    """CPT's data needs the base model (it writes the replay text): a refused extension is
    refused before that."""
    def no_model():
        raise AssertionError("a refused extension must not load a model")

    earlier = {"recipe": "CPT", "mode": "quick", "trials": [],
               "budget": {"max_steps": 3, "eval_steps": 1, "patience": 1}}
    with pytest.raises(sweeps.SweepError, match="cannot extend.*budget"):
        sweeps.sweep("CPT", [{"learning_rate": 1e-4}], sweeps.Budget(2, 1, 1), load=no_model,
                     progress=False, previous=earlier)


def test_describe_names_every_trial_and_the_choice():
    record = {"validation_rows": 30, "budget": {"max_steps": 60},
              "trials": [{"setting": {"size": 16, "learning_rate": 2e-3},
                          "best_validation_loss": 1.6840},
                         {"setting": {"size": 64, "learning_rate": 2e-3},
                          "best_validation_loss": 1.5949}],
              "choice": {"size": 64, "learning_rate": 2e-3}}
    assert sweeps.describe(record) == (
        "best validation loss on 30 held-out training rows, 60 steps at most: "
        "size 16, learning_rate 0.002: 1.684; size 64, learning_rate 0.002: 1.595 "
        "(chosen: size 64, learning_rate 0.002)")


@pytest.mark.parametrize("recipe, grid, signal", [
    ("DPO", [{"learning_rate": 1e-6, "beta": 0.1}, {"learning_rate": 2e-2, "beta": 0.5}],
     "validation_loss"),
    ("GRPO", [{"learning_rate": 2e-2}], "validation_reward"),
])
def test_rl_settings_are_chosen_on_validation_locality(recipe, grid, signal, load_tiny,
                                                       runs_dir):
    """DPO and GRPO train from one local SFT model; each setting stops on its own
    validation signal, and the highest locality on the validation rewrites wins."""
    record = sweeps.sweep(recipe, grid, sweeps.Budget(max_steps=2, eval_steps=1, patience=1),
                          load=load_tiny, progress=False)
    assert [t["setting"] for t in record["trials"]] == grid
    for trial in record["trials"]:
        assert trial["validation_signal"] == signal and trial["steps_run"] <= 2
        assert trial["validation_curve"] and 0 <= trial["validation_locality"] <= 1
    best = max(record["trials"], key=lambda t: t["validation_locality"])
    assert record["choice"] == best["setting"]
    assert record["validation_rows"] == 28 and record["start"]["best_step"] is not None
    assert "locality of the stopped model's rewrites of 28" in sweeps.describe(record)
    assert f"start from: {record['start_validation_locality']:.3f}" in sweeps.describe(record)


def test_an_rl_sweep_treats_float_rounding_as_a_tie():
    """Two settings whose rewrites score the same per sentence differ by float rounding
    (1e-8 in the DPO sweep's means): the first listed wins; a real margin still wins; no
    score, or a NaN, is refused."""
    from mclab import rl_sweeps

    def trials(*scores):
        return [{"validation_locality": x} for x in scores]

    assert rl_sweeps.choose(trials(0.1, 0.2017435, 0.2017438, 0.18)) == 1
    assert rl_sweeps.choose(trials(0.1, 0.2017, 0.2027, 0.18)) == 2
    assert rl_sweeps.choose(trials(0.3, 0.2, 0.3000001)) == 0
    assert rl_sweeps.choose(trials(0.3, 0.3000011)) == 1
    for bad in (trials(), trials(0.2, float("nan"))):
        with pytest.raises(sweeps.SweepError, match="no validation locality"):
            rl_sweeps.choose(bad)


def test_a_sweep_takes_the_recipes_budget_unless_told_otherwise():
    """Left out, the cap, cadence and patience are the recipe's own (full mode): a sweep
    chooses under the budget the report row trains."""
    import argparse

    tool = _tool()

    def args(**given):
        return argparse.Namespace(**{"recipe": "DPO", "max_steps": None, "eval_steps": None,
                                     "patience": None, **given})

    training = sweeps.recipes.DPO.training
    assert tool.budget(args()) == sweeps.Budget(training.max_steps.full,
                                                training.eval_steps.full, training.patience)
    assert tool.budget(args(max_steps=10, patience=1)) == sweeps.Budget(
        10, training.eval_steps.full, 1)


def test_each_rl_trial_trains_its_own_copy_of_the_start(load_tiny, runs_dir):
    """A trial trains a fresh model holding the local SFT start's weights. (A deep copy of
    the start, which had trained, kept running the start's own layers: DPO trained the
    copy's adapter and its logits stayed the start's.)"""
    import torch

    from mclab import rl_sweeps

    start, tok, _ = rl_sweeps.local_sft_start(load_tiny)
    ids = tok("How ya going, mate?", return_tensors="pt")
    with torch.no_grad():
        before = start(**ids).logits
        assert torch.equal(rl_sweeps.fresh_copy(start, load_tiny)(**ids).logits, before)
    result = rl_sweeps.train_one("DPO", start, tok, {"learning_rate": 5e-2, "beta": 0.1},
                                 sweeps.Budget(max_steps=2, eval_steps=1, patience=1),
                                 "t-rl-copy", load=load_tiny)
    with torch.no_grad():
        assert not torch.allclose(result.model(**ids).logits, before)
        assert torch.equal(start(**ids).logits, before)  # the start itself is untouched
