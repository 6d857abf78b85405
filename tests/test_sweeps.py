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
    ("DPO", [{"learning_rate": 1e-4}], "no validation sweep"),
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
