"""Settings chosen on validation (mclab.sweeps, tools/choose_settings.py): each setting
trains with early stopping on held-out training rows, the lowest validation loss wins, and
bad recipes or settings are refused before anything trains."""

import importlib.util
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
